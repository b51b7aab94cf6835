from __future__ import annotations

import threading

from tasktrail.ids import is_task_id, new_id


def test_ids_are_strictly_increasing_even_within_a_millisecond_and_across_threads() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(bucket: list[str]) -> None:
        bucket.extend(new_id() for _ in range(2000))

    threads = [threading.Thread(target=make, args=(bucket,)) for bucket in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for bucket in made:
        assert bucket == sorted(bucket)
    every = [i for bucket in made for i in bucket]
    assert len(set(every)) == len(every)
    assert all(len(i) == 26 for i in every)


def test_is_task_id_accepts_made_ids_only() -> None:
    made = new_id()
    assert is_task_id(made)
    for text in ("", made[:-1], made + "0", made.upper(), made[:-1] + "u", "\u0660" * 26):
        assert not is_task_id(text), text
