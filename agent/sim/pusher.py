"""A pushing workload's process: `python -m gpulse.sim.pusher SOCKET`.

The simulator runs one per pod that pushes (scenario `push: true`), so that each push comes
from a process of its own, which the simulated /proc puts in that pod's container cgroup:
the agent attests it by peer credentials exactly as on a node. The parent writes one JSON
object per line to stdin ({"namespace", "pod", "server", "model", "queue_depth",
"running_requests"}); each is pushed on one long-lived channel, as a real client library
does. End of stdin (the simulator stopped, or died) ends the process.
"""

from __future__ import annotations

import json
import sys

import grpc

from ..workloads.push import report


def main(argv: list[str]) -> int:
    socket_path = argv[0]
    with grpc.insecure_channel("unix:" + socket_path) as channel:
        for line in sys.stdin:
            try:
                v = json.loads(line)
                report(channel, v["namespace"], v["pod"], float(v["queue_depth"]),
                       None if v.get("running_requests") is None else float(v["running_requests"]),
                       server=v.get("server", ""), model=v.get("model", ""), timeout=1.0)
            except grpc.RpcError as exc:  # the agent may not listen yet, or refuses: try again next round
                print(f"sim pusher: {exc.code().name}: {exc.details()}", file=sys.stderr, flush=True)
            except (ValueError, KeyError, TypeError) as exc:
                print(f"sim pusher: bad line: {exc}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
