"""What an ``imrt`` database holds of the item bank, in a form two databases can be compared by.

Surrogate keys (``item.key``, ``item_form.key``) differ between databases that synced the same bank in another
order, so every row is identified by item id instead; the columns the database fills from its own clock
(``created_at``, ``updated_at`` of the audit columns) are left out. Everything else, every row of every item table,
is compared: two databases with the same snapshot hold the same truth of the bank.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import sqlalchemy as sa

from imrt_sync import schema

ITEM_TABLES = ("item", "item_git", "item_log", "item_attachment", "item_form", "stim_link")
_CLOCK_COLUMNS = frozenset({"created_at", "updated_at"})
_SURROGATE_KEYS = frozenset({"key", "item_key", "item_key_stim"})

Snapshot = dict[str, list[tuple]]


def take(engine: sa.Engine) -> Snapshot:
    """Every item table's rows, sorted, with item ids in place of surrogate keys and no database-clock columns."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("item_git"):
            return {table: [] for table in ITEM_TABLES}
        return {name: _rows(conn, schema.metadata.tables[name]) for name in ITEM_TABLES}


def _rows(conn: sa.Connection, table: sa.Table) -> list[tuple]:
    item = schema.item
    owner = item.alias("owner")
    stimulus = item.alias("stimulus")
    columns: list = [c for c in table.c if c.name not in _CLOCK_COLUMNS | _SURROGATE_KEYS]
    query = sa.select(*columns)
    if "item_key" in table.c:
        query = query.add_columns(owner.c.id.label("item_id")).join(owner, owner.c.key == table.c.item_key)
    if "item_key_stim" in table.c:
        query = query.add_columns(stimulus.c.id.label("stimulus_id")).outerjoin(
            stimulus, stimulus.c.key == table.c.item_key_stim
        )
    return sorted((tuple(_comparable(v) for v in row) for row in conn.execute(query)), key=repr)


def _comparable(value: object) -> object:
    """JSON columns come back as dicts: compare them by their sorted items."""
    if isinstance(value, Mapping):
        return repr(sorted((k, _comparable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return repr([_comparable(v) for v in value])
    return value


def digest(snapshot: Snapshot) -> str:
    """A short digest of the snapshot and its item count, e.g. ``3f2a9c01d4e7 (2000 items)``."""
    text = repr(sorted(snapshot.items()))
    return f"{hashlib.sha256(text.encode()).hexdigest()[:12]} ({len(snapshot['item'])} items)"


def differences(actual: Snapshot, expected: Snapshot, limit: int = 3) -> list[str]:
    """Per table, how many rows only one side has, with up to ``limit`` examples of each: empty when equal."""
    found = []
    for table in ITEM_TABLES:
        mine, theirs = set(actual.get(table, [])), set(expected.get(table, []))
        extra, missing = sorted(mine - theirs, key=repr), sorted(theirs - mine, key=repr)
        if extra or missing:
            found.append(
                f"{table}: {len(extra)} rows not in the reference (e.g. {extra[:limit]}), "
                f"{len(missing)} reference rows missing (e.g. {missing[:limit]})"
            )
    return found
