"""The listing: :func:`list_ids` lists the group's projects and their heads (a group run: the GraphQL sweep,
:mod:`imrt_sync.sweep`; a targeted run, ``imrt_gitlab_listing`` rest, or a sweep GitLab cannot serve: REST, each
project's head and hooks read on its own), compares them with IMRT and plans the run, with the projects whose hooks
are to be checked (docs/how-a-run-works.md, the ``list_ids`` task).

A run whose group is not readable is refused (:class:`RunRefused`); :func:`describe_listing_failure` is what a
failed listing publishes for the exit message.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ..absence import AccessNotProven, prove_full_access
from ..config import RunParams
from ..contracts import PlanView, WorkUnit
from ..errors import PermanentError
from ..gitlab import GitLabError, GitLabProject, GroupNotReadable
from ..gitrepo import RepositoryNotFound, remote_heads
from ..planning import HookRotation, Plan, ProjectState, plan_run, webhooks_to_verify, work_units
from ..store import BeingCreated
from ..sweep import SweepUnavailable, SweptProject, branch_heads, sweep_group
from ..webhook_events import EventLog
from .services import Services
from .webhooks import webhook_keeper

log = logging.getLogger(__name__)

LISTING_ERROR_LIMIT = 1000

# What reading one project gave: its state, why it could not be read, or the 404 of a project listed meanwhile gone.
ReadResult = ProjectState | str | Exception


class RunRefused(RuntimeError, PermanentError):
    """The run cannot go on safely and trying again will not help (e.g. the group is not readable)."""


def list_ids(services: Services, params: RunParams) -> tuple[PlanView, list[WorkUnit]]:
    """List the group's projects, compare them with IMRT and plan the run: the plan and its work units."""
    settings = services.settings
    if params.webhook_events and not params.item_ids:
        log.info("no pending GitLab hook events: nothing to do")
        return Plan(0, (), (), (), (), ()).as_dict(), []
    log.info("getting item bank ids from source control")
    started = time.monotonic()
    being_created = services.store.items_being_created(params.item_ids or None)
    listing = _swept_listing(services, params, being_created)  # the group's answer shows that it is readable
    if listing is None:
        _require_readable_group(services)
        listing = _rest_listing(services, params, being_created)
    log.info(
        "retrieved %d item bank ids from source control in %d seconds", len(listing.names), time.monotonic() - started
    )
    recorded = services.store.recorded_heads(params.item_ids or None)
    unreadable = {
        **listing.unreadable,
        **{pid: message for pid, message in listing.vanished.items() if pid in recorded},
    }
    plan = plan_run(
        listing.states,
        recorded,
        full=params.mode == "full",
        guard=settings.deletion_guard,
        listing_complete=True,  # every page to the end (X-Total checked when sent); deletions are re-checked
        items_total=services.store.recorded_count(),
        only_ids=params.item_ids,
        unreadable=unreadable,
        recorded_source_heads={pid: created.source_head for pid, created in being_created.items()},
    )
    if listing.swept:
        plan = replace(plan, verify_webhooks=_webhooks_to_verify(services, plan, listing, params))
    plan = _withhold_unproven_deletions(services, plan)
    _log_plan(plan, params)
    names = {**listing.names, **(services.store.item_ids(plan.to_delete) if plan.to_delete else {})}
    bound = settings.events_map_bound if params.webhook_events else settings.map_bound
    units = work_units(
        list(plan.to_sync), list(plan.to_delete), bound, names, settings.batch_size, settings.map_one_per_item
    )
    return plan.as_dict(), units


@dataclass(frozen=True)
class Listing:
    """What GitLab said about the projects in scope: the states read, the projects that could not be read (by id,
    with the error), those listed then answering 404, every listed project's path by id, and whether the sweep
    listed them (then hooks were not read: ``has_webhook`` is None)."""

    states: list[ProjectState]
    unreadable: dict[int, str]
    vanished: dict[int, str]
    names: dict[int, str]
    swept: bool = False


def _rest_listing(services: Services, params: RunParams, being_created: dict[int, BeingCreated]) -> Listing:
    """The REST listing: the group's projects, then each one's head (a ref advertisement) and hooks."""
    projects = _projects_in_scope(services, params)
    states, unreadable, vanished = _project_states(services, projects, being_created, read_hooks=True)
    return Listing(states, unreadable, vanished, {p["id"]: str(p["path"]) for p in projects})


def _swept_listing(services: Services, params: RunParams, being_created: dict[int, BeingCreated]) -> Listing | None:
    """The sweep's listing of a group run (None for a targeted run, with ``imrt_gitlab_listing`` rest, or when the
    sweep cannot answer for the whole group: the REST listing then plans the run). The create branches of items
    still being created are read through GraphQL too; each project the sweep cannot vouch for is read on its own, as
    the REST listing reads it."""
    settings = services.settings
    if params.item_ids or settings.listing != "graphql":
        return None
    try:
        swept = [p for p in sweep_group(services.gitlab, settings.scope) if p.path not in settings.ignore_projects]
    except SweepUnavailable as exc:
        log.warning("listing the group through REST this run: the GraphQL sweep is not available (%s)", exc)
        return None
    heads = _vouched_heads(services, swept, being_created)
    created = _items_being_created(services, swept, being_created)
    names = {p.project_id: p.path for p in swept}
    reread_ids = sorted(pid for pid in names if pid not in heads and pid not in created)
    projects, unreadable, vanished = _reread_projects(services, {pid: names[pid] for pid in reread_ids})
    states, failed, gone = _project_states(services, projects, being_created, read_hooks=False)
    states += list(created.values()) + [
        ProjectState(p.project_id, p.path, p.default_branch, heads[p.project_id], None)
        for p in swept
        if p.project_id in heads
    ]
    log.info("swept %d projects; %d read on their own", len(swept), len(reread_ids))
    return Listing(states, {**unreadable, **failed}, {**vanished, **gone}, names, swept=True)


def _vouched_heads(
    services: Services, swept: list[SweptProject], being_created: dict[int, BeingCreated]
) -> dict[int, str]:
    """The default-branch head of each swept project the sweep vouches for, by id: the head it read, or, from a
    GitLab whose GraphQL has no ``Repository.commit``, the head recorded at the last sync when ``item.json``'s blob
    is still the one recorded then. The others (not settled, items still being created, a blob that changed or was
    never recorded) are read on their own."""
    settled = [p for p in swept if p.settled and p.project_id not in being_created]
    blobs: dict[int, str] = {}
    recorded: dict[int, str | None] = {}
    if any(p.head is None for p in settled):
        blobs, recorded = services.store.recorded_item_blobs(), services.store.recorded_heads()
    heads = {}
    for project in settled:
        unchanged = blobs.get(project.project_id) == project.item_blob
        head = project.head or (recorded.get(project.project_id) if unchanged else None)
        if head is not None:
            heads[project.project_id] = head
    return heads


def _items_being_created(
    services: Services, swept: list[SweptProject], being_created: dict[int, BeingCreated]
) -> dict[int, ProjectState]:
    """The state of each item still being created whose default-branch head the sweep read, with the head of its
    create branch read through GraphQL (:func:`imrt_sync.sweep.branch_heads`, 40 a request), by project id. An item
    whose create branch GitLab did not show (gone, or an error) is left out, to be read on its own."""
    candidates = [
        p for p in swept if p.project_id in being_created and p.answered and p.default_branch and p.head is not None
    ]
    if not candidates:
        return {}
    try:
        tips = branch_heads(services.gitlab, [(p.full_path, being_created[p.project_id].branch) for p in candidates])
    except SweepUnavailable as exc:
        log.warning("reading the %d items being created on their own: %s", len(candidates), exc)
        return {}
    return {
        p.project_id: ProjectState(p.project_id, p.path, p.default_branch, p.head, None, tip)
        for p, tip in zip(candidates, tips, strict=True)
        if tip is not None
    }


def _reread_projects(
    services: Services, paths: dict[int, str]
) -> tuple[list[GitLabProject], dict[int, str], dict[int, str]]:
    """The projects of ``paths`` (project id -> path) read by id (``GET /projects/:id``): those read, those whose
    read failed and those answering 404, by id with the message."""
    project_ids = list(paths)

    def read(project_id: int) -> GitLabProject | None | Exception:
        try:
            return services.gitlab.project(project_id)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=services.settings.concurrency) as pool:
        results = list(pool.map(read, project_ids))
    projects = [result for result in results if isinstance(result, dict)]
    failed, vanished = {}, {}
    for project_id, result in zip(project_ids, results, strict=True):
        if result is None:
            not_found = GitLabError("404 Project Not Found", status=404)
            vanished[project_id] = _vanished_message(project_id, paths[project_id], not_found)
        elif isinstance(result, Exception):
            failed[project_id] = _read_failure(project_id, paths[project_id], result)
    return projects, failed, vanished


def _webhooks_to_verify(services: Services, plan: Plan, listing: Listing, params: RunParams) -> tuple[int, ...]:
    """The projects whose hooks this run checks (:func:`imrt_sync.planning.webhooks_to_verify`)."""
    heads = {state.project_id: state.head for state in listing.states if state.head is not None}
    changed = {pid: heads[pid] for pid in plan.to_sync if pid in heads}
    registry, settings = webhook_keeper(services).registry, services.settings
    return webhooks_to_verify(
        listing.names,
        changed,
        hooked=set(registry.recorded()),
        delivered=EventLog(services.engine).delivered(changed),
        checked_at=registry.checked_at(),
        full=params.mode == "full",
        rotation=HookRotation(settings.webhook_verify_days, settings.webhook_verify_spread, datetime.now(UTC)),
    )


def describe_listing_failure(exc: BaseException) -> str:
    """What ``list_ids`` publishes when it fails, for the exit message: the error, never a secret (our errors name
    paths and statuses, not tokens)."""
    text = str(exc) if isinstance(exc, (RunRefused, GitLabError)) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= LISTING_ERROR_LIMIT else text[: LISTING_ERROR_LIMIT - 3] + "..."


def _require_readable_group(services: Services) -> None:
    """A project's 404 proves its absence only while the group answers: check the group before trusting any."""
    try:
        services.gitlab.group(services.settings.group)
    except GroupNotReadable as exc:
        raise RunRefused(f"{exc}; deleted nothing") from None


def _withhold_unproven_deletions(services: Services, plan: Plan) -> Plan:
    """A plan with items whose project is missing keeps their deletion only when GitLab shows that the sync user sees
    every project of the group (:mod:`imrt_sync.absence`); otherwise each such item fails, naming why."""
    if not plan.gone:
        return plan
    try:
        prove_full_access(services.gitlab, services.settings.scope)
    except AccessNotProven as exc:
        log.error("not deleting the %d items whose project is missing: %s", len(plan.gone), exc)
        return plan.without_deletions(str(exc))
    return plan


def _projects_in_scope(services: Services, params: RunParams) -> list[GitLabProject]:
    """The projects of the group and, when in scope, its subgroups (a targeted run: the requested ones still in
    scope; one that answers 404 or now belongs to a namespace out of scope is left out, so its item is planned for
    deletion and re-checked then)."""
    settings, gitlab = services.settings, services.gitlab
    if params.item_ids:
        found = (gitlab.project(pid) for pid in params.item_ids)
        projects = [p for p in found if p is not None and settings.scope.contains(_namespace(p))]
    else:
        projects = list(gitlab.group_projects(settings.scope))
    return [p for p in projects if p["path"] not in settings.ignore_projects]


def _namespace(project: GitLabProject) -> str | None:
    namespace = project.get("namespace")
    return namespace.get("full_path") if namespace else None


def _project_states(
    services: Services, projects: list[GitLabProject], being_created: dict[int, BeingCreated], *, read_hooks: bool
) -> tuple[list[ProjectState], dict[int, str], dict[int, str]]:
    """Each project's head and, with ``read_hooks``, whether it has a working webhook (and, for an item still being
    created, the head of its create branch, from the same ref advertisement); a project whose reads keep failing is
    left out and named with its error; a listed project that answers 404 when read is left out and named in the
    third mapping (for the caller: an item of such a project is not deleted this run, since GitLab both listed it
    and denies it)."""
    keeper = webhook_keeper(services)
    recorded_webhooks = keeper.registry.recorded() if read_hooks else {}  # all projects' at once

    def state(project: GitLabProject) -> ProjectState:
        branch = project.get("default_branch")
        heads = remote_heads(project["http_url_to_repo"], services.git_access) if branch else {}
        created = being_created.get(project["id"])
        source_head = heads.get(created.branch) if created is not None else None
        has_webhook = (
            keeper.has_working_webhook(services.gitlab.hooks(project["id"]), recorded_webhooks.get(project["id"], {}))
            if read_hooks
            else None
        )
        head = heads.get(branch) if branch else None
        return ProjectState(project["id"], str(project["path"]), branch, head, has_webhook, source_head)

    def isolated(project: GitLabProject) -> ReadResult:
        try:
            return state(project)
        except (RepositoryNotFound, GitLabError) as exc:
            return exc if _vanished(exc) else _read_failure(project["id"], project["path"], exc)
        except Exception as exc:
            return _read_failure(project["id"], project["path"], exc)

    with ThreadPoolExecutor(max_workers=services.settings.concurrency) as pool:
        results = list(pool.map(isolated, projects))
    return _split_reads(projects, results)


def _split_reads(
    projects: list[GitLabProject], results: list[ReadResult]
) -> tuple[list[ProjectState], dict[int, str], dict[int, str]]:
    """The projects' reads split: the states, the failures by project id, the vanished projects by project id."""
    states = [result for result in results if isinstance(result, ProjectState)]
    failed = {
        project["id"]: result for project, result in zip(projects, results, strict=True) if isinstance(result, str)
    }
    vanished = {
        project["id"]: _vanished_message(project["id"], project["path"], result)
        for project, result in zip(projects, results, strict=True)
        if isinstance(result, Exception)
    }
    return states, failed, vanished


def _vanished(exc: Exception) -> bool:
    return isinstance(exc, RepositoryNotFound) or (isinstance(exc, GitLabError) and exc.status == 404)


def _vanished_message(project_id: int, path: str, exc: Exception) -> str:
    log.warning("project %s (%s) was listed, then answered 404: %s", project_id, path, exc)
    return (
        f"project {project_id} ({path}): listed by GitLab, then not found when read ({exc}): deleted "
        "or access lost meanwhile; not deleted this run, the next run decides"
    )


def _read_failure(project_id: int, path: str, exc: Exception) -> str:
    log.error("reading project %s (%s) failed: %s", project_id, path, exc)
    return f"project {project_id} ({path}): {type(exc).__name__}: {exc}"


def _log_plan(plan: Plan, params: RunParams) -> None:
    prefix = "DRY RUN: would sync" if params.dry_run else "to sync"
    log.info(
        "%s %d items (mode %s), %d unchanged, %d empty repositories, %d to delete, %d projects without the webhook, "
        "%d projects whose webhook is to be checked",
        prefix,
        len(plan.to_sync),
        params.mode,
        len(plan.unchanged),
        len(plan.empty),
        len(plan.to_delete),
        len(plan.missing_webhook),
        len(plan.verify_webhooks),
    )
    for message in plan.failed.values():
        log.error("skipped: %s", message)
    if plan.deletion_blocked:
        log.error("deletion guard: %s", plan.deletion_blocked)
