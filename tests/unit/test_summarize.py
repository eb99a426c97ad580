"""The run's verdict (pipeline.summarize) and the items it failed (pipeline.failed_items), over hand-built results:
what only a slow run covered before. No database, no GitLab."""

from __future__ import annotations

from imrt_sync import pipeline
from imrt_sync.contracts import PlanView, RunResults, UnitOutcome, WebhooksOutcome, WorkUnit, no_webhooks
from imrt_sync.planning import Plan
from imrt_sync.schema import EXIT_MESSAGE_LIMIT
from imrt_sync.spring_batch import cut_exit_message

NO_COUNTS = {
    "read_count": 0,
    "write_count": 0,
    "skip_count": 0,
    "synced_count": 0,
    "failed_count": 0,
    "deleted_count": 0,
}


def plan(
    total: int,
    *,
    to_sync=(),
    to_delete=(),
    missing_webhook=(),
    blocked: str = "",
    unreadable: dict[int, str] | None = None,
) -> PlanView:
    return Plan(
        total,
        tuple(to_sync),
        (),
        (),
        tuple(to_delete),
        tuple(missing_webhook),
        blocked,
        tuple(to_delete),
        dict(unreadable or {}),
    ).as_dict()


def unit(label: str, sync=(), delete=()) -> WorkUnit:
    return {"label": label, "sync": list(sync), "delete": list(delete)}


def outcome(
    label: str, events: dict[str, str] | None = None, failed: dict[str, str] | None = None, transient: bool = False
) -> UnitOutcome:
    return {"label": label, "events": dict(events or {}), "failed": dict(failed or {}), "transient": transient}


def hooks_failed(failed: dict[str, str]) -> WebhooksOutcome:
    return {**no_webhooks(len(failed)), "failed": failed}


def head(total: int, missing_webhook: int, deleted: int) -> str:
    return (
        f"Total item bank ids: {total}, number of items requiring project webhook: {missing_webhook}, "
        f"number of items deleted from IMRT: {deleted}"
    )


def test_a_run_without_problems_completes_with_the_legacy_message_and_its_counts():
    units = [unit("item-2", sync=[2]), unit("item-3", sync=[3]), unit("item-9", delete=[9])]
    outcomes = [
        outcome("item-2", {"2": "ITEM_UPDATED"}),
        outcome("item-3", {"3": "ITEM_CREATED"}),
        outcome("item-9", {"9": "ITEM_DELETED"}),
    ]
    hooks = {**no_webhooks(2), "created": [3, 4]}
    results = RunResults(plan(5, to_sync=[2, 3], to_delete=[9], missing_webhook=[3, 4]), units, outcomes, hooks)

    assert pipeline.summarize(results) == {
        "status": "COMPLETED",
        "message": head(5, 2, 1),
        "read_count": 5,
        "write_count": 3,
        "skip_count": 0,
        "synced_count": 2,
        "failed_count": 0,
        "deleted_count": 1,
    }
    assert pipeline.failed_items(results) == {}


def test_an_item_already_up_to_date_is_read_but_not_written():
    results = RunResults(plan(3, to_sync=[1]), [unit("item-1", sync=[1])], [outcome("item-1")], no_webhooks())
    verdict = pipeline.summarize(results)
    assert (verdict["status"], verdict["message"]) == ("COMPLETED", head(3, 0, 0))
    assert (verdict["read_count"], verdict["write_count"], verdict["synced_count"]) == (3, 0, 0)


def test_unit_failures_are_listed_with_the_ids_in_numeric_order_and_counted_as_skipped():
    units = [unit("item-10", sync=[10]), unit("item-2..item-4 (2 items)", sync=[2, 4])]
    outcomes = [
        outcome("item-10", failed={"10": "project 10: GitLabError: boom"}, transient=True),
        outcome("item-2..item-4 (2 items)", {"4": "ITEM_UPDATED"}, {"2": "project 2: Expecting value"}),
    ]
    results = RunResults(plan(12, to_sync=[2, 4, 10]), units, outcomes, no_webhooks())

    assert pipeline.summarize(results) == {
        "status": "FAILED",
        "message": f"{head(12, 0, 0)}. Failed item bank ids: 2, 10. Errors: project 10: GitLabError: boom; "
        "project 2: Expecting value",
        "read_count": 12,
        "write_count": 1,
        "skip_count": 2,
        "synced_count": 1,
        "failed_count": 2,
        "deleted_count": 0,
    }
    assert pipeline.failed_items(results) == {10: "project 10: GitLabError: boom", 2: "project 2: Expecting value"}


def test_a_unit_that_did_not_report_is_named_and_its_items_count_as_failed():
    units = [unit("item-5..item-6 (2 items)", sync=[5], delete=[6]), unit("item-7", sync=[7])]
    outcomes = [None, outcome("item-7", {"7": "ITEM_UPDATED"})]
    results = RunResults(plan(7, to_sync=[5, 7], to_delete=[6]), units, outcomes, no_webhooks())

    verdict = pipeline.summarize(results)
    assert verdict["status"] == "FAILED"
    assert verdict["message"] == (
        f"{head(7, 0, 0)}. Failed item bank ids: 5, 6. "
        "Errors: unit item-5..item-6 (2 items): did not report (see its task log)"
    )
    assert (verdict["skip_count"], verdict["failed_count"], verdict["synced_count"]) == (2, 2, 1)
    assert pipeline.failed_items(results) == {
        5: "unit item-5..item-6 (2 items) did not report",
        6: "unit item-5..item-6 (2 items) did not report",
    }


def test_hooks_that_did_not_report_fail_the_run_without_failing_an_item():
    results = RunResults(plan(2, missing_webhook=[1]), [], [], None)
    verdict = pipeline.summarize(results)
    assert verdict == {
        **NO_COUNTS,
        "status": "FAILED",
        "read_count": 2,
        "message": f"{head(2, 1, 0)}. Failed item bank ids: none. "
        "Errors: dispatch_webhooks did not report (see its task log)",
    }
    assert pipeline.failed_items(results) == {}


def test_hook_failures_fail_the_run_and_their_projects_count_as_failed_items():
    forbidden = "webhook of project 8: GitLab POST /api/v4/projects/8/hooks answered 403"
    hooks = hooks_failed({"8": forbidden, "3": "webhook of project 3: GitLab answered 500"})
    results = RunResults(plan(9, missing_webhook=[3, 8]), [], [], hooks)
    verdict = pipeline.summarize(results)
    assert verdict["status"] == "FAILED"
    assert verdict["message"] == (
        f"{head(9, 2, 0)}. Failed item bank ids: none. Errors: webhook of project 8: GitLab POST "
        "/api/v4/projects/8/hooks answered 403; webhook of project 3: GitLab answered 500"
    )
    assert pipeline.failed_items(results) == {8: forbidden, 3: "webhook of project 3: GitLab answered 500"}


def test_unreadable_projects_of_the_plan_are_failed_ids_with_their_errors():
    unreadable = {
        30: "project 30 (item-30): GitFetchError: git ls-remote answered 503",
        4: "project 4 (item-4): GitLabError: GitLab GET /api/v4/projects/4/hooks answered 500",
    }
    results = RunResults(plan(40, unreadable=unreadable), [], [], no_webhooks())
    verdict = pipeline.summarize(results)
    assert verdict["status"] == "FAILED"
    assert verdict["message"] == (
        f"{head(40, 0, 0)}. Failed item bank ids: 4, 30. Errors: "
        "project 4 (item-4): GitLabError: GitLab GET /api/v4/projects/4/hooks answered 500; "
        "project 30 (item-30): GitFetchError: git ls-remote answered 503"
    )
    assert (verdict["skip_count"], verdict["failed_count"]) == (2, 2)


def test_a_blocked_deletion_fails_the_run_with_the_guards_text():
    blocked = "6 of 8 items would be deleted, more than the deletion guard allows"
    verdict = pipeline.summarize(RunResults(plan(2, blocked=blocked), [], [], no_webhooks()))
    assert verdict["status"] == "FAILED"
    assert verdict["message"] == f"{head(2, 0, 0)}. Failed item bank ids: none. Errors: deletion guard: {blocked}"


def test_a_run_that_could_not_plan_fails_with_its_listing_error_or_says_none_was_given():
    refused = pipeline.RunRefused("GitLab group iat is not readable; deleted nothing")
    with_error = pipeline.summarize(RunResults(None, listing_error=pipeline.describe_listing_failure(refused)))
    assert with_error == {
        **NO_COUNTS,
        "status": "FAILED",
        "message": "Listing the item bank failed: GitLab group iat is not readable; deleted nothing",
    }
    without = pipeline.summarize(RunResults(None))
    assert without == {
        **NO_COUNTS,
        "status": "FAILED",
        "message": "Listing the item bank failed: list_ids did not report why (see its task log)",
    }


def test_a_listing_failure_is_described_with_its_type_unless_it_is_ours_and_cut_at_1000_characters():
    assert pipeline.describe_listing_failure(KeyError("total_ids")) == "KeyError: 'total_ids'"
    long = pipeline.describe_listing_failure(ValueError("x" * 2000))
    assert len(long) == pipeline.LISTING_ERROR_LIMIT and long == "ValueError: " + "x" * 985 + "..."


def test_a_long_message_is_cut_to_the_column_with_an_ellipsis():
    failures = {str(pid): f"project {pid}: " + "e" * 200 for pid in range(1, 31)}
    results = RunResults(
        plan(30), [unit("all", sync=list(range(1, 31)))], [outcome("all", failed=failures)], no_webhooks()
    )
    message = pipeline.summarize(results)["message"]
    assert len(message) == EXIT_MESSAGE_LIMIT
    assert message.startswith(f"{head(30, 0, 0)}. Failed item bank ids: 1, 2, 3, ")
    assert message.endswith("e...")


def test_a_message_of_exactly_the_limit_is_kept_whole():
    exact = "m" * EXIT_MESSAGE_LIMIT
    assert cut_exit_message(exact) == exact
    assert cut_exit_message(exact + "n") == "m" * (EXIT_MESSAGE_LIMIT - 3) + "..."


def test_nul_characters_are_removed_from_the_message():
    results = RunResults(
        plan(1), [unit("item-1", sync=[1])], [outcome("item-1", failed={"1": "project 1: bad\x00byte"})], no_webhooks()
    )
    message = pipeline.summarize(results)["message"]
    assert message == f"{head(1, 0, 0)}. Failed item bank ids: 1. Errors: project 1: badbyte"
    assert cut_exit_message(None) == ""
    assert cut_exit_message("\x00" * (EXIT_MESSAGE_LIMIT + 5) + "ok") == "ok"  # cut after the NULs are gone


def test_hooks_a_sweep_run_checked_count_as_requiring_a_webhook_only_when_created_or_fixed():
    swept = {**plan(6), "verify_webhooks": [1, 2, 3, 4]}
    hooks = {**no_webhooks(4), "created": [2], "replaced": [3]}  # 1 and 4 were fine
    verdict = pipeline.summarize(RunResults(swept, [], [], hooks))
    assert verdict["status"] == "COMPLETED" and verdict["message"] == head(6, 2, 0)
