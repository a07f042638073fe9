"""Config and files that must not hurt: each bad input is one line on stderr and exit 2,
fast and within a small memory bound; nothing that is not a socket is ever removed."""

import resource
import subprocess
import time

import pytest

from tests.attack.harness import agent_command, free_port

pytestmark = pytest.mark.attack
MEMORY_BOUND = 1024 ** 3  # RLIMIT_AS for the CLI: the bomb took 4 GiB unbounded


def _bounded():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BOUND, MEMORY_BOUND))


def run(*args, timeout=60):
    started = time.monotonic()
    r = subprocess.run([*agent_command(), *args], capture_output=True, text=True, timeout=timeout,
                       preexec_fn=_bounded)
    return r, time.monotonic() - started


def _bomb() -> bytes:
    keys = "abcdefghi"
    lines = ["x0: &x0 {" + ", ".join(f"{k}: 1" for k in keys) + "}"]
    lines += [f"x{i}: &x{i} {{" + ", ".join(f"{k}: *x{i - 1}" for k in keys) + "}" for i in range(1, 9)]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("content,needle", [
    (_bomb(), "aliases are expanded"),
    (b"log.level: \xff\xfe\n", "not UTF-8 text"),
    (b"collect.interval: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested deeper than 64 levels"),
    (b"a: &a [*a]\n", "refers to a node that contains it"),
])
def test_hostile_config_file(tmp_path, content, needle):
    """Before: a 686-byte alias bomb took 60 s and 4 GiB; bad UTF-8 and deep nesting ended in
    tracebacks."""
    f = tmp_path / "gpulse.yaml"
    f.write_bytes(content)
    r, took = run("serve", f"--config.file={f}")
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr[-2000:]
    assert took < 30, took


@pytest.mark.parametrize("flag,needle", [
    ("--collect.interval=1000000d", "outside 100ms..10m"),  # before: killed the sampler, /readyz stayed 200
    ("--sources.dcgm-exporter-url=file:///etc/passwd", "is not an http(s) URL"),  # before: read local files
    ("--workloads.max-body-bytes=1000000000", "outside"),
])
def test_hostile_values(flag, needle):
    r, _ = run("serve", flag)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr


def test_push_socket_never_removes_a_regular_file(tmp_path):
    """Before: --workloads.push-socket deleted whatever regular file was at that path."""
    victim = tmp_path / "precious.db"
    victim.write_text("do not delete")
    proc = subprocess.Popen([*agent_command(), "serve", "--nvml.backend=real", "--kube.enabled=false",
                             f"--workloads.push-socket={victim}", f"--web.listen-address=127.0.0.1:{free_port()}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "push off" in line:
                break
        assert any("exists and is not a socket" in line for line in lines), "".join(lines)[-2000:]
    finally:
        proc.terminate()
        proc.wait(20)
    assert victim.read_text() == "do not delete"
