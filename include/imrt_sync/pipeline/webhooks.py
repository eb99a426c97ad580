"""Project webhook repair: :func:`dispatch_webhooks` gives every project the plan found without a working project
webhook one, and checks those the plan asks to verify (docs/how-a-run-works.md, the ``dispatch_webhooks`` task;
when a webhook counts and how it is fixed: :mod:`imrt_sync.project_webhooks`).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from ..config import RunParams
from ..contracts import PlanView, WebhooksOutcome, no_webhooks
from ..errors import is_transient
from ..project_webhooks import CREATE, NONE, REPLACE, UPDATE, WebhookAction, WebhookKeeper, WebhookRegistry
from .services import Services

log = logging.getLogger(__name__)


def webhook_keeper(services: Services) -> WebhookKeeper:
    """The project hooks' keeper, with the hook URL and secret of the settings (the listing asks it too whether a
    project has a working webhook)."""
    settings = services.settings
    return WebhookKeeper(
        services.gitlab, WebhookRegistry(services.engine), settings.webhook_url, settings.webhook_secret
    )


def dispatch_webhooks(services: Services, plan: PlanView, params: RunParams) -> WebhooksOutcome:
    """Give every project the plan found without a working hook one, and check the hooks of the projects the plan
    asks to verify, fixing those that do not work (created, edited or replaced: see
    ``imrt_sync.project_webhooks``); report what was done, what failed, and how many hooks IMRT recorded still carry
    another secret than ``imrt_webhook_secret`` (during a rotation: the previous one)."""
    project_ids = sorted({*plan["missing_webhook"], *plan.get("verify_webhooks", ())})
    outcome = no_webhooks(len(project_ids))
    if params.dry_run:
        log.info(
            "DRY RUN: would check, and create or fix, the webhook of %d projects: %s", len(project_ids), project_ids
        )
        return outcome
    keeper = webhook_keeper(services)

    def repair(project_id: int) -> WebhookAction:
        with services.store.item_lock(project_id):  # a run of the other DAG may be fixing the same project's hook
            return keeper.repair(project_id)

    with ThreadPoolExecutor(max_workers=services.settings.concurrency) as pool:
        futures = {pid: pool.submit(repair, pid) for pid in project_ids}
    _record_repairs(outcome, futures)
    outcome["on_other_secret"] = keeper.registry.count_not_on(keeper.fingerprint)
    _log_outcome(outcome, len(project_ids))
    return outcome


def _record_repairs(outcome: WebhooksOutcome, futures: dict[int, Future[WebhookAction]]) -> None:
    """Put each project's repair in ``outcome``: created, updated, replaced (nothing when its hook was fine), or
    failed with the error."""
    done = {CREATE: outcome["created"], UPDATE: outcome["updated"], REPLACE: outcome["replaced"]}
    for project_id, future in futures.items():
        try:
            action = future.result()
        except Exception as exc:
            log.error("fixing the webhook of project %s failed: %s", project_id, exc)
            outcome["failed"][str(project_id)] = f"webhook of project {project_id}: {exc}"
            outcome["transient"] |= is_transient(exc)
            continue
        if action != NONE:
            done[action].append(project_id)
            log.info("ITEM EVENT type: ITEM_MONITORED projectId: %s", project_id)


def _log_outcome(outcome: WebhooksOutcome, projects: int) -> None:
    log.info(
        "webhooks of %d projects: %d created, %d updated, %d replaced (were disabled), %d failed",
        projects,
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
