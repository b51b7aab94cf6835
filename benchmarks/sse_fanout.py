"""How fast does a burst of events reach many SSE subscribers of one ``tasktrail serve``,
and does the server's memory stay bounded while it serves them?

``python -m benchmarks.sse_fanout [--subscribers 1000] [--events 20] [--bursts 3]
[--database sqlite|postgresql] [--database-url URL]`` (``make bench-sse`` runs it on both).

Starts ``tasktrail serve --no-worker`` in a subprocess on a scratch database (unless a URL
is given). First the baseline: one subscriber, one burst. Then the fan-out:
that many ``GET /api/v1/events`` streams, and several bursts of tasks submitted from this
process (another process than the server, as a worker would be). For every subscriber and
event it measures the time from the event's commit timestamp to its arrival, and prints
p50 / p95 / max of both rounds with their ratio, the server's resident memory (RSS) before,
with the subscribers connected and after each burst, and whether ``/healthz`` still answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from benchmarks.databases import postgres_database, sqlite_database
from tasktrail import TaskContext, Trail

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


def rss_mib(pid: int) -> float:
    """The resident memory of process ``pid`` in MiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def healthy(host: str, port: int) -> bool:
    """Whether the server still answers ``GET /healthz`` with 200."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=10) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


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


@dataclass
class Round:
    """What one round measured: seconds from commit to arrival, and the server's RSS."""

    latencies: list[float]
    complete: int
    rss: list[tuple[str, float]] = field(default_factory=list)

    def percentile(self, share: float) -> float:
        """The latency below which ``share`` of the deliveries arrived, in ms."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000


async def one_round(
    trail: Trail, server: tuple[int, str, int], subscribers: int, bursts: int, events: int
) -> Round:
    """Connect ``subscribers`` streams, commit ``bursts`` bursts of ``events`` events, wait
    until every subscriber has all of them."""
    pid, host, port = server
    done = asyncio.Event()
    expected = bursts * events
    clients = [Subscriber() for _ in range(subscribers)]
    tasks = [asyncio.create_task(c.run(host, port, expected, done)) for c in clients]
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 120)
    print(f"{subscribers} subscribers connected in {time.monotonic() - started:.1f}s")
    await asyncio.sleep(2)  # every subscription has taken its starting point
    rss = [("connected", rss_mib(pid))]
    for burst in range(1, bursts + 1):
        await asyncio.to_thread(lambda: [trail.submit("bench.noop") for _ in range(events)])
        received = burst * events
        while sum(len(c.arrivals) >= received for c in clients) < subscribers:
            if all(t.done() for t in tasks):
                break
            await asyncio.sleep(0.05)
        rss.append((f"after burst {burst}", rss_mib(pid)))
    await asyncio.wait_for(asyncio.gather(*tasks), 300)
    latencies = [
        arrived - datetime.fromisoformat(at).timestamp()
        for client in clients
        for arrived, at in client.arrivals.values()
    ]
    complete = sum(len(c.arrivals) == expected for c in clients)
    return Round(latencies, complete, rss)


async def measure(
    server: tuple[int, str, int], subscribers: int, bursts: int, events: int, database_url: str
) -> None:
    """The baseline round (one subscriber), then the fan-out round; prints both."""
    pid, host, port = server
    trail = Trail(database_url)
    register(trail)
    idle = rss_mib(pid)
    try:
        baseline = await one_round(trail, server, 1, 1, events)
        fanout = await one_round(trail, server, subscribers, bursts, events)
    finally:
        trail.close()
    print("| round | deliveries | p50 ms | p95 ms | max ms |")
    print("| :-- | --: | --: | --: | --: |")
    for name, measured in (("1 subscriber (baseline)", baseline), (f"{subscribers}", fanout)):
        print(
            f"| {name} | {len(measured.latencies):,} | {measured.percentile(0.5):.0f} | "
            f"{measured.percentile(0.95):.0f} | {measured.percentile(1.0):.0f} |"
        )
    print(
        f"p50 ratio {subscribers} ÷ 1: {fanout.percentile(0.5) / baseline.percentile(0.5):.1f}; "
        f"subscribers with every event: {fanout.complete}/{subscribers}"
    )
    memory = ", ".join(f"{label} {mib:.0f}" for label, mib in [("idle", idle), *fanout.rss])
    print(f"server RSS MiB: {memory}")
    print(f"server still answers /healthz: {'yes' if healthy(host, port) else 'NO'}")


def register(trail: Trail) -> None:
    @trail.task("bench.noop")
    def noop(ctx: TaskContext) -> None:
        return None


def __getattr__(name: str) -> object:
    # ``--app benchmarks.sse_fanout:trail`` for the server process.
    if name == "trail":
        instance = Trail()
        register(instance)
        globals()["trail"] = instance
        return instance
    raise AttributeError(name)


@contextmanager
def serving(database_url: str) -> Iterator[tuple[int, str, int]]:
    """A ``tasktrail serve`` process on ``database_url``: its pid, host and port."""
    process, host, port = start_server(database_url)
    try:
        yield process.pid, host, port
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--database-url", default=None, help="instead of a scratch database")
    args = parser.parse_args()
    scratch = postgres_database if args.database == "postgresql" else sqlite_database
    with nullcontext(args.database_url) if args.database_url else scratch() as database_url:
        Trail(database_url, auto_migrate=True).close()  # the server does not migrate PostgreSQL
        with serving(database_url) as server:
            print(f"server on {server[1]}:{server[2]}, database {database_url.split('@')[-1]}")
            asyncio.run(measure(server, args.subscribers, args.bursts, args.events, database_url))


if __name__ == "__main__":
    main()
