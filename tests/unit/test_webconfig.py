"""--web.config.file in exporter-toolkit's format: what loads, and one-line refusals."""

import ssl

import pytest
from gpulse import webconfig

from tests.certs import bcrypt_hash, make_ca, make_cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    return ca, make_cert(d, ca, "server")


def load(tmp_path, text):
    path = tmp_path / "web.yml"
    path.write_text(text)
    return webconfig.load(str(path))


def test_the_toolkit_example_loads(tmp_path, pki):
    ca, server = pki
    hashed = bcrypt_hash("pw")
    cfg = load(tmp_path, f"""
tls_server_config:
  cert_file: {server.cert}
  key_file: {server.key}
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: {ca.cert}
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
  prefer_server_cipher_suites: true
  curve_preferences: [CurveP256]
http_server_config:
  http2: true
  headers:
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  alice: {hashed}
rate_limit:
  interval: 1s
  burst: 20
""")
    assert cfg.tls is not None and cfg.tls.verify_mode == ssl.CERT_OPTIONAL
    assert cfg.tls.minimum_version == ssl.TLSVersion.TLSv1_2
    assert dict(cfg.users) == {"alice": hashed.encode()}
    assert cfg.headers == (("Strict-Transport-Security", "max-age=31536000"),)
    assert (cfg.rate_limit.interval, cfg.rate_limit.burst) == (1.0, 20)
    assert str(server.cert) in cfg.files


def test_inline_pem(tmp_path, pki):
    _ca, server = pki
    indent = lambda text: "\n".join("    " + line for line in text.splitlines())
    cfg = load(tmp_path, f"tls_server_config:\n  cert: |\n{indent(server.cert.read_text())}\n"
                         f"  key: |\n{indent(server.key.read_text())}\n")
    assert cfg.tls is not None


@pytest.mark.parametrize("text,needle", [
    ("tls_server_config: {cert_file: x}\nbogus: 1\n", "unknown key 'bogus'"),
    ("tls_server_config: {key_file: /nonexistent}\n", "cert_file (or cert) is required"),
    ("tls_server_config: {cert_file: /nonexistent, key_file: /nonexistent}\n", "is not a readable file"),
    ("tls_server_config: {cert: x, cert_file: y}\n", "give cert or cert_file, not both"),
    ("basic_auth_users: {alice: secret}\n", "expected a bcrypt hash"),
    ("basic_auth_users: [alice]\n", "expected a mapping"),
    ("http_server_config: {headers: {X-Evil: 1}}\n", "unknown key 'X-Evil'"),
    ("rate_limit: {interval: soon}\n", "invalid duration"),
    ("a: &a [*a]\n", "refers to a node that contains it"),
    ("- 1\n", "expected a mapping"),
])
def test_refusals_name_the_key_in_one_line(tmp_path, text, needle):
    with pytest.raises(webconfig.WebConfigError) as exc:
        load(tmp_path, text)
    assert needle in str(exc.value) and "\n" not in str(exc.value)
    assert "web.config.file" in str(exc.value)


@pytest.mark.parametrize("tls,needle", [
    ("client_auth_type: Sometimes", "client_auth_type 'Sometimes' is not one of"),
    ("client_auth_type: RequireAndVerifyClientCert", "needs client_ca_file"),
    ("min_version: TLS14", "'TLS14' is not one of"),
    ("min_version: [TLS12]", "min_version: \"['TLS12']\" is not one of"),  # not a TypeError: unhashable
    ("max_version: {a: 1}", "max_version: \"{'a': 1}\" is not one of"),
    ("min_version: TLS13\n  max_version: TLS12", "min_version is above max_version"),
    ("cipher_suites: [TLS_FAST]", "unknown suite 'TLS_FAST'"),
    ("curve_preferences: [CurveP256, X25519]", "OpenSSL takes one curve"),
    ("client_allowed_sans: [x]", "client_allowed_sans needs client_auth_type"),
])
def test_tls_refusals(tmp_path, pki, tls, needle):
    _ca, server = pki
    with pytest.raises(webconfig.WebConfigError) as exc:
        load(tmp_path, f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n  {tls}\n")
    assert needle in str(exc.value)


def test_a_key_that_does_not_match(tmp_path, pki):
    ca, _server = pki
    with pytest.raises(webconfig.WebConfigError, match="cannot use the certificate and key"):
        load(tmp_path, f"tls_server_config:\n  cert_file: {ca.cert}\n  key_file: {_server.key}\n")
