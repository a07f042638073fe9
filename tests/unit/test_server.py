"""The HTTP server: listen addresses, content negotiation, bounds."""

import pytest


def test_ipv6_listen_address(tmp_path):
    import socket

    from gpulse.server import make_server
    try:
        server = make_server("[::1]:0", sampler=None)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert server.socket.family == socket.AF_INET6
    server.server_close()
