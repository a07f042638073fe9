"""Who is calling the push socket: peer credentials -> PID -> cgroup -> pod UID.

grpcio does not expose a Unix socket's peer credentials, so the push socket is served by
`PeerGateway`, a small relay on one thread: it accepts on the public socket, reads the
caller's PID with SO_PEERCRED (the kernel's record of the process that connected, which
the caller cannot forge), resolves it through `<procfs>/<pid>/cgroup` to the pod it runs
in (gpulse.kube.cgroup), and relays the connection's bytes to the gRPC server on a private
socket. The relay binds each of its connections to a unique abstract address, which the
gRPC handler sees as `context.peer()` and exchanges for the caller's `Peer`.

This is the attestation SPIRE's Kubernetes workload attestor does on its socket. The PID is
only meaningful in the agent's PID namespace: the DaemonSet runs with hostPID, otherwise
the kernel reports PID 0 for callers in other pods and every push is refused saying so.

Bounds: `max_connections` relayed at once and `per_pod` per pod (or per PID outside a
pod), a refused connection closed at accept; a caller's bytes flow at most `rate` bytes a
second (burst `burst`), past which its socket is simply not read until the budget refills,
so a flood costs the agent no CPU; `idle_timeout` without traffic closes a connection; at
most `BUFFER` bytes wait in each direction.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import selectors
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from ..kube.cgroup import parse_cgroup
from ..refusals import Refusals

log = logging.getLogger(__name__)

BUFFER = 64 * 1024
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
COMPONENT = "push"


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    pod_uid: str = ""  # "" when the process is in no pod
    container_id: str = ""
    error: str = ""  # why there is no pod, when there is none

    @property
    def key(self) -> str:
        """What quotas count by: the pod, or the process outside any pod."""
        return self.pod_uid or f"pid {self.pid}"


def resolve(procfs: str, pid: int, uid: int) -> Peer:
    """The pod a PID runs in, from `<procfs>/<pid>/cgroup`."""
    if pid <= 0:
        return Peer(pid, uid, error="the caller's PID is not visible to the agent (the DaemonSet needs hostPID: true)")
    try:
        with open(os.path.join(procfs, str(pid), "cgroup"), encoding="utf-8", errors="replace") as fh:
            text = fh.read(64 * 1024)
    except OSError as exc:
        return Peer(pid, uid, error=f"cannot read the cgroup of PID {pid} under {procfs}: {exc.strerror or exc}")
    owner = parse_cgroup(text)
    if owner is None:
        return Peer(pid, uid, error=f"PID {pid} runs in no pod")
    return Peer(pid, uid, owner.pod_uid, owner.container_id)


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process that connected `sock`."""
    pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return pid, uid


class _TokenBucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, now

    def refill(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens


class _Side:
    """One socket of a relayed pair and the bytes waiting to be written to it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()
        self.eof = False  # the other side has no more to send


class _Relay:
    def __init__(self, client: _Side, server: _Side, peer: Peer, label: str, now: float) -> None:
        self.client, self.server, self.peer, self.label = client, server, peer, label
        self.last_activity = now
        self.closed = False


class PeerGateway:
    """The public push socket: attests each caller, then relays to `upstream` (the gRPC
    server's private socket path)."""

    def __init__(self, socket_path: str, procfs: str, refusals: Optional[Refusals] = None, *,
                 max_connections: int = 64, per_pod: int = 4, rate: float = 32 * 1024, burst: float = 64 * 1024,
                 idle_timeout: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.socket_path = socket_path
        self.procfs = procfs
        self.refusals = refusals or Refusals()
        self.max_connections, self.per_pod = max_connections, per_pod
        self.rate, self.burst, self.idle_timeout = rate, burst, idle_timeout
        self._clock = clock
        self._private_dir = tempfile.mkdtemp(prefix="gpulse-push-")  # 0700: only the agent reaches upstream
        self.upstream = os.path.join(self._private_dir, "grpc.sock")
        self._label_prefix = f"gpulse-push-{secrets.token_hex(8)}-"
        self._counter = 0
        self._peers: dict[str, Peer] = {}  # "unix-abstract:<label>" -> Peer, read by the gRPC handler
        self._relays: dict[socket.socket, _Relay] = {}
        self._per_key: dict[str, int] = {}
        self._buckets: dict[str, _TokenBucket] = {}
        self._listener: Optional[socket.socket] = None
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._thread: Optional[threading.Thread] = None

    def peer(self, grpc_peer: str) -> Optional[Peer]:
        """The attested caller behind a gRPC `context.peer()`; None for a connection that did
        not come through this gateway."""
        return self._peers.get(grpc_peer)

    # --- lifecycle --------------------------------------------------------------------------
    def listen(self) -> None:
        """Bind the public socket (the caller has made sure nothing else is at the path)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.socket_path)
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._listener = sock

    def start(self) -> None:
        assert self._listener is not None, "listen() first"
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._wakeup_r.setblocking(False)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, "wakeup")
        self._thread = threading.Thread(target=self._run, name="gpulse-push-gate", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self._wakeup_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for relay in list(self._relays.values()):
            self._close(relay)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._selector.close()
        self._wakeup_r.close()
        self._wakeup_w.close()
        for path in (self.upstream, self._private_dir):
            try:
                (os.rmdir if path == self._private_dir else os.unlink)(path)
            except OSError:
                pass

    # --- the loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._selector.select(timeout=self._next_wakeup())
            except OSError:
                return
            for key, mask in events:
                try:
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wakeup":
                        self._wakeup_r.recv(64)
                    else:
                        self._io(key.fileobj, mask)  # type: ignore[arg-type]
                except Exception:
                    log.warning("push: relay failure", exc_info=True)
            self._housekeeping()

    def _next_wakeup(self) -> float:
        return 0.05 if any(self._throttled(r) for r in self._relays.values()) else 1.0

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(64):  # drain the backlog in bounded batches
            try:
                conn, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self.refusals.refuse(COMPONENT, "connections", "out of file descriptors")
                return
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        try:
            pid, uid = peer_credentials(conn)
        except OSError:
            conn.close()
            return
        peer = resolve(self.procfs, pid, uid)
        n = len(self._relays) // 2
        if n >= self.max_connections:
            self.refusals.refuse(COMPONENT, "connections",
                                 f"{n} push connections open (at most {self.max_connections})")
            conn.close()
            return
        if self._per_key.get(peer.key, 0) >= self.per_pod:
            self.refusals.refuse(COMPONENT, "pod_connections",
                                 f"{peer.key} holds {self.per_pod} push connections (at most {self.per_pod})")
            conn.close()
            return
        self._counter += 1
        label = self._label_prefix + str(self._counter)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.bind("\0" + label)
            upstream.settimeout(1.0)
            upstream.connect(self.upstream)
        except OSError as exc:
            upstream.close()
            conn.close()
            log.warning("push: cannot reach the push service: %s", exc)
            return
        conn.setblocking(False)
        upstream.setblocking(False)
        relay = _Relay(_Side(conn), _Side(upstream), peer, label, self._clock())
        self._peers["unix-abstract:" + label] = peer
        self._relays[conn] = relay
        self._relays[upstream] = relay
        self._per_key[peer.key] = self._per_key.get(peer.key, 0) + 1
        self._buckets.setdefault(peer.key, _TokenBucket(self.rate, self.burst, self._clock()))
        self._update(relay)

    def _throttled(self, relay: _Relay) -> bool:
        bucket = self._buckets.get(relay.peer.key)
        return bucket is not None and bucket.tokens < 1.0

    def _update(self, relay: _Relay) -> None:
        """Register each socket for what it can do now: read while the other side's buffer
        has room (and, for the caller, while its byte budget lasts); write while it has bytes."""
        if relay.closed:
            return
        bucket = self._buckets[relay.peer.key]
        bucket.refill(self._clock())
        for side, other in ((relay.client, relay.server), (relay.server, relay.client)):
            mask = 0
            if not side.eof and len(other.pending) < BUFFER and (side is relay.server or bucket.tokens >= 1.0):
                mask |= selectors.EVENT_READ
            if side.pending:
                mask |= selectors.EVENT_WRITE
            try:
                self._selector.modify(side.sock, mask, relay) if mask else self._selector.unregister(side.sock)
            except KeyError:
                if mask:
                    self._selector.register(side.sock, mask, relay)
            except ValueError:  # the socket is closed
                self._close(relay)
                return

    def _io(self, sock: socket.socket, mask: int) -> None:
        relay = self._relays.get(sock)
        if relay is None:
            return
        side, other = (relay.client, relay.server) if sock is relay.client.sock else (relay.server, relay.client)
        now = self._clock()
        try:
            if mask & selectors.EVENT_WRITE and side.pending:
                sent = side.sock.send(side.pending)
                del side.pending[:sent]
                relay.last_activity = now
            if mask & selectors.EVENT_READ:
                budget = BUFFER - len(other.pending)
                if side is relay.client:
                    bucket = self._buckets[relay.peer.key]
                    budget = min(budget, int(bucket.refill(now)))
                if budget > 0:
                    data = side.sock.recv(budget)
                    if not data:
                        side.eof = True
                    else:
                        if side is relay.client:
                            self._buckets[relay.peer.key].tokens -= len(data)
                        other.pending += data
                        relay.last_activity = now
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(relay)
            return
        if (relay.client.eof and not relay.server.pending) or (relay.server.eof and not relay.client.pending):
            self._close(relay)  # one side is gone and what it sent has been passed on
            return
        self._update(relay)

    def _housekeeping(self) -> None:
        now = self._clock()
        seen: set[int] = set()
        for relay in list(self._relays.values()):
            if id(relay) in seen or relay.closed:
                continue
            seen.add(id(relay))
            if now - relay.last_activity > self.idle_timeout:
                self._close(relay)
            elif self._throttled(relay):
                self._update(relay)  # re-enable reading once the budget has refilled
        if len(self._buckets) > 4 * self.max_connections:  # forget the budgets of callers long gone
            for key in [k for k in self._buckets if k not in self._per_key]:
                del self._buckets[key]

    def _close(self, relay: _Relay) -> None:
        if relay.closed:
            return
        relay.closed = True
        for side in (relay.client, relay.server):
            self._relays.pop(side.sock, None)
            try:
                self._selector.unregister(side.sock)
            except (KeyError, ValueError):
                pass
            side.sock.close()
        self._peers.pop("unix-abstract:" + relay.label, None)
        left = self._per_key.get(relay.peer.key, 1) - 1
        if left > 0:
            self._per_key[relay.peer.key] = left
        else:
            self._per_key.pop(relay.peer.key, None)
