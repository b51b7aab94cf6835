"""``UTCDateTime``: a timestamp reads back as the instant written, in UTC, on both databases,
whatever zone it was written in and whatever zone the session is in; a naive one is
refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from tasktrail.schema import UTCDateTime

WRITTEN = [
    datetime(2026, 12, 6, 17, 30, 0, 123456, tzinfo=UTC),
    datetime(2026, 12, 6, 23, 15, 0, tzinfo=timezone(timedelta(hours=5, minutes=45))),
    datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Berlin")),
    datetime(1999, 12, 31, 16, 0, tzinfo=timezone(timedelta(hours=-8))),
    None,
]

moments = sa.Table(
    "schema_test_moments",
    sa.MetaData(),
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime),
)


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[sa.Engine]:
    """A plain engine (none of tasktrail's session settings); on PostgreSQL its sessions
    are in a zone that is not UTC, so the driver hands back times with another offset."""
    options = {}
    if empty_database_url.startswith("postgresql"):
        options = {"connect_args": {"options": "-c TimeZone=Asia/Kathmandu"}}
    engine = sa.create_engine(empty_database_url, **options)
    moments.create(engine)
    yield engine
    engine.dispose()


def test_a_timestamp_reads_back_as_the_instant_written_in_utc(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(moments.insert(), [{"n": n, "at": at} for n, at in enumerate(WRITTEN)])
    with engine.connect() as conn:
        read = conn.execute(sa.select(moments.c.at).order_by(moments.c.n)).scalars().all()

    assert read == WRITTEN  # aware datetimes compare as instants
    assert [at if at is None else at.tzinfo for at in read] == [UTC] * 4 + [None]


def test_a_timestamp_compared_in_sql_is_the_instant(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(moments.insert(), [{"n": n, "at": at} for n, at in enumerate(WRITTEN)])
    noon = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    with engine.connect() as conn:
        later = conn.execute(sa.select(moments.c.n).where(moments.c.at > noon)).scalars()
        assert sorted(later) == [0, 1]


def test_a_naive_timestamp_is_refused(engine: sa.Engine) -> None:
    with engine.begin() as conn, pytest.raises(sa.exc.StatementError, match="naive datetime"):
        conn.execute(moments.insert(), {"n": 1, "at": datetime(2026, 12, 6, 17, 30)})
