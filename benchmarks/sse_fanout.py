"""How fast does a burst of events reach many SSE subscribers of one ``tasktrail serve``?

``python -m benchmarks.sse_fanout [--subscribers 1000] [--events 20] [--database-url URL]``

Starts ``tasktrail serve --no-worker`` in a subprocess (SQLite in a temporary directory
unless a URL is given), opens that many ``GET /api/v1/events`` streams, then submits a burst
of tasks from this process (another process than the server, as a worker would be) and
measures, for every subscriber and event, the time from the event's commit timestamp to its
arrival. Prints p50 / p95 / max and when the last subscriber had everything.

On the 2-core development machine (client and server on it, shared with other work),
1,000 subscribers, a burst of 20 events: p50 0.28-0.35 s / p95 0.39-0.50 s on SQLite
(which polls every 0.2 s for other processes' events), p50 0.15-0.25 s / p95 0.24-0.40 s on
PostgreSQL (LISTEN). A burst of 200: p50 0.8 s / p95 1.5 s (SQLite), 0.55 s / 1.1 s
(PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).parent.parent
URL = re.compile(r"serving http://([\d.]+):(\d+)")


def start_server(database_url: str) -> tuple[subprocess.Popen[str], str, int]:
    env = {
        **os.environ,
        "TASKTRAIL_DATABASE_URL": database_url,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "tasktrail.cli", "serve", "--port", "0", "--no-worker"]
    command += ["--app", "benchmarks.sse_fanout:trail"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    for line in process.stdout:
        found = URL.search(line)
        if found:
            return process, found.group(1), int(found.group(2))
        if time.monotonic() > deadline:
            break
    process.kill()
    raise SystemExit("the server did not start")


class Subscriber:
    """One SSE stream read with raw asyncio streams (cheap enough to open a thousand)."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.arrivals: dict[int, tuple[float, str]] = {}

    async def run(self, host: str, port: int, expected: int, done: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        headers = f"Host: {host}\r\nAccept: text/event-stream\r\n"
        writer.write(f"GET /api/v1/events HTTP/1.1\r\n{headers}\r\n".encode())
        await writer.drain()
        try:
            while len(self.arrivals) < expected:
                line = await reader.readline()
                if not line:
                    return
                if line.startswith(b"retry:"):
                    self.connected.set()
                elif line.startswith(b"data: "):
                    event = json.loads(line[6:])
                    self.arrivals[event["id"]] = (time.time(), event["at"])
        finally:
            done.set()
            writer.close()


async def measure(host: str, port: int, subscribers: int, events: int, database_url: str) -> None:
    from tasktrail import Trail

    trail = Trail(database_url)
    register(trail)
    done = asyncio.Event()
    clients = [Subscriber() for _ in range(subscribers)]
    tasks = [asyncio.create_task(c.run(host, port, events, done)) for c in clients]
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 120)
    print(f"{subscribers} subscribers connected in {time.monotonic() - started:.1f}s")
    await asyncio.sleep(2)  # every subscription has taken its starting point

    burst_start = time.time()
    await asyncio.to_thread(lambda: [trail.submit("bench.noop") for _ in range(events)])
    burst_end = time.time()
    print(f"burst: {events} events committed in {burst_end - burst_start:.3f}s")
    await asyncio.wait_for(asyncio.gather(*tasks), 300)

    latencies = [
        arrived - datetime.fromisoformat(at).timestamp()
        for client in clients
        for arrived, at in client.arrivals.values()
    ]
    last = max(arrived for c in clients for arrived, _ in c.arrivals.values())
    complete = sum(len(c.arrivals) == events for c in clients)
    latencies.sort()
    print(f"deliveries: {len(latencies)} ({complete}/{subscribers} subscribers got all {events})")
    print(
        f"latency from commit: p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    print(f"last delivery {last - burst_end:.2f}s after the burst's last commit")
    trail.close()


def register(trail: object) -> None:
    from tasktrail import TaskContext, Trail

    assert isinstance(trail, Trail)

    @trail.task("bench.noop")
    def noop(ctx: TaskContext) -> None:
        return None


def __getattr__(name: str) -> object:
    # ``--app benchmarks.sse_fanout:trail`` for the server process.
    if name == "trail":
        from tasktrail import Trail

        instance = Trail()
        register(instance)
        globals()["trail"] = instance
        return instance
    raise AttributeError(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite:///{tmp}/bench.db"
        process, host, port = start_server(database_url)
        try:
            print(f"server on {host}:{port}, database {database_url.split('@')[-1]}")
            asyncio.run(measure(host, port, args.subscribers, args.events, database_url))
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
