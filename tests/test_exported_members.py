"""The public API is what ``tasktrail.__all__`` says, and the contract's names are in it."""

from __future__ import annotations

import tasktrail

CONTRACT = {"Trail", "TaskContext", "Link", "InvalidTransition", "TaskNotFound"}


def test_all_exports_exist_and_cover_the_contract() -> None:
    assert set(tasktrail.__all__) >= CONTRACT
    for name in tasktrail.__all__:
        assert hasattr(tasktrail, name), name
    public = {n for n in dir(tasktrail) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(tasktrail.__all__)


def test_every_exception_derives_from_the_package_base() -> None:
    for name in tasktrail.__all__:
        member = getattr(tasktrail, name)
        if isinstance(member, type) and issubclass(member, Exception):
            assert issubclass(member, tasktrail.TasktrailError), name
