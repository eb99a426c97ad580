"""The imrt database: reading what was synced, and writing or deleting one item in one transaction.

Every write holds the legacy ``project_lock`` row of its project (the legacy SQL: SmarterApp/AP_IMRT_ItemIngestService
at tag 0.1.46, ``src/main/java/org/opentestsystem/ap/imrt/iis/repository/ProjectLockRepositoryJdbcImpl.java``),
so this service and the legacy Java service can share a database. The lock is taken in its own committed
transaction, as the legacy service does, and released inside the write transaction: the item's rows and the release
commit together or not at all.

Runs of both DAGs (the bank-wide runs and the hook events' runs) may sync the same item at the same time; a sync reads
the repository before it writes, so each item's read and write together hold the item lock (:meth:`ItemStore.item_lock`,
a PostgreSQL advisory lock held by one connection: released when it ends, or when its process dies). The sync that
takes the lock second reads the repository after the first one wrote: the newer state is written last.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from . import schema
from .config import SyncSettings, field_defaults
from .errors import ItemValidationError, TransientError
from .gitrepo import Commit
from .mapping import MappedItem

log = logging.getLogger(__name__)

T = TypeVar("T")

_ACQUIRE_LOCK = sa.text(
    "INSERT INTO project_lock(project_id, locked_at, created_at, updated_at, updated_by) "
    "VALUES (:project_id, :now, :now, :now, 'internal') "
    "ON CONFLICT(project_id) DO UPDATE SET locked_at = :now, updated_at = :now "
    "WHERE (SELECT locked_at FROM project_lock WHERE project_id = :project_id) + INTERVAL '60 seconds' < :now"
)
_RELEASE_LOCK = sa.text("DELETE FROM project_lock WHERE project_id = :project_id AND locked_at = :locked_at")
_TRY_ITEM_LOCK = sa.text("SELECT pg_try_advisory_lock(:space, :key)")
_ITEM_UNLOCK = sa.text("SELECT pg_advisory_unlock(:space, :key)")


# First key of the advisory locks that serialise stim_link maintenance per stimulus id ("STIM" in ASCII).
STIMULUS_LOCK_SPACE = 0x5354494D
# First key of the item locks, per project id ("ITEM" in ASCII).
ITEM_LOCK_SPACE = 0x4954454D


ITEM_ADOPTED = "ITEM_ADOPTED"  # not a legacy event: an item the legacy service synced, taken over unchanged


class ProjectLockedError(RuntimeError, TransientError):
    """Another writer holds the project's lock: try again later."""


@dataclass(frozen=True)
class ItemEvent:
    kind: str
    key: int
    item_id: int
    project_id: int

    def log_line(self) -> str:
        return f"ITEM EVENT type: {self.kind} key: {self.key} itemId: {self.item_id} projectId: {self.project_id}"


@dataclass(frozen=True)
class Revision:
    """What a sync saw of one project: the branch heads, and the ``item.json`` commits since the recorded one.

    ``branch`` is the branch ``item.json`` was read from (``item_git.ingest_source``); ``head`` is the head of the
    project's default branch, which planning compares. ``source_head`` is the head of ``branch`` when the item is
    still being created there (a ``create_<user>`` branch, ``item.json`` not on the default branch yet), else None.
    ``commits`` are the commits that changed ``item.json`` (oldest first): after the recorded one when
    ``incremental``, else the whole history. ``statuses`` is the workflow status ``item.json`` had at each of them
    (None where it did not parse). ``item`` is ``item.json`` at the head (the same file as at the last of
    ``commits``); it is None when no commit changed ``item.json``: then only the observed head is recorded.
    """

    project_id: int
    group: str
    branch: str
    head: Commit
    commits: tuple[Commit, ...]
    item: MappedItem | None
    statuses: tuple[str | None, ...] = ()
    incremental: bool = False
    source_head: Commit | None = None
    item_blob: str | None = None  # the blob id of item.json at ``head`` (None without one there)

    @property
    def is_being_created(self) -> bool:
        """The legacy ``is_being_created = (branch ≠ master)`` (IIS 0.1.46 ``client/GitlabClientImpl.java:407``), our
        master being the default branch."""
        return self.source_head is not None

    @property
    def last(self) -> Commit:
        """The last commit that changed ``item.json``: what ``item_git`` records, as the legacy service did."""
        return self.commits[-1]


@dataclass(frozen=True)
class BeingCreated:
    """Where an item still being created is read from: its ``create_<user>`` branch, and that branch's head at the
    last sync (None when the item was synced by the legacy service, which did not record it)."""

    branch: str
    source_head: str | None


_LOCK_WAIT_SECONDS = field_defaults(SyncSettings)["lock_wait_seconds"]


class ItemStore:
    def __init__(self, engine: sa.Engine, *, lock_wait_seconds: float = _LOCK_WAIT_SECONDS):
        self._engine = engine
        self._lock_wait = lock_wait_seconds

    def recorded_heads(self, project_ids: Iterable[int] | None = None) -> dict[int, str | None]:
        """The branch head each synced project was last synced at (``imrt_project_head``), by project id, for all
        items or the given ones; None for an item that only the legacy service synced (an ``item_git`` row without a
        head): planning syncs it once, which adopts its rows or updates them, and records its head."""
        git, head = schema.item_git, schema.imrt_project_head
        query = sa.select(git.c.project_id, head.c.head_sha).outerjoin(head, head.c.project_id == git.c.project_id)
        if project_ids is not None:
            query = query.where(git.c.project_id.in_(list(project_ids)))
        with self._engine.connect() as conn:
            return dict(conn.execute(query).all())

    def recorded_item_blobs(self) -> dict[int, str]:
        """The blob id of ``item.json`` at the head each project was last synced at, for the projects that have one
        recorded (``imrt_project_head.item_blob_oid``)."""
        head = schema.imrt_project_head
        query = sa.select(head.c.project_id, head.c.item_blob_oid).where(head.c.item_blob_oid.is_not(None))
        with self._engine.connect() as conn:
            return dict(conn.execute(query).all())

    def items_being_created(self, project_ids: Iterable[int] | None = None) -> dict[int, BeingCreated]:
        """The items still being created (``item.is_being_created``), all or the given ones, by project id: the
        branch each was read from (``item_git.ingest_source``) and that branch's head when it was synced."""
        git, item, head = schema.item_git, schema.item, schema.imrt_project_head
        query = (
            sa.select(git.c.project_id, git.c.ingest_source, head.c.source_head_sha)
            .join(item, item.c.key == git.c.item_key)
            .outerjoin(head, head.c.project_id == git.c.project_id)
            .where(item.c.is_being_created)
        )
        if project_ids is not None:
            query = query.where(git.c.project_id.in_(list(project_ids)))
        with self._engine.connect() as conn:
            return {row.project_id: BeingCreated(row.ingest_source, row.source_head_sha) for row in conn.execute(query)}

    def recorded_commit(self, project_id: int) -> str | None:
        """``item_git.current_commit_hash``: the last ``item.json`` commit synced from the project."""
        query = sa.select(schema.item_git.c.current_commit_hash).where(schema.item_git.c.project_id == project_id)
        with self._engine.connect() as conn:
            return conn.scalar(query)

    def recorded_count(self) -> int:
        """How many items ``item_git`` records: what the deletion guard counts over."""
        with self._engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(schema.item_git)).scalar_one()

    def item_ids(self, project_ids: Iterable[int]) -> dict[int, str]:
        """The item id of each synced project, for labels and messages."""
        query = (
            sa.select(schema.item_git.c.project_id, schema.item.c.id)
            .join(schema.item, schema.item.c.key == schema.item_git.c.item_key)
            .where(schema.item_git.c.project_id.in_(list(project_ids)))
        )
        with self._engine.connect() as conn:
            return {row.project_id: str(row.id) for row in conn.execute(query)}

    def save(self, revision: Revision, *, full: bool = False) -> ItemEvent | None:
        """Write the revision; None when ``item.json`` did not change since the recorded commit (and ``full`` is
        off): then only the observed head is recorded, and no legacy row is written."""
        return self._locked(revision.project_id, lambda conn: _write_revision(conn, revision, full=full))

    def delete(self, project_id: int) -> ItemEvent | None:
        """Delete the item synced from the project; None when there is none."""
        return self._locked(project_id, lambda conn: _delete_item(conn, project_id))

    def _locked(self, project_id: int, write):
        """Run ``write`` in one transaction that also releases the project's lock."""
        locked_at = self._acquire(project_id)
        try:
            with self._engine.begin() as conn:
                event = write(conn)
                self._release(conn, project_id, locked_at)
            return event
        except BaseException:
            self._release_after_failure(project_id, locked_at)
            raise

    @contextmanager
    def item_lock(self, project_id: int) -> Iterator[None]:
        """Hold the item's lock while the block reads the repository and writes the item: another run syncing or
        deleting the same item waits (up to ``lock_wait_seconds``, then :class:`ProjectLockedError`, which a later
        attempt retries)."""
        key = {"space": ITEM_LOCK_SPACE, "key": _int32(project_id)}
        # A session lock, outside any transaction: none stays open while the block works.
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            _wait_for(
                lambda: conn.execute(_TRY_ITEM_LOCK, key).scalar_one() or None,
                self._lock_wait,
                f"project {project_id} is being synced by another run (item lock)",
            )
            try:
                yield
            finally:
                conn.execute(_ITEM_UNLOCK, key)

    def _acquire(self, project_id: int) -> datetime:
        def taken() -> datetime | None:
            now = _now_ms()
            with self._engine.begin() as conn:
                inserted = conn.execute(_ACQUIRE_LOCK, {"project_id": project_id, "now": now}).rowcount == 1
            return now if inserted else None

        return _wait_for(taken, self._lock_wait, f"project {project_id} is locked by another writer (project_lock)")

    def _release_after_failure(self, project_id: int, locked_at: datetime) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(_RELEASE_LOCK, {"project_id": project_id, "locked_at": locked_at})
        except sa.exc.SQLAlchemyError:
            log.warning("could not release the lock of project %s: the legacy 60 s take-over applies", project_id)

    @staticmethod
    def _release(conn: sa.Connection, project_id: int, locked_at: datetime) -> None:
        if conn.execute(_RELEASE_LOCK, {"project_id": project_id, "locked_at": locked_at}).rowcount != 1:
            raise ProjectLockedError(
                f"the lock of project {project_id} was taken over by another writer while this one held it: "
                "nothing was written"
            )


def _wait_for(attempt: Callable[[], T | None], wait_seconds: float, locked: str) -> T:
    """``attempt``'s first answer other than None, tried with a growing pause for up to ``wait_seconds``; then
    :class:`ProjectLockedError` with the message ``locked``."""
    deadline = time.monotonic() + wait_seconds
    pause = 0.2
    while True:
        result = attempt()
        if result is not None:
            return result
        if time.monotonic() + pause > deadline:
            raise ProjectLockedError(locked)
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def _now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _write_revision(conn: sa.Connection, revision: Revision, *, full: bool) -> ItemEvent | None:
    git_row = conn.execute(
        sa.select(schema.item_git).where(schema.item_git.c.project_id == revision.project_id).with_for_update()
    ).first()
    first_observed = _record_head(conn, revision)
    mapped = revision.item
    if (
        mapped is None
        or not revision.commits
        or (git_row is not None and git_row.current_commit_hash == revision.last.sha and not full)
    ):
        return _adopted(conn, git_row) if git_row is not None and first_observed else None
    previous = _previous_item(conn, revision, mapped, git_row)
    key = _upsert_item(conn, revision, mapped, previous, full=full)
    _replace_children(conn, key, revision, mapped)
    _link_stimulus(conn, key, mapped, revision.last.author_name)
    _upsert_item_git(conn, key, revision)
    _append_item_log(conn, key, revision)
    kind = "ITEM_CREATED" if previous is None else "ITEM_UPDATED"
    return ItemEvent(kind, key, mapped.item_id, revision.project_id)


def _previous_item(conn: sa.Connection, revision: Revision, mapped: MappedItem, git_row) -> sa.Row | None:
    item = schema.item
    if git_row is not None:
        return conn.execute(sa.select(item).where(item.c.key == git_row.item_key)).first()
    same_id = conn.execute(sa.select(item).where(item.c.id == mapped.item_id).with_for_update()).first()
    if same_id is None:
        return None
    owner = conn.scalar(sa.select(schema.item_git.c.project_id).where(schema.item_git.c.item_key == same_id.key))
    if owner is not None and owner != revision.project_id:
        raise ItemValidationError(
            revision.project_id,
            f"item id {mapped.item_id} is already synced from project {owner}",
            str(mapped.item_id),
        )
    return same_id


def _adopted(conn: sa.Connection, git_row) -> ItemEvent:
    """An item synced by the legacy service, seen by this service for the first time with its last ``item.json``
    commit already recorded: its rows stay as they are, only its branch head is recorded."""
    item_id = conn.execute(sa.select(schema.item.c.id).where(schema.item.c.key == git_row.item_key)).scalar_one()
    return ItemEvent(ITEM_ADOPTED, git_row.item_key, item_id, git_row.project_id)


def _record_head(conn: sa.Connection, revision: Revision) -> bool:
    """Record the branch heads the sync saw; True when the project had no recorded head before."""
    heads = schema.imrt_project_head
    observed = {
        "head_sha": revision.head.sha,
        "source_head_sha": revision.source_head.sha if revision.source_head is not None else None,
        "item_blob_oid": revision.item_blob,
    }
    statement = insert(heads).values(project_id=revision.project_id, **observed)
    statement = statement.on_conflict_do_update(
        index_elements=[heads.c.project_id], set_={**observed, "observed_at": sa.func.now()}
    )
    # PostgreSQL's xmax is 0 for a row this statement inserted, the updating transaction's id for one it updated.
    return conn.execute(statement.returning(sa.literal_column("xmax") == 0)).scalar_one()


def _upsert_item(
    conn: sa.Connection, revision: Revision, mapped: MappedItem, previous: sa.Row | None, *, full: bool
) -> int:
    values = {
        **mapped.columns,
        "item_json": mapped.stored_item_json,
        "is_being_created": revision.is_being_created,
        "updated_by": revision.last.author_name,
        "updated_at": sa.func.now(),
    }
    known_status = previous.workflow_status if previous is not None and revision.incremental and not full else None
    status_set_at = status_changed_at(revision.commits, revision.statuses, known_status)
    if previous is None:
        first = revision.commits[0]
        values.update(
            item_created_by=first.author_name,
            item_created_at=first.committed_at,
            workflow_status_set_at=status_set_at,
        )
        return conn.execute(sa.insert(schema.item).values(values).returning(schema.item.c.key)).scalar_one()
    if status_set_at is not None:
        values["workflow_status_set_at"] = status_set_at
    conn.execute(sa.update(schema.item).where(schema.item.c.key == previous.key).values(values))
    return previous.key


def status_changed_at(
    commits: tuple[Commit, ...], statuses: tuple[str | None, ...], known_status: str | None
) -> datetime | None:
    """The date of the commit that gave the item its current workflow status, None if ``commits`` did not change it.

    ``known_status`` is the status before the first of ``commits`` (None: unknown, the commits are the whole
    history). Reading the status at every commit, not only at the head, makes the date the same whether the
    commits were synced one run at a time or all at once.
    """
    previous = known_status
    changed_at = None
    for commit, status in zip(commits, statuses, strict=True):
        if changed_at is None and known_status is None or status != previous:
            changed_at = commit.committed_at
        previous = status
    return changed_at


def _replace_children(conn: sa.Connection, key: int, revision: Revision, mapped: MappedItem) -> None:
    audit = {"item_key": key, "updated_by": revision.last.author_name}
    # Forms are replaced, as the legacy writer did (IIS 0.1.46 service/ItemRevisionWriterImpl.java:79-82).
    conn.execute(sa.delete(schema.item_form).where(schema.item_form.c.item_key == key))
    if mapped.forms:
        conn.execute(sa.insert(schema.item_form), [{**form, **audit} for form in mapped.forms])
    _write_attachments(conn, key, revision, mapped)


def _write_attachments(conn: sa.Connection, key: int, revision: Revision, mapped: MappedItem) -> None:
    """The item's attachments as its ``item.json`` lists them now: a listed one keeps its row (``created_at``), a
    removed one is deleted (docs/legacy-differences.md, "Attachments")."""
    rows = _attachment_rows(key, revision, mapped)
    _delete_unlisted_attachments(conn, key, rows)
    if rows:
        _upsert_attachments(conn, rows)


def _attachment_rows(key: int, revision: Revision, mapped: MappedItem) -> list[dict]:
    # V15 has uploaded_at NOT NULL: an attachment without uploadedDate gets the date of the item.json commit.
    uploaded = revision.last.committed_at
    audit = {"item_key": key, "updated_by": revision.last.author_name}
    return [{**a, **audit, "uploaded_at": a["uploaded_at"] or uploaded} for a in mapped.attachments]


def _delete_unlisted_attachments(conn: sa.Connection, key: int, rows: list[dict]) -> None:
    table = schema.item_attachment
    listed = [(row["file_name"], row["file_type"]) for row in rows]
    conn.execute(
        sa.delete(table).where(table.c.item_key == key, sa.tuple_(table.c.file_name, table.c.file_type).not_in(listed))
    )


def _upsert_attachments(conn: sa.Connection, rows: list[dict]) -> None:
    """Insert new attachments; update a listed one only where its date or author changed, as Hibernate's merge of the
    legacy entity did: ``created_at`` is never updated (Common 0.1.39 model/BaseEntity.java:26, ``updatable =
    false``), ``updated_at`` moves only with a change (``@LastModifiedDate``, :31)."""
    table = schema.item_attachment
    statement = insert(table).values(rows)
    changed = {"uploaded_at": statement.excluded.uploaded_at, "updated_by": statement.excluded.updated_by}
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.item_key, table.c.file_name, table.c.file_type],
            set_={**changed, "updated_at": sa.func.now()},
            where=sa.or_(*(table.c[name].is_distinct_from(value) for name, value in changed.items())),
        )
    )


def _link_stimulus(conn: sa.Connection, key: int, mapped: MappedItem, author: str) -> None:
    """Keep ``stim_link`` a true picture of the documents: an item links to its stimulus once both are synced.

    An item and its stimulus written by two concurrent transactions would each miss the other's uncommitted row,
    and neither would write the link. Both therefore take the stimulus id's transaction lock first: the second to
    get it waits for the first to commit, and its queries (READ COMMITTED: a new snapshot per statement) see it.

    ``updated_by`` as the legacy writer had it (IIS 0.1.46 ``ItemRevisionWriterImpl.java:92`` and ``:115``): the
    item's author (``author``, the last commit that changed the item's ``item.json``) when the item writes its
    link, each linked item's own ``updated_by`` when a stimulus links them: the same value either way.
    """
    item, link = schema.item, schema.stim_link
    stimulus_id = mapped.item_id if mapped.is_stimulus else mapped.stimulus_id
    if stimulus_id is not None:
        _lock_stimulus(conn, stimulus_id)
    if mapped.is_stimulus:
        conn.execute(sa.delete(link).where(link.c.item_key == key))
        linked_items = sa.select(item.c.key, sa.literal(key), item.c.updated_by).where(
            item.c.associated_stimulus_id == mapped.item_id, item.c.classification != "stim"
        )
        statement = insert(link).from_select(["item_key", "item_key_stim", "updated_by"], linked_items)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[link.c.item_key],
                set_={"item_key_stim": statement.excluded.item_key_stim, "updated_by": statement.excluded.updated_by},
            )
        )
        return
    stimulus_key = None
    if mapped.stimulus_id is not None:
        stimulus_key = conn.scalar(
            sa.select(item.c.key).where(item.c.id == mapped.stimulus_id, item.c.classification == "stim")
        )
        if stimulus_key is None:
            log.warning(
                "item %s names stimulus %s, which is not in IMRT yet: linked when the stimulus is synced",
                mapped.item_id,
                mapped.stimulus_id,
            )
    if stimulus_key is None:
        conn.execute(sa.delete(link).where(link.c.item_key == key))
        return
    statement = insert(link).values(item_key=key, item_key_stim=stimulus_key, updated_by=author)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[link.c.item_key],
            set_={"item_key_stim": stimulus_key, "updated_by": author, "updated_at": sa.func.now()},
        )
    )


def _lock_stimulus(conn: sa.Connection, stimulus_id: int) -> None:
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(:space, :key)"),
        {"space": STIMULUS_LOCK_SPACE, "key": _int32(stimulus_id)},
    )


def _int32(value: int) -> int:
    """The two-int form of an advisory lock takes int4 keys: fold a (possibly larger) item id into that range."""
    return (value & 0xFFFFFFFF) - (1 << 32 if value & 0x80000000 else 0)


def _upsert_item_git(conn: sa.Connection, key: int, revision: Revision) -> None:
    values = {
        "item_key": key,
        "project_id": revision.project_id,
        "project_path": revision.group,
        "current_commit_hash": revision.last.sha,
        "current_commit_date": revision.last.committed_at,
        "ingest_source": revision.branch,
        "updated_by": revision.last.author_name,
    }
    statement = insert(schema.item_git).values(values)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[schema.item_git.c.project_id],
            set_={**{k: v for k, v in values.items() if k != "project_id"}, "updated_at": sa.func.now()},
        )
    )


def _append_item_log(conn: sa.Connection, key: int, revision: Revision) -> None:
    rows = [
        {
            "item_key": key,
            "commit_hash": c.sha,
            "commit_date": c.committed_at,
            "ingest_source": revision.branch,
            "updated_by": c.author_name,
        }
        for c in revision.commits
    ]
    conn.execute(insert(schema.item_log).on_conflict_do_nothing(), rows)


def _delete_item(conn: sa.Connection, project_id: int) -> ItemEvent | None:
    git_row = conn.execute(
        sa.select(schema.item_git).where(schema.item_git.c.project_id == project_id).with_for_update()
    ).first()
    if git_row is None:
        return None
    key = git_row.item_key
    row = conn.execute(
        sa.select(schema.item.c.id, schema.item.c.classification, schema.item.c.associated_stimulus_id).where(
            schema.item.c.key == key
        )
    ).one()
    item_id = row.id
    stimulus_id = row.id if row.classification == "stim" else row.associated_stimulus_id
    if stimulus_id is not None:
        _lock_stimulus(conn, stimulus_id)
    link = schema.stim_link
    conn.execute(sa.delete(schema.item_log).where(schema.item_log.c.item_key == key))
    conn.execute(sa.delete(schema.item_git).where(schema.item_git.c.project_id == project_id))
    conn.execute(sa.delete(schema.imrt_project_head).where(schema.imrt_project_head.c.project_id == project_id))
    conn.execute(sa.delete(link).where(sa.or_(link.c.item_key == key, link.c.item_key_stim == key)))
    for table in (schema.item_form, schema.item_attachment):
        conn.execute(sa.delete(table).where(table.c.item_key == key))
    remaining_git = conn.scalar(sa.select(sa.func.count()).where(schema.item_git.c.item_key == key))
    if not remaining_git:
        conn.execute(sa.delete(schema.item).where(schema.item.c.key == key))
    return ItemEvent("ITEM_DELETED", key, item_id, project_id)
