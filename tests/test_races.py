"""Several threads in this process and in two other processes race claim, complete,
cancel, cancel-acknowledge and retry on the same few tasks. Afterwards every task's history
must be a valid path through the transition table, the number of transition events must
equal the number of calls that reported success (no lost update, no double win), and no
racer may have raised anything but the refusals a lost race is expected to raise."""

from __future__ import annotations

import multiprocessing
import random
import threading
import traceback
import uuid
from concurrent.futures import ProcessPoolExecutor
from itertools import pairwise

import pytest

from tasktrail import InvalidTransition, RunSuperseded, Status, TaskContext, Trail
from tasktrail.states import CANCEL, COMPLETE, is_allowed
from tasktrail.store import Store, create_engine

TASKS = 12
ROUNDS = 120
THREADS = 3


def _race(
    url: str, queue: str, task_ids: list[str], seed: int, threads: int
) -> tuple[int, list[str]]:
    """Run ``threads`` racing threads; returns how many transitions they won together, and
    every exception other than the refusals a lost race is expected to raise."""
    engine = create_engine(url)
    store = Store(engine)
    won = [0] * threads
    unexpected: list[str] = []

    def racer(index: int) -> None:
        try:
            race(index)
        except BaseException:
            unexpected.append(f"racer {seed}.{index}: {traceback.format_exc()}")

    def race(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        for _ in range(ROUNDS):
            task_id = rng.choice(task_ids)
            action = rng.choice(["claim", "complete", "cancel", "acknowledge", "retry"])
            try:
                if action == "claim":
                    won[index] += store.claim(worker=f"r{seed}.{index}", queues=[queue]) is not None
                elif action == "complete":
                    seen = store.get(task_id)
                    if seen.status is Status.RUNNING:
                        store.transition(task_id, COMPLETE, attempt=seen.attempts, result=index)
                        won[index] += 1
                elif action == "cancel":
                    # a running task is only asked to stop: no transition
                    won[index] += store.cancel(task_id).status is Status.CANCELLED
                elif action == "acknowledge":
                    # the run stops as asked: running -> cancelled, racing its completion
                    seen = store.get(task_id)
                    if seen.status is Status.RUNNING:
                        store.transition(task_id, CANCEL, attempt=seen.attempts)
                        won[index] += 1
                else:
                    store.retry(task_id, force=True)
                    won[index] += 1
            except (InvalidTransition, RunSuperseded):
                pass

    workers = [threading.Thread(target=racer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    engine.dispose()
    return sum(won), unexpected


@pytest.mark.slow
def test_racing_threads_and_processes_never_lose_or_double_a_transition(trail: Trail) -> None:
    @trail.task("race.noop")
    def noop(ctx: TaskContext) -> None:
        return None

    queue = f"race-{uuid.uuid4().hex[:8]}"
    task_ids = [trail.submit("race.noop", queue=queue).id for _ in range(TASKS)]
    url = trail.engine.url.render_as_string(hide_password=False)

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as processes:
        remote = [processes.submit(_race, url, queue, task_ids, seed, THREADS) for seed in (1, 2)]
        outcomes = [_race(url, queue, task_ids, 3, THREADS)]
        outcomes += [f.result(timeout=300) for f in remote]
    assert [error for _, errors in outcomes for error in errors] == []
    won = sum(count for count, _ in outcomes)

    transition_events = 0
    for task_id in task_ids:
        history = [e for e in trail.events(task_id) if e.to_status is not None]
        transition_events += len(history)
        assert history[0].from_status is None
        for before, after in pairwise(history):
            assert after.from_status == before.to_status, (task_id, before, after)
            assert after.to_status is not None
            assert is_allowed(after.from_status, after.to_status), (task_id, after)
        assert trail.get(task_id).status == history[-1].to_status
    assert transition_events == TASKS + won
    assert won > TASKS  # the race really happened: more than one move per task
