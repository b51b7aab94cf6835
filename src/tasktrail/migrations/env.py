"""Alembic environment for tasktrail's own tables.

tasktrail runs its migrations itself (``tasktrail db upgrade``, or automatically for a
new SQLite file); the connection comes in through ``config.attributes``.
"""

from alembic import context

from tasktrail.schema import metadata
from tasktrail.store.migrate import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    include_name=lambda name, type_, _parent: (
        type_ != "table" or (name or "").startswith("tasktrail_")
    ),
)
with context.begin_transaction():
    context.run_migrations()
