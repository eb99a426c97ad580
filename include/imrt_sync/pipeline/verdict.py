"""The verdict: :func:`summarize` judges what the run's steps reported (``COMPLETED`` or ``FAILED``, the legacy exit
message and the counts: docs/how-a-run-works.md, the ``summary`` task); :func:`failed_items` and
:func:`unsynced_items` name the items the run failed, by project id.
"""

from __future__ import annotations

from ..contracts import PlanView, RunResults, UnitOutcome, Verdict, VerdictStatus, WebhooksOutcome, WorkUnit
from ..spring_batch import cut_exit_message
from ..store import ITEM_ADOPTED


def summarize(results: RunResults) -> Verdict:
    """The run's verdict and its legacy exit message."""
    plan = results.plan
    if plan is None:
        cause = results.listing_error or "list_ids did not report why (see its task log)"
        return _verdict("FAILED", cut_exit_message(f"Listing the item bank failed: {cause}"))
    reported, silent = _reported_units(results.unit_outcomes, results.units)
    deleted = _count_events(reported, "ITEM_DELETED")
    adopted = _count_events(reported, ITEM_ADOPTED)
    message = _exit_message(plan, _webhooks_required(plan, results.hooks), deleted, adopted)
    problems = _problems(plan, reported, silent, results.hooks)
    failed_ids = [str(pid) for pid in sorted(unsynced_items(results))]
    written = sum(len(o["events"]) for o in reported.values()) - adopted
    counts = {"read": plan["total_ids"], "written": written, "deleted": deleted, "failed": len(failed_ids)}
    if not problems:
        return _verdict("COMPLETED", message, **counts)
    detail = f"{message}. Failed item bank ids: {', '.join(failed_ids) or 'none'}. Errors: " + "; ".join(problems)
    return _verdict("FAILED", cut_exit_message(detail), **counts)


def failed_items(results: RunResults) -> dict[int, str]:
    """Every item the run failed, by project id: :func:`unsynced_items`, and the projects whose hook could not be
    fixed (their pushes would not arrive)."""
    failed = unsynced_items(results)
    failed.update({int(pid): message for pid, message in _webhook_failures(results.hooks).items()})
    return failed


def unsynced_items(results: RunResults) -> dict[int, str]:
    """The items the run could not sync or delete, by project id: the projects the listing could not read, the
    units' failures, and the items of units that did not report."""
    failed = {int(pid): message for pid, message in _unreadable(results.plan).items()}
    reported, silent = _reported_units(results.unit_outcomes, results.units)
    failed.update({int(pid): message for o in reported.values() for pid, message in o["failed"].items()})
    for unit in silent:
        failed.update(dict.fromkeys(unit["sync"] + unit["delete"], f"unit {unit['label']} did not report"))
    return failed


def _verdict(
    status: VerdictStatus, message: str, *, read: int = 0, written: int = 0, deleted: int = 0, failed: int = 0
) -> Verdict:
    """A verdict with the Spring Batch step counts (read, written, skipped: the failed items) and the metrics'."""
    return {
        "status": status,
        "message": message,
        "read_count": read,
        "write_count": written,
        "skip_count": failed,
        "synced_count": written - deleted,
        "failed_count": failed,
        "deleted_count": deleted,
    }


def _webhooks_required(plan: PlanView, hooks: WebhooksOutcome | None) -> int:
    """The legacy count of "items requiring project webhook": the projects the listing found without a working hook,
    and those whose hook a check found wanting (created, fixed, or failed to be)."""
    verified = set(plan.get("verify_webhooks", ())) - set(plan["missing_webhook"])
    if not verified or hooks is None:
        return len(plan["missing_webhook"])
    wanting = {*hooks["created"], *hooks["updated"], *hooks["replaced"], *map(int, hooks["failed"])}
    return len(plan["missing_webhook"]) + len(verified & wanting)


def _exit_message(plan: PlanView, webhooks_required: int, deleted: int, adopted: int) -> str:
    """The legacy exit message's counts (and the items adopted from the legacy service, when there are any)."""
    message = (
        f"Total item bank ids: {plan['total_ids']}, "
        f"number of items requiring project webhook: {webhooks_required}, "
        f"number of items deleted from IMRT: {deleted}"
    )
    if adopted:
        message += f", number of items adopted unchanged from the legacy service: {adopted}"
    return message


def _problems(
    plan: PlanView, reported: dict[str, UnitOutcome], silent: list[WorkUnit], hooks: WebhooksOutcome | None
) -> list[str]:
    """What failed, in the exit message's order: unreadable projects, items, silent units, hooks, the deletion
    guard."""
    problems = list(_unreadable(plan).values())
    problems += [error for o in reported.values() for error in o["failed"].values()]
    problems += [f"unit {u['label']}: did not report (see its task log)" for u in silent]
    if hooks is None:
        problems.append("dispatch_webhooks did not report (see its task log)")
    else:
        problems += list(hooks["failed"].values())
    if plan["deletion_blocked"]:
        problems.append(f"deletion guard: {plan['deletion_blocked']}")
    return problems


def _unreadable(plan: PlanView | None) -> dict[str, str]:
    """The projects the listing could not read, by project id (a JSON key: a string)."""
    return (plan.get("failed") if plan else None) or {}


def _webhook_failures(hooks: WebhooksOutcome | None) -> dict[str, str]:
    """The projects whose hook could not be fixed, by project id (a JSON key: a string)."""
    return (hooks.get("failed") if hooks else None) or {}


def _count_events(reported: dict[str, UnitOutcome], kind: str) -> int:
    return sum(1 for o in reported.values() for event_kind in o["events"].values() if event_kind == kind)


def _reported_units(
    unit_outcomes: list[UnitOutcome | None], units: list[WorkUnit]
) -> tuple[dict[str, UnitOutcome], list[WorkUnit]]:
    """The outcomes the ``sync`` instances published, by unit label, and the units that published none."""
    reported = {o["label"]: o for o in unit_outcomes if o}
    return reported, [unit for unit in units if unit["label"] not in reported]
