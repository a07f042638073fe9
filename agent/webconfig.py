"""--web.config.file: TLS and basic authentication in the Prometheus exporter-toolkit format.

The format is the one node_exporter, Prometheus and dcgm-exporter read (exporter-toolkit's
docs/web-configuration.md), so one file and one Secret serve every exporter of a node:

    tls_server_config:
      cert_file / cert, key_file / key      the server's certificate and key (files or inline PEM)
      client_auth_type                      NoClientCert (default), RequestClientCert,
                                            RequireAnyClientCert, VerifyClientCertIfGiven,
                                            RequireAndVerifyClientCert
      client_ca_file / client_ca            CAs for client certificates
      client_allowed_sans                   a verified client's SAN must be one of these
      min_version, max_version              TLS10..TLS13 (default TLS12..TLS13)
      cipher_suites                         Go's names of TLS 1.2 suites; prefer_server_cipher_suites
      curve_preferences                     one curve (OpenSSL takes one ECDH curve per context)
    http_server_config:
      http2                                 accepted; gpulse serves HTTP/1.1 (Prometheus falls back)
      headers                               the five security headers exporter-toolkit allows
    basic_auth_users: {name: bcrypt hash}   htpasswd -nBC 10 "" | tr -d ':\\n'
    rate_limit: {interval, burst}           a token bucket over all requests (429 past it)

Like exporter-toolkit, changes are picked up without a restart (cert-manager rotates the
Secret's files): `WebConfigSource` re-reads the file and the files it names when any of them
changes, checked at most once a second; a changed file that does not load keeps the last
good settings and logs one line. Every error names the key and the file, in one line.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Optional

from . import safeyaml
from .config import parse_duration
from .errors import OneLineError

log = logging.getLogger(__name__)

CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
                     "RequireAndVerifyClientCert")
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
                "TLS13": ssl.TLSVersion.TLSv1_3}
# Go's crypto/tls names (tls.CipherSuites()) -> OpenSSL's, for the TLS 1.2 suites Go offers;
# TLS 1.3 suites are not configurable in Go either.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection",
           "Strict-Transport-Security")
MAX_USERS = 64  # exporter-toolkit: "meant for simple use cases, with a few users"
RECHECK_SECONDS = 1.0
_TOP = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_TLS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type",
        "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
        "curve_preferences")


class WebConfigError(OneLineError):
    """One line: the file, the key and what is wrong with it."""


@dataclass(frozen=True)
class RateLimit:
    interval: float  # seconds between requests on average; 0: off
    burst: int


@dataclass(frozen=True)
class WebConfig:
    """What one version of the file says; `tls` is None when it configures no TLS."""
    path: str = ""
    tls: Optional[ssl.SSLContext] = None
    client_auth_type: str = "NoClientCert"
    allowed_sans: frozenset[str] = frozenset()
    users: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))  # name -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()
    rate_limit: Optional[RateLimit] = None
    files: tuple[str, ...] = ()  # every file this version was read from (the config first)

    def san_allowed(self, cert: Optional[Mapping[str, Any]]) -> bool:
        """Whether a verified client certificate (SSLSocket.getpeercert()) carries an allowed SAN."""
        if not self.allowed_sans:
            return True
        if not cert:
            return False
        for kind, value in cert.get("subjectAltName", ()):
            text = str(value).strip()
            if kind == "IP Address":
                try:
                    text = str(ipaddress.ip_address(text))
                except ValueError:
                    pass
            if text in self.allowed_sans:
                return True
        return False


def load(path: str) -> WebConfig:
    """The file at `path`, validated; WebConfigError (one line) when it cannot be used."""
    try:
        data = safeyaml.load_file(path)
    except OSError as exc:
        raise WebConfigError(f"web.config.file: cannot read {path}: {exc.strerror or exc}") from None
    except safeyaml.YamlError as exc:
        raise WebConfigError(f"web.config.file: {exc.at(path)}") from None
    if data is None:
        data = {}
    where = f"web.config.file {path}"
    _mapping(data, where, _TOP)
    files = [path]
    tls_data = data.get("tls_server_config")
    tls, client_auth, sans = None, "NoClientCert", frozenset[str]()
    if tls_data is not None:
        tls, client_auth, sans = _tls(tls_data, f"{where}: tls_server_config", os.path.dirname(path), files)
    users = _users(data.get("basic_auth_users"), f"{where}: basic_auth_users")
    headers = _http(data.get("http_server_config"), f"{where}: http_server_config")
    rate = _rate_limit(data.get("rate_limit"), f"{where}: rate_limit")
    return WebConfig(path, tls, client_auth, sans, MappingProxyType(users), headers, rate, tuple(files))


def _mapping(value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: expected a mapping")
    for key in value:
        if key not in allowed:
            raise WebConfigError(f"{where}: unknown key {str(key)[:80]!r} (one of: {', '.join(allowed)})")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise WebConfigError(f"{where}: expected a string")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WebConfigError(f"{where}: expected a list of strings")
    return list(value)


def _tls(data: Any, where: str, base: str, files: list[str]) -> tuple[ssl.SSLContext, str, frozenset[str]]:
    tls = _mapping(data, where, _TLS)

    def pem(inline: str, file_key: str, required: bool) -> tuple[Optional[str], Optional[str]]:
        """(inline PEM text, file path): one of them, or neither when not required."""
        text, path = tls.get(inline), tls.get(file_key)
        if text is not None and path is not None:
            raise WebConfigError(f"{where}: give {inline} or {file_key}, not both")
        if text is not None:
            return _string(text, f"{where}: {inline}"), None
        if path is not None:
            full = os.path.join(base, _string(path, f"{where}: {file_key}"))
            if not os.path.isfile(full):
                raise WebConfigError(f"{where}: {file_key}: {full} is not a readable file")
            files.append(full)
            return None, full
        if required:
            raise WebConfigError(f"{where}: {file_key} (or {inline}) is required")
        return None, None

    cert, key = pem("cert", "cert_file", True), pem("key", "key_file", True)
    client_ca_text, client_ca_file = pem("client_ca", "client_ca_file", False)
    has_ca = client_ca_text is not None or client_ca_file is not None
    auth = _string(tls.get("client_auth_type", "NoClientCert"), f"{where}: client_auth_type")
    if auth not in CLIENT_AUTH_TYPES:
        raise WebConfigError(f"{where}: client_auth_type {auth[:80]!r} is not one of {', '.join(CLIENT_AUTH_TYPES)}")
    if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not has_ca:
        raise WebConfigError(f"{where}: client_auth_type {auth} needs client_ca_file (or client_ca)")
    sans = frozenset(_strings(tls.get("client_allowed_sans"), f"{where}: client_allowed_sans"))
    if sans and auth not in ("RequireAnyClientCert", "RequireAndVerifyClientCert"):
        raise WebConfigError(f"{where}: client_allowed_sans needs client_auth_type RequireAnyClientCert or "
                             "RequireAndVerifyClientCert")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.minimum_version = _version(tls.get("min_version", "TLS12"), f"{where}: min_version")
    ctx.maximum_version = _version(tls.get("max_version", "TLS13"), f"{where}: max_version")
    if ctx.minimum_version > ctx.maximum_version:
        raise WebConfigError(f"{where}: min_version is above max_version")
    _load_chain(ctx, cert, key, where)
    if has_ca:
        try:
            ctx.load_verify_locations(cafile=client_ca_file, cadata=client_ca_text)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise WebConfigError(f"{where}: client CA: not a PEM certificate ({_ssl_reason(exc)})") from None
    # Python's ssl verifies a client certificate whenever one is asked for: RequestClientCert
    # and RequireAnyClientCert (Go: ask, do not verify) become "verify if given" and "required
    # and verified" when a CA is configured, and ask for none without one.
    if auth in ("VerifyClientCertIfGiven", "RequestClientCert", "RequireAnyClientCert") and has_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED if auth == "RequireAnyClientCert" else ssl.CERT_OPTIONAL
    elif auth == "RequireAndVerifyClientCert":
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif auth == "RequireAnyClientCert":
        raise WebConfigError(f"{where}: client_auth_type RequireAnyClientCert needs client_ca_file here "
                             "(client certificates are always verified)")
    suites = _strings(tls.get("cipher_suites"), f"{where}: cipher_suites")
    if suites:
        unknown = [s for s in suites if s not in CIPHER_SUITES]
        if unknown:
            raise WebConfigError(f"{where}: cipher_suites: unknown suite {unknown[0][:80]!r}")
        try:
            ctx.set_ciphers(":".join(CIPHER_SUITES[s] for s in suites))
        except ssl.SSLError:
            raise WebConfigError(f"{where}: cipher_suites: none of them is available in this OpenSSL") from None
    prefer = tls.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{where}: prefer_server_cipher_suites: expected true or false")
    if prefer:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    curves = _strings(tls.get("curve_preferences"), f"{where}: curve_preferences")
    if curves:
        if len(curves) > 1 or curves[0] not in CURVES:
            raise WebConfigError(f"{where}: curve_preferences: give one of {', '.join(CURVES)} (OpenSSL takes one "
                                 "curve here)")
        ctx.set_ecdh_curve(CURVES[curves[0]])
    return ctx, auth, sans


def _load_chain(ctx: ssl.SSLContext, cert: tuple[Optional[str], Optional[str]],
                key: tuple[Optional[str], Optional[str]], where: str) -> None:
    """Files load as they are; inline PEM goes through a private temp file (ssl loads a chain
    from files only)."""
    with tempfile.TemporaryDirectory(prefix="gpulse-tls-") as d:
        paths = []
        for name, (text, path) in (("cert.pem", cert), ("key.pem", key)):
            if path is None:
                path = os.path.join(d, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text or "")
            paths.append(path)
        try:
            ctx.load_cert_chain(paths[0], paths[1])
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise WebConfigError(f"{where}: cannot use the certificate and key ({_ssl_reason(exc)})") from None


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(reason).split())[:120]


def _version(value: Any, where: str) -> ssl.TLSVersion:
    if not isinstance(value, str) or value not in TLS_VERSIONS:  # a list or mapping is not hashable
        raise WebConfigError(f"{where}: {str(value)[:20]!r} is not one of {', '.join(TLS_VERSIONS)}")
    return TLS_VERSIONS[value]


def _users(data: Any, where: str) -> dict[str, bytes]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise WebConfigError(f"{where}: expected a mapping of user names to bcrypt hashes")
    if len(data) > MAX_USERS:
        raise WebConfigError(f"{where}: {len(data)} users (at most {MAX_USERS}; use client certificates for more)")
    users = {}
    for name, hashed in data.items():
        if not isinstance(name, str) or not name or ":" in name:
            raise WebConfigError(f"{where}: user name {str(name)[:40]!r}: expected a string without ':'")
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")) or len(hashed) != 60:
            raise WebConfigError(f"{where}: {name}: expected a bcrypt hash ($2y$10$..., 60 characters)")
        users[name] = hashed.encode()
    return users


def _http(data: Any, where: str) -> tuple[tuple[str, str], ...]:
    if data is None:
        return ()
    http = _mapping(data, where, ("http2", "headers"))
    if not isinstance(http.get("http2", True), bool):
        raise WebConfigError(f"{where}: http2: expected true or false")
    headers = http.get("headers") or {}
    _mapping(headers, f"{where}: headers", HEADERS)
    out = []
    for name, value in headers.items():
        text = _string(value, f"{where}: headers: {name}")
        if any(c in text for c in "\r\n"):
            raise WebConfigError(f"{where}: headers: {name}: a header value is one line")
        if text:
            out.append((name, text))
    return tuple(out)


def _rate_limit(data: Any, where: str) -> Optional[RateLimit]:
    if data is None:
        return None
    rate = _mapping(data, where, ("interval", "burst"))
    raw = rate.get("interval", 0)
    try:
        interval = 0.0 if raw in (0, "0") else parse_duration(raw)
    except ValueError as exc:
        raise WebConfigError(f"{where}: interval: {exc}") from None
    burst = rate.get("burst", 1)
    if not isinstance(burst, int) or isinstance(burst, bool) or not 1 <= burst <= 100_000:
        raise WebConfigError(f"{where}: burst: expected an integer from 1 to 100000")
    return RateLimit(interval, burst) if interval > 0 else None


class WebConfigSource:
    """The current WebConfig, re-read when the file or a file it names changes."""

    def __init__(self, path: str, clock: Any = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self.current = load(path)
        self._stamps = _stamps(self.current.files)
        self._checked_at = clock()
        self._failed: tuple[tuple[int, int, int], ...] = ()
        self.reloads = 0

    def get(self) -> WebConfig:
        """The settings in force; a changed file is loaded at most once a second."""
        now = self._clock()
        if now - self._checked_at < RECHECK_SECONDS or not self._lock.acquire(blocking=False):
            return self.current
        try:
            self._checked_at = now
            stamps = _stamps(self.current.files)
            if stamps != self._stamps and stamps != self._failed:
                try:
                    fresh = load(self.path)
                except WebConfigError as exc:
                    self._failed = stamps
                    log.warning("%s (keeping the previous web settings)", exc)
                else:
                    self.current, self._stamps, self._failed = fresh, _stamps(fresh.files), ()
                    self.reloads += 1
                    log.info("web.config.file %s reloaded", self.path)
            return self.current
        finally:
            self._lock.release()


def _stamps(files: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for path in files:
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((0, 0, 0))
    return tuple(out)
