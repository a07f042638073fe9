"""Throwaway certificates for TLS tests, made with the openssl CLI: a CA, a server
certificate for 127.0.0.1/localhost and client certificates, valid for a day."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def require_openssl() -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed (it makes the test certificates)")


def make_ca(d: Path, name: str = "ca") -> Pair:
    require_openssl()
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
             "-subj", f"/CN=gpulse test {name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return Pair(d / f"{name}.crt", d / f"{name}.key")


def make_cert(d: Path, ca: Pair, name: str, sans: tuple[str, ...] = ("IP:127.0.0.1", "DNS:localhost"),
              usage: str = "serverAuth") -> Pair:
    """A leaf certificate signed by `ca`; usage serverAuth or clientAuth."""
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text(f"subjectAltName={','.join(sans)}\nextendedKeyUsage={usage}\n"
                                   "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
             "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    return Pair(d / f"{name}.crt", d / f"{name}.key")


def bcrypt_hash(password: str, cost: int = 4) -> str:
    """A bcrypt hash as htpasswd -B writes it (cost 4 keeps the tests fast)."""
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
