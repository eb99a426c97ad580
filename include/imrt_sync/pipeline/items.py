"""Item sync and deletion: :func:`sync_unit` syncs and deletes the items of one work unit, each on its own
(docs/how-a-run-works.md, the ``sync`` task; an item still being created: its section "Items still being created").
"""

from __future__ import annotations

import logging

from ..absence import AbsenceNotProven, AbsenceWitness
from ..config import RunParams
from ..contracts import UnitOutcome, WorkUnit
from ..errors import ItemValidationError, is_transient
from ..gitlab import GitLabProject, GroupNotReadable
from ..gitrepo import ITEM_FILE, Commit, GitFetchError, ItemRepository, first_create_branch, remote_heads
from ..mapping import MappedItem, map_item, parse_item_json
from ..store import BeingCreated, ItemEvent, Revision
from .services import Services

log = logging.getLogger(__name__)


def sync_unit(services: Services, unit: WorkUnit, params: RunParams) -> UnitOutcome:
    """Sync and delete the unit's items, each on its own and under its item lock (another run may be syncing the
    same item: :meth:`~imrt_sync.store.ItemStore.item_lock`); report per item. Never raises for one item's failure;
    ``transient``: some failure may pass on a retry (:func:`~imrt_sync.errors.is_transient`)."""
    outcome: UnitOutcome = {"label": unit["label"], "events": {}, "failed": {}, "transient": False}
    absence = AbsenceWitness(services.gitlab, services.settings.scope, relist=bool(params.item_ids))
    for action, project_id in [("sync", p) for p in unit["sync"]] + [("delete", p) for p in unit["delete"]]:
        if params.dry_run:
            log.info("DRY RUN: would %s project %s", action, project_id)
            continue
        try:
            with services.store.item_lock(project_id):
                event = (
                    _sync_item(services, project_id, params)
                    if action == "sync"
                    else _delete_item(services, absence, project_id)
                )
        except Exception as exc:
            outcome["failed"][str(project_id)] = _item_failure(project_id, exc)
            outcome["transient"] |= is_transient(exc)
        else:
            if event is not None:
                log.info(event.log_line())
                outcome["events"][str(project_id)] = event.kind
    return outcome


def _item_failure(project_id: int, exc: Exception) -> str:
    """Log one item's failure (call it while handling ``exc``); its message for the exit message."""
    if isinstance(exc, (GroupNotReadable, AbsenceNotProven)):
        log.error("item of project %s not deleted: %s", project_id, exc)
        return f"project {project_id}: {exc}; not deleted"
    if isinstance(exc, ItemValidationError):
        log.error("item of project %s failed: %s", project_id, exc)
        return str(exc)
    log.exception("item of project %s failed", project_id)
    return f"project {project_id}: {type(exc).__name__}: {exc}"


def _sync_item(services: Services, project_id: int, params: RunParams) -> ItemEvent | None:
    """Write what the project's repository holds of its item; None when nothing was written but the observed head
    (``item.json`` did not change), or when the project is gone since the listing."""
    project = services.gitlab.project(project_id)
    if project is None:
        log.warning("project %s is gone since the listing: left for the next run to delete", project_id)
        return None
    full = params.mode == "full"
    recorded = services.store.recorded_commit(project_id)
    created = services.store.items_being_created([project_id]).get(project_id)
    revision, published = _read_revision(services, project, recorded, created, full=full)
    # A published item is rewritten from the default branch's whole history, even when its last item.json commit
    # is the one already recorded from the create branch (a fast-forward merge).
    event = services.store.save(revision, full=full or published)
    if event is None:
        log.info("project %s is already up to date", project_id)
    return event


def _read_revision(
    services: Services, project: GitLabProject, recorded: str | None, created: BeingCreated | None, *, full: bool
) -> tuple[Revision, bool]:
    """What the repository holds of the item now (the ``item.json`` commits since ``recorded``, or all of them), and
    whether an item being created was published since its last sync."""
    settings, project_id = services.settings, project["id"]
    default = _default_branch(project)
    with ItemRepository(settings.git_cache_dir, project_id, project["http_url_to_repo"], services.git_access) as repo:
        head = repo.fetch(default)
        branch, source_head = _item_source(services, repo, project, head, recorded is not None, created)
        published = _published(project_id, branch, created, source_head)
        since = None if full or published else recorded
        tip = source_head or head
        history = repo.item_history(tip.sha, ITEM_FILE, since)
        item: MappedItem | None = None
        statuses: tuple[str | None, ...] = ()
        if history.commits or since is None:
            item, statuses = _read_item(
                repo, project_id, tip.sha, branch, history.commits, settings.max_item_json_bytes
            )
        item_blob = repo.blob_id(head.sha, ITEM_FILE)
    revision = Revision(
        project_id,
        settings.group,
        branch,
        head,
        history.commits,
        item,
        statuses,
        history.incremental,
        source_head,
        item_blob,
    )
    return revision, published


def _default_branch(project: GitLabProject) -> str:
    """The project's default branch. GitLab sends none for an empty repository: planned as empty, such a project is
    not synced; one emptied since the listing fails like a fetch that finds no branch (and is retried)."""
    branch = project["default_branch"]
    if branch is None:
        raise GitFetchError(f"the repository of {project['path']} has no default branch (it is empty)")
    return branch


def _item_source(
    services: Services,
    repo: ItemRepository,
    project: GitLabProject,
    head: Commit,
    recorded: bool,
    created: BeingCreated | None,
) -> tuple[str, Commit | None]:
    """The branch ``item.json`` is read from, and that branch's head when it is not the default branch.

    As the legacy service did: only for a new item or one still being created, and only when ``item.json`` is missing
    on the default branch (the legacy ``master``), the item is read from its ``create_<user>`` branch: the one it
    was read from before while that branch exists, else the first ``create_*`` branch by name (GitLab lists branches
    by name); with none, the legacy error. Otherwise the default branch. (Legacy: SmarterApp/AP_IMRT_ItemIngestService
    at tag 0.1.46, ``src/main/java/org/opentestsystem/ap/imrt/iis/client/GitlabClientImpl.java``, ``getItemHistory``.)
    """
    default, project_id = _default_branch(project), project["id"]
    if (recorded and created is None) or repo.has_file(head.sha, ITEM_FILE):
        return default, None
    branches = remote_heads(project["http_url_to_repo"], services.git_access)
    branch = created.branch if created is not None and created.branch in branches else first_create_branch(branches)
    if branch is None:
        raise ItemValidationError(project_id, f"Unable to find create_<user> branch for itemBankId {project_id}")
    return branch, repo.fetch(branch)


def _published(project_id: int, branch: str, created: BeingCreated | None, source_head: Commit | None) -> bool:
    """Whether an item still being created at its last sync is read from the default branch now: it was published."""
    if created is None or source_head is not None:
        return False
    log.info(
        "project %s: %s is on branch %r now: the item is no longer being created (was on %r)",
        project_id,
        ITEM_FILE,
        branch,
        created.branch,
    )
    return True


def _read_item(
    repo: ItemRepository, project_id: int, sha: str, branch: str, commits: tuple[Commit, ...], max_bytes: int
) -> tuple[MappedItem, tuple[str | None, ...]]:
    """``item.json`` at ``sha`` mapped, and the workflow status it had at each of ``commits``."""
    raw = _read_item_file(repo, project_id, sha, branch, max_bytes)
    item = map_item(parse_item_json(raw, project_id, max_bytes=max_bytes), project_id)
    return item, _workflow_statuses(repo, project_id, commits, item, max_bytes)


def _read_item_file(repo: ItemRepository, project_id: int, sha: str, branch: str, max_bytes: int) -> bytes:
    try:
        raw = repo.read(sha, ITEM_FILE, max_bytes)
    except ValueError as exc:
        raise ItemValidationError(project_id, str(exc)) from None
    if raw is None:
        raise ItemValidationError(project_id, f"{ITEM_FILE} is missing at the head of branch {branch!r}")
    return raw


def _workflow_statuses(
    repo: ItemRepository, project_id: int, commits: tuple[Commit, ...], item: MappedItem, max_bytes: int
) -> tuple[str | None, ...]:
    """The workflow status ``item.json`` had at each commit; the last commit's is ``item``'s."""
    if not commits:
        return ()
    earlier = tuple(_workflow_status_at(repo, project_id, commit.sha, max_bytes) for commit in commits[:-1])
    return (*earlier, item.columns["workflow_status"])


def _workflow_status_at(repo: ItemRepository, project_id: int, sha: str, max_bytes: int) -> str | None:
    """None when ``item.json`` is absent or does not map at that commit."""
    try:
        raw = repo.read(sha, ITEM_FILE, max_bytes)
        if raw is None:
            return None
        return map_item(parse_item_json(raw, project_id, max_bytes=max_bytes), project_id).columns["workflow_status"]
    except (ItemValidationError, ValueError):
        return None


def _delete_item(services: Services, absence: AbsenceWitness, project_id: int) -> ItemEvent | None:
    """Delete the item only if its project is confirmed gone right now (GitLab re-asked just before the delete)."""
    reason = absence.why_gone(project_id)
    if reason is None:
        log.warning("project %s is in the %s again: its item is kept", project_id, services.settings.scope.describe())
        return None
    log.info("project %s: %s; deleting its item", project_id, reason)
    event = services.store.delete(project_id)
    if event is None:
        log.info("project %s: its item was already deleted", project_id)
    return event
