"""Persistence: the only package that executes SQL."""

from tasktrail.store.engine import create_engine
from tasktrail.store.store import NewTask, Store, utcnow

__all__ = ["NewTask", "Store", "create_engine", "utcnow"]
