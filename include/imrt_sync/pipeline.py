"""The run protocol: the steps of a synchronization run, as plain functions over the values of
:mod:`imrt_sync.contracts`.

    planned = open_run(run, engine, read_settings)            # start (claim events / Spring Batch), list, plan
    outcome = sync_unit(services, unit, params)               # once per work unit, in parallel
    hooks = dispatch_webhooks(services, planned["plan"], params)
    verdict = close_run(services, run, RunResults(...))       # summarise, record the end (mirror / events)

The workflow's tasks call one function each; the benchmark's direct mode calls the same functions in one process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace

import sqlalchemy as sa

from .absence import AbsenceNotProven, AbsenceWitness, AccessNotProven, prove_full_access
from .config import GitLabSettings, RunParams, SyncSettings
from .contracts import (
    HooksOutcome,
    Planned,
    PlanView,
    RunContext,
    RunResults,
    UnitOutcome,
    Verdict,
    WorkUnit,
    no_hooks,
)
from .errors import ItemValidationError, PermanentError, is_transient
from .gitlab import GitLabClient, GitLabError, GroupNotReadable
from .gitrepo import (
    ITEM_FILE,
    Commit,
    GitAccess,
    ItemRepository,
    RepositoryNotFound,
    first_create_branch,
    remote_heads,
)
from .hook_events import EventLog
from .mapping import MappedItem, map_item, parse_item_json
from .migrate import require_current_schema
from .planning import Plan, ProjectState, plan_run, work_units
from .projecthooks import CREATE, NONE, REPLACE, UPDATE, HookKeeper, HookRegistry
from .spring_batch import SpringBatchMirror, cut_exit_message
from .store import ITEM_ADOPTED, BeingCreated, ItemStore, Revision

log = logging.getLogger(__name__)

LISTING_ERROR_LIMIT = 1000
LEGACY_START = "Item Synchronization Process starting.  Job execution id: %s"
LEGACY_COMPLETE = "Item Synchronization Process complete.  Job execution id: %s, exit status code: %s, exit message: %s"


class RunRefused(RuntimeError, PermanentError):
    """The run cannot go on safely and trying again will not help (e.g. the group is not readable)."""


@dataclass
class Services:
    settings: SyncSettings
    gitlab: GitLabClient
    engine: sa.Engine
    git_access: GitAccess

    @property
    def store(self) -> ItemStore:
        return ItemStore(self.engine, lock_wait_seconds=self.settings.lock_wait_seconds)

    @classmethod
    @contextmanager
    def open(cls, settings: SyncSettings, gitlab_settings: GitLabSettings, engine: sa.Engine) -> Iterator[Services]:
        """The services of one step: a GitLab client (closed at the end) and git access with the same token and
        transport, over the caller's engine (the caller disposes of it)."""
        with GitLabClient(gitlab_settings) as gitlab:
            yield cls(settings, gitlab, engine, GitAccess.for_gitlab(gitlab_settings, settings.git_timeout))


SettingsReader = Callable[[], tuple[SyncSettings, GitLabSettings]]


def open_run(run: RunContext, engine: sa.Engine, read_settings: SettingsReader) -> Planned:
    """Start the run and plan it.

    The schema is checked first. A run of the hook events then takes its due events (from here on, whatever fails
    costs them an attempt, so a broken setting backs off instead of starting run after run); any other run is
    recorded ``STARTED`` in the Spring Batch mirror. Only then are the settings read (``read_settings``) and the item
    bank listed and compared with IMRT.
    """
    require_current_schema(engine)
    params, job_execution_id = run.params, None
    if params.webhook_events:
        params = claim_events(engine, run.run_id, params)
    else:
        job_execution_id = SpringBatchMirror(engine).mark_started(run.run_id, run.started_at).job_execution_id
        log.info(LEGACY_START, job_execution_id)
    with Services.open(*read_settings(), engine) as services:
        plan, units = list_ids(services, params)
    return {"plan": plan, "units": units, "job_execution_id": job_execution_id}


def close_run(services: Services, run: RunContext, results: RunResults) -> Verdict:
    """Judge the run and record its end: a run of the hook events closes its events (a failed item costs its event
    an attempt); any other run writes its exit message and counts to its Spring Batch execution (the status and
    ``end_time`` follow when the run itself ends)."""
    verdict = summarize(results)
    if run.params.webhook_events:
        close_events(services, run.run_id, results)
        log.info("hook events run ended %s: %s", verdict["status"], verdict["message"])
        return verdict
    mirror = SpringBatchMirror(services.engine)
    if mirror.execution_for_run(run.run_id) is None:  # the run failed before open_run recorded its start
        mirror.mark_started(run.run_id, run.started_at)
    execution = mirror.record_outcome(
        run.run_id,
        verdict["message"],
        read_count=verdict["read_count"],
        write_count=verdict["write_count"],
        skip_count=verdict["skip_count"],
    )
    log.info(LEGACY_COMPLETE, execution.job_execution_id, verdict["status"], verdict["message"])
    return verdict


def claim_events(engine: sa.Engine, run_id: str, params: RunParams) -> RunParams:
    """A run started by the hook receiver takes the due pending events: its items are the events' projects.

    Call it first in the run: from then on, whatever fails costs the events an attempt (and a back-off)."""
    claimed = EventLog(engine).claim(run_id)
    project_ids = tuple(sorted({event.project_id for event in claimed}))
    log.info("took %d GitLab hook events for %d items: %s", len(claimed), len(project_ids), list(project_ids))
    return replace(params, item_ids=project_ids)


def close_events(services: Services, run_id: str, results: RunResults) -> None:
    """Record how the run's events ended. A failed item, or a run that could not plan, costs its events an attempt:
    they wait for a later run with a growing delay, or end ``failed`` after the last allowed attempt
    (``results.listing_error``: why the run could not plan, kept as the events' error)."""
    events = EventLog(services.engine)
    policy = services.settings.event_retry
    if results.plan is None:
        cause = results.listing_error or "see its list_ids task log"
        ended = events.release([run_id], f"run {run_id} could not plan: {cause}", policy)
        log.warning(
            "listing failed: %d hook events will be retried later, %d failed after %d attempts",
            ended.retrying,
            ended.failed,
            policy.max_attempts,
        )
        return
    failed = failed_items(results)
    ended = events.close(run_id, failed, policy)
    log.info(
        "hook events: %d synced, %d to retry later, %d failed after %d attempts (%d items failed)",
        ended.synced,
        ended.retrying,
        ended.failed,
        policy.max_attempts,
        len(failed),
    )


def failed_items(results: RunResults) -> dict[int, str]:
    """Every item the run failed, by project id: :func:`unsynced_items`, and the projects whose hook could not be
    fixed (their pushes would not arrive)."""
    failed = unsynced_items(results)
    failed.update({int(pid): message for pid, message in ((results.hooks or {}).get("failed") or {}).items()})
    return failed


def unsynced_items(results: RunResults) -> dict[int, str]:
    """The items the run could not sync or delete, by project id: the projects the listing could not read, the
    units' failures, and the items of units that did not report."""
    unreadable = ((results.plan or {}).get("failed") or {}).items()
    failed = {int(pid): message for pid, message in unreadable}
    reported, silent = _reported_units(results.unit_outcomes, results.units)
    failed.update({int(pid): message for o in reported.values() for pid, message in o["failed"].items()})
    for unit in silent:
        failed.update(dict.fromkeys(unit["sync"] + unit["delete"], f"unit {unit['label']} did not report"))
    return failed


def list_ids(services: Services, params: RunParams) -> tuple[PlanView, list[WorkUnit]]:
    """List the group's projects, compare them with IMRT and plan the run: the plan and its work units."""
    settings = services.settings
    if params.webhook_events and not params.item_ids:
        log.info("no pending GitLab hook events: nothing to do")
        return Plan(0, (), (), (), (), ()).as_dict(), []
    log.info("getting item bank ids from source control")
    started = time.monotonic()
    _require_readable_group(services)
    projects = _projects_in_scope(services, params)
    log.info("retrieved %d item bank ids from source control in %d seconds", len(projects), time.monotonic() - started)
    being_created = services.store.items_being_created(params.item_ids or None)
    states, unreadable, vanished = _project_states(services, projects, being_created)
    recorded = _recorded_heads(services, params)
    unreadable.update({pid: message for pid, message in vanished.items() if pid in recorded})
    plan = plan_run(
        states,
        recorded,
        full=params.mode == "full",
        guard=settings.deletion_guard,
        listing_complete=True,  # every page to the end, X-Total checked when sent; deletions are re-checked
        items_total=services.store.recorded_count(),
        only_ids=params.item_ids,
        unreadable=unreadable,
        recorded_source_heads={pid: created.source_head for pid, created in being_created.items()},
    )
    plan = _withhold_unproven_deletions(services, plan)
    _log_plan(plan, params)
    names = {p["id"]: str(p["path"]) for p in projects}
    if plan.to_delete:
        names.update(services.store.item_ids(plan.to_delete))
    units = work_units(list(plan.to_sync), list(plan.to_delete), settings.map_bound, names, settings.batch_size)
    return plan.as_dict(), units


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


def _projects_in_scope(services: Services, params: RunParams) -> list[dict]:
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


def _namespace(project: dict) -> str | None:
    return (project.get("namespace") or {}).get("full_path")


def _project_states(
    services: Services, projects: list[dict], being_created: dict[int, BeingCreated]
) -> tuple[list[ProjectState], dict[int, str], dict[int, str]]:
    """Each project's head and webhook (and, for an item still being created, the head of its create branch, from
    the same ref advertisement); a project whose reads keep failing is left out and named with its error; a listed
    project that answers 404 when read is left out and named in the third mapping (for the caller: an item of such a
    project is not deleted this run, since GitLab both listed it and denies it)."""
    hooks = _hook_keeper(services)
    recorded_hooks = hooks.registry.recorded()  # one row per hooked project: all of them at once

    def state(project: dict) -> ProjectState:
        branch = project.get("default_branch")
        heads = remote_heads(project["http_url_to_repo"], services.git_access) if branch else {}
        created = being_created.get(project["id"])
        source_head = heads.get(created.branch) if created is not None else None
        has_webhook = hooks.is_hooked(services.gitlab.hooks(project["id"]), recorded_hooks.get(project["id"], {}))
        return ProjectState(project["id"], str(project["path"]), branch, heads.get(branch), has_webhook, source_head)

    def isolated(project: dict) -> ProjectState | str | Exception:
        try:
            return state(project)
        except (RepositoryNotFound, GitLabError) as exc:
            return exc if _vanished(exc) else _read_failure(project, exc)
        except Exception as exc:
            return _read_failure(project, exc)

    with ThreadPoolExecutor(max_workers=services.settings.concurrency) as pool:
        results = list(pool.map(isolated, projects))
    states = [result for result in results if isinstance(result, ProjectState)]
    failed = {
        project["id"]: result for project, result in zip(projects, results, strict=True) if isinstance(result, str)
    }
    vanished = {
        project["id"]: _vanished_message(project, result)
        for project, result in zip(projects, results, strict=True)
        if isinstance(result, Exception)
    }
    return states, failed, vanished


def _vanished(exc: Exception) -> bool:
    return isinstance(exc, RepositoryNotFound) or (isinstance(exc, GitLabError) and exc.status == 404)


def _vanished_message(project: dict, exc: Exception) -> str:
    log.warning("project %s (%s) was listed, then answered 404: %s", project["id"], project["path"], exc)
    return (
        f"project {project['id']} ({project['path']}): listed by GitLab, then not found when read ({exc}): deleted "
        "or access lost meanwhile; not deleted this run, the next run decides"
    )


def _read_failure(project: dict, exc: Exception) -> str:
    log.error("reading project %s (%s) failed: %s", project["id"], project["path"], exc)
    return f"project {project['id']} ({project['path']}): {type(exc).__name__}: {exc}"


def _recorded_heads(services: Services, params: RunParams) -> dict[int, str | None]:
    return services.store.recorded_heads(params.item_ids or None)


def _log_plan(plan: Plan, params: RunParams) -> None:
    prefix = "DRY RUN: would sync" if params.dry_run else "to sync"
    log.info(
        "%s %d items (mode %s), %d unchanged, %d empty repositories, %d to delete, %d projects without the webhook",
        prefix,
        len(plan.to_sync),
        params.mode,
        len(plan.unchanged),
        len(plan.empty),
        len(plan.to_delete),
        len(plan.missing_webhook),
    )
    for message in plan.failed.values():
        log.error("skipped: %s", message)
    if plan.deletion_blocked:
        log.error("deletion guard: %s", plan.deletion_blocked)


def sync_unit(services: Services, unit: WorkUnit, params: RunParams) -> UnitOutcome:
    """Sync and delete the unit's items, each on its own; report per item. Never raises for one item's failure;
    ``transient``: some failure may pass on a retry (:func:`~imrt_sync.errors.is_transient`)."""
    outcome: UnitOutcome = {"label": unit["label"], "events": {}, "failed": {}, "transient": False}
    absence = AbsenceWitness(services.gitlab, services.settings.scope, relist=bool(params.item_ids))
    for action, project_id in [("sync", p) for p in unit["sync"]] + [("delete", p) for p in unit["delete"]]:
        if params.dry_run:
            log.info("DRY RUN: would %s project %s", action, project_id)
            continue
        try:
            if action == "sync":
                event = _sync_item(services, project_id, params)
            else:
                event = _delete_item(services, absence, project_id)
        except Exception as exc:
            outcome["failed"][str(project_id)] = _item_failure(project_id, exc)
            outcome["transient"] |= is_transient(exc)
        else:
            if event is None:
                log.info("project %s is already up to date", project_id)
                continue
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


def _sync_item(services: Services, project_id: int, params: RunParams):
    settings = services.settings
    project = services.gitlab.project(project_id)
    if project is None:
        log.warning("project %s is gone since the listing: left for the next run to delete", project_id)
        return None
    full = params.mode == "full"
    recorded = services.store.recorded_commit(project_id)
    created = services.store.items_being_created([project_id]).get(project_id)
    with ItemRepository(settings.git_cache_dir, project_id, project["http_url_to_repo"], services.git_access) as repo:
        head = repo.fetch(project["default_branch"])
        branch, source_head = _item_source(services, repo, project, head, recorded is not None, created)
        published = created is not None and source_head is None
        if published:
            log.info(
                "project %s: %s is on branch %r now: the item is no longer being created (was on %r)",
                project_id,
                ITEM_FILE,
                branch,
                created.branch,
            )
        since = None if full or published else recorded
        tip = source_head or head
        history = repo.item_history(tip.sha, ITEM_FILE, since)
        item, statuses = None, ()
        if history.commits or since is None:
            raw = _read_item_file(repo, project_id, tip.sha, branch, settings.max_item_json_bytes)
            item = map_item(parse_item_json(raw, project_id, max_bytes=settings.max_item_json_bytes), project_id)
            statuses = _workflow_statuses(repo, project_id, history.commits, item, settings.max_item_json_bytes)
    revision = Revision(
        project_id, settings.group, branch, head, history.commits, item, statuses, history.incremental, source_head
    )
    # A published item is rewritten from the default branch's whole history, even when its last item.json commit
    # is the one already recorded from the create branch (a fast-forward merge).
    return services.store.save(revision, full=full or published)


def _item_source(
    services: Services,
    repo: ItemRepository,
    project: dict,
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
    default, project_id = project["default_branch"], project["id"]
    if (recorded and created is None) or repo.has_file(head.sha, ITEM_FILE):
        return default, None
    branches = remote_heads(project["http_url_to_repo"], services.git_access)
    branch = created.branch if created is not None and created.branch in branches else first_create_branch(branches)
    if branch is None:
        raise ItemValidationError(project_id, f"Unable to find create_<user> branch for itemBankId {project_id}")
    return branch, repo.fetch(branch)


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


def _delete_item(services: Services, absence: AbsenceWitness, project_id: int):
    """Delete the item only if its project is confirmed gone right now (GitLab re-asked just before the delete)."""
    reason = absence.why_gone(project_id)
    if reason is None:
        log.warning("project %s is in the %s again: its item is kept", project_id, services.settings.scope.describe())
        return None
    log.info("project %s: %s; deleting its item", project_id, reason)
    return services.store.delete(project_id)


def _read_item_file(repo: ItemRepository, project_id: int, sha: str, branch: str, max_bytes: int) -> bytes:
    try:
        raw = repo.read(sha, ITEM_FILE, max_bytes)
    except ValueError as exc:
        raise ItemValidationError(project_id, str(exc)) from None
    if raw is None:
        raise ItemValidationError(project_id, f"{ITEM_FILE} is missing at the head of branch {branch!r}")
    return raw


def _hook_keeper(services: Services) -> HookKeeper:
    settings = services.settings
    return HookKeeper(services.gitlab, HookRegistry(services.engine), settings.webhook_url, settings.webhook_secret)


def dispatch_webhooks(services: Services, plan: PlanView, params: RunParams) -> HooksOutcome:
    """Give every project the plan found without a working hook one (created, edited or replaced: see
    ``imrt_sync.projecthooks``); report what was done, what failed, and how many hooks IMRT recorded still carry
    another secret than ``imrt_webhook_secret`` (during a rotation: the previous one)."""
    project_ids = plan["missing_webhook"]
    outcome = no_hooks(len(project_ids))
    if params.dry_run:
        log.info("DRY RUN: would create or fix the webhook on %d projects: %s", len(project_ids), project_ids)
        return outcome
    keeper = _hook_keeper(services)
    with ThreadPoolExecutor(max_workers=services.settings.concurrency) as pool:
        futures = {pid: pool.submit(keeper.repair, pid) for pid in project_ids}
    done = {CREATE: "created", UPDATE: "updated", REPLACE: "replaced"}
    for project_id, future in futures.items():
        try:
            action = future.result()
        except Exception as exc:
            log.error("fixing the webhook of project %s failed: %s", project_id, exc)
            outcome["failed"][str(project_id)] = f"webhook of project {project_id}: {exc}"
            outcome["transient"] |= is_transient(exc)
            continue
        if action != NONE:
            outcome[done[action]].append(project_id)
            log.info("ITEM EVENT type: ITEM_MONITORED projectId: %s", project_id)
    outcome["on_other_secret"] = keeper.registry.count_not_on(keeper.fingerprint)
    log.info(
        "webhooks of %d projects: %d created, %d updated, %d replaced (were disabled), %d failed",
        len(project_ids),
        len(outcome["created"]),
        len(outcome["updated"]),
        len(outcome["replaced"]),
        len(outcome["failed"]),
    )
    log.info(
        "%d project hooks recorded in imrt_project_hook carry another secret than imrt_webhook_secret%s",
        outcome["on_other_secret"],
        "" if outcome["on_other_secret"] else ": imrt_webhook_previous_secret, if set, can be cleared",
    )
    return outcome


def describe_listing_failure(exc: BaseException) -> str:
    """What ``list_ids`` publishes when it fails, for the exit message: the error, never a secret (our errors name
    paths and statuses, not tokens)."""
    text = str(exc) if isinstance(exc, (RunRefused, GitLabError)) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= LISTING_ERROR_LIMIT else text[: LISTING_ERROR_LIMIT - 3] + "..."


def summarize(results: RunResults) -> Verdict:
    """The run's verdict and its legacy exit message."""
    plan = results.plan
    if plan is None:
        cause = results.listing_error or "list_ids did not report why (see its task log)"
        return {
            "status": "FAILED",
            "message": cut_exit_message(f"Listing the item bank failed: {cause}"),
            "read_count": 0,
            "write_count": 0,
            "skip_count": 0,
            "synced_count": 0,
            "failed_count": 0,
            "deleted_count": 0,
        }
    reported, silent = _reported_units(results.unit_outcomes, results.units)
    deleted = _count_events(reported, "ITEM_DELETED")
    adopted = _count_events(reported, ITEM_ADOPTED)
    message = (
        f"Total item bank ids: {plan['total_ids']}, "
        f"number of items requiring project webhook: {len(plan['missing_webhook'])}, "
        f"number of items deleted from IMRT: {deleted}"
    )
    if adopted:
        message += f", number of items adopted unchanged from the legacy service: {adopted}"
    unreadable = plan.get("failed") or {}
    problems = list(unreadable.values())
    problems += [error for o in reported.values() for error in o["failed"].values()]
    problems += [f"unit {u['label']}: did not report (see its task log)" for u in silent]
    if results.hooks is None:
        problems.append("dispatch_webhooks did not report (see its task log)")
    else:
        problems += list(results.hooks["failed"].values())
    if plan["deletion_blocked"]:
        problems.append(f"deletion guard: {plan['deletion_blocked']}")
    failed_ids = [str(pid) for pid in sorted(unsynced_items(results))]
    written = sum(len(o["events"]) for o in reported.values()) - adopted
    counts = {
        "read_count": plan["total_ids"],
        "write_count": written,
        "skip_count": len(failed_ids),
        "synced_count": written - deleted,
        "failed_count": len(failed_ids),
        "deleted_count": deleted,
    }
    if not problems:
        return {"status": "COMPLETED", "message": message, **counts}
    detail = f"{message}. Failed item bank ids: {', '.join(failed_ids) or 'none'}. Errors: " + "; ".join(problems)
    return {"status": "FAILED", "message": cut_exit_message(detail), **counts}


def _count_events(reported: dict[str, UnitOutcome], kind: str) -> int:
    return sum(1 for o in reported.values() for event_kind in o["events"].values() if event_kind == kind)


def _reported_units(
    unit_outcomes: list[UnitOutcome | None], units: list[WorkUnit]
) -> tuple[dict[str, UnitOutcome], list[WorkUnit]]:
    """The outcomes the ``sync`` instances published, by unit label, and the units that published none."""
    reported = {o["label"]: o for o in unit_outcomes if o}
    return reported, [unit for unit in units if unit["label"] not in reported]


def webhook_backlog(engine: sa.Engine) -> tuple[int, float]:
    """Hook events waiting for a run (``pending``) and the age in seconds of the oldest (0.0 when none)."""
    from .schema import imrt_webhook_event as t

    query = sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.extract("epoch", sa.func.now() - sa.func.min(t.c.received_at)), 0),
    ).where(t.c.status == "pending")
    with engine.connect() as conn:
        pending, oldest = conn.execute(query).one()
    return int(pending), float(oldest)
