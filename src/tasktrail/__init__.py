"""tasktrail: durable, linked, observable background tasks in your own SQL database."""

from tasktrail.context import Item, TaskContext
from tasktrail.errors import (
    InvalidInput,
    InvalidTransition,
    RunSuperseded,
    SchemaNotReady,
    TaskCancelled,
    TaskNotFound,
    TasktrailError,
    UnknownTask,
)
from tasktrail.executor import EmbeddedExecutor, Executor
from tasktrail.records import (
    EventRecord,
    ItemCounts,
    ItemRecord,
    Link,
    LinkRecord,
    Page,
    TaskRecord,
)
from tasktrail.retries import DoNotRetry
from tasktrail.staleness import StatusCheck
from tasktrail.states import ItemStatus, Status
from tasktrail.submission import Submission
from tasktrail.trail import Trail
from tasktrail.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "DoNotRetry",
    "EmbeddedExecutor",
    "EventRecord",
    "Executor",
    "InvalidInput",
    "InvalidTransition",
    "Item",
    "ItemCounts",
    "ItemRecord",
    "ItemStatus",
    "Link",
    "LinkRecord",
    "Page",
    "RunSuperseded",
    "SchemaNotReady",
    "Status",
    "StatusCheck",
    "Submission",
    "TaskCancelled",
    "TaskContext",
    "TaskNotFound",
    "TaskRecord",
    "TasktrailError",
    "Trail",
    "UnknownTask",
    "Worker",
    "__version__",
]
