"""The benchmark's pure parts: targets, margins, formatting and the report (nothing is timed here)."""

from __future__ import annotations

from devstack.bench.bank import choose_nightly
from devstack.bench.cases import nightly_counts
from devstack.bench.probes import writes_delta
from devstack.bench.report import (
    OVERHEAD,
    PLANNING_PHASE,
    SUMMARY_PHASE,
    SYNC_TOTAL,
    SYNC_WALL,
    CaseResult,
    PushLatencyResult,
    budget_check,
    busy_seconds,
    check_at_most,
    describe_push_latency,
    expected_plan_problems,
    fingerprint_mismatches,
    fmt_bytes,
    fmt_endpoints,
    fmt_phases,
    fmt_seconds,
    memory_check,
    pages,
    percentile,
    push_p95_check,
    render_markdown,
    request_budget,
    requests_text,
    split_counters,
    target_lines,
    task_phases,
    wall_check,
)
from devstack.bench.runners import task_spans


def result(case="b", mode="dag", wall=25.0, **overrides) -> CaseResult:
    values = {
        "size": 2000,
        "case": case,
        "mode": mode,
        "wall": wall,
        "status": "COMPLETED",
        "expectation": "ok",
        "listed": 1995,
        "changed": 20,
        "rest": {"GET /api/v4/projects/:id/hooks": 2000, "GET /api/v4/groups/:id/projects": 20},
        "git": {"git info/refs": 2000},
        "rows": {"item": 20, "item_git": 20, "project_lock": 40},
        "mapped_tis": 20,
        "memory": {"airflow": 1024**3, "stack": 2 * 1024**3},
        "fingerprint": "abc (1995 items)",
        "reference": "yes",
    }
    values.update(overrides)
    return CaseResult(**values)


def test_check_at_most_says_by_how_much():
    passed = check_at_most(24.0, 30.0, fmt_seconds)
    assert passed.passed and passed.label == "PASS"
    assert passed.text == "PASS (6.0 s under, 80% of target)"
    missed = check_at_most(45.0, 30.0, fmt_seconds)
    assert not missed.passed and missed.label == "MISS"
    assert missed.text == "MISS by 15.0 s (+50%)"
    assert check_at_most(30.0, 30.0, fmt_seconds).passed  # the target itself is allowed


def test_request_budget_is_one_request_per_hundred_projects_plus_ten():
    assert pages(2000) == 20 and request_budget(2000) == 30
    assert pages(20000) == 200 and request_budget(20000) == 210
    assert pages(1995) == 20 and request_budget(1995) == 30  # ceil
    assert pages(100_000) == 1000 and request_budget(100_000) == 1010
    assert pages(1) == 1 and request_budget(1) == 11


def test_nightly_choice_is_deterministic_and_the_unhooked_are_among_the_changed():
    assert nightly_counts(2000) == {"changed": 20, "unhooked": 10, "deleted": 5}
    assert nightly_counts(20000) == {"changed": 200, "unhooked": 100, "deleted": 50}
    assert nightly_counts(40) == {"changed": 1, "unhooked": 1, "deleted": 1}
    ids = list(range(1000, 3000))
    first, again = choose_nightly(ids, 2000), choose_nightly(list(reversed(ids)), 2000)
    assert first == again
    changed, unhooked, deleted = set(first.changed), set(first.unhooked), set(first.deleted)
    assert [len(s) for s in (changed, unhooked, deleted)] == [20, 10, 5]
    assert unhooked < changed and not changed & deleted


def test_split_counters_separates_rest_graphql_and_git_and_drops_zeros():
    rest, graphql, git = split_counters(
        {
            "git info/refs": 3,
            "GET /api/v4/projects/:id": 2,
            "git upload-pack": 1,
            "POST /api/v4/projects/:id/hooks": 0,
            "POST /api/graphql": 4,
        }
    )
    assert rest == {"GET /api/v4/projects/:id": 2}
    assert graphql == {"POST /api/graphql": 4}
    assert git == {"git info/refs": 3, "git upload-pack": 1}
    assert fmt_endpoints(rest) == "GET /projects/:id 2"
    assert fmt_endpoints({}) == "none"


def test_formatting():
    assert fmt_seconds(12.345) == "12.3 s"
    assert fmt_seconds(1800) == "30.0 min"
    assert fmt_seconds(None) == "-"
    assert fmt_bytes(512 * 1024**2) == "512 MiB"
    assert fmt_bytes(3 * 1024**3) == "3.00 GiB"


def test_which_targets_apply():
    assert wall_check(result(case="b", wall=15.0)).passed  # 2,000 items (b) ≤ 15 s
    assert not wall_check(result(case="c", wall=5.5)).passed  # 2,000 items (c) ≤ 5 s
    assert wall_check(result(case="c", size=20000, wall=19.0)).passed
    assert not wall_check(result(case="b", size=20000, wall=91.0)).passed
    assert wall_check(result(case="a", size=20000, wall=900.0)).passed  # 15 min
    assert not wall_check(result(case="a", size=20000, wall=901.0)).passed
    assert wall_check(result(case="a", size=2000)) is None  # no first-sync target at 2,000
    assert wall_check(result(case="b", mode="direct")) is None  # wall targets are the DAG's
    assert wall_check(result(case="b", size=40)) is None  # no target for other sizes
    planning = result(case="p", mode="direct", size=100_000, listed=100_000, wall=59.0)
    assert wall_check(planning).passed  # the planning case is measured in this process
    assert not wall_check(result(case="p", mode="direct", size=100_000, wall=61.0)).passed
    assert memory_check(result()).passed
    assert not memory_check(result(memory={"stack": 4 * 1024**3})).passed


def test_every_request_counts_against_the_budget_of_the_nothing_changed_cases():
    fits = result(case="c", listed=2000, rest={"POST /api/graphql": 20}, git={"git info/refs": 10})
    assert fits.requests == 30 and budget_check(fits).passed
    over = result(case="c", listed=2000, rest={"POST /api/graphql": 20}, git={"git info/refs": 11})
    assert budget_check(over).text == "MISS by 1 (+3%)"
    graphql = result(case="p", listed=100_000, rest={}, graphql={"POST /api/graphql": 1000}, git={})
    assert budget_check(graphql).passed  # 1,000 ≤ 1,010
    assert budget_check(result(case="b")) is None  # shown, not held to the budget
    today = result(case="c", listed=2000, rest={"GET /api/v4/projects/:id/hooks": 2000}, git={"git info/refs": 2000})
    text = requests_text(today)
    assert text.startswith("4,000 = REST 2,000 + GraphQL 0 + git 2,000; 200.0 × ceil(N/100) = 20")
    assert text.endswith("(≤ 30: MISS +3,970 (+13233%))")
    assert "≤" not in requests_text(result(case="b"))


def test_expected_plan_problems():
    counts = nightly_counts(2000)
    plan_b = {
        "total_ids": 1995,
        "to_sync": list(range(20)),
        "to_delete": list(range(5)),
        "missing_webhook": list(range(10)),
        "deletion_blocked": "",
    }
    assert expected_plan_problems("b", plan_b, 1995, counts, first=False, swept=False) == []
    swept_b = {**plan_b, "missing_webhook": [], "verify_webhooks": list(range(20))}  # the 20 changed, undelivered
    assert expected_plan_problems("b", swept_b, 1995, counts, first=False) == []
    assert expected_plan_problems("b", plan_b, 1995, counts, first=False) == ["hooks to check 10 not 20"]
    plan_c = {**plan_b, "to_sync": [1], "to_delete": [], "missing_webhook": []}
    assert expected_plan_problems("c", plan_c, 1995, counts, first=False) == ["to sync 1 not 0"]
    plan_a = {"total_ids": 2000, "to_sync": list(range(2000)), "to_delete": [], "missing_webhook": list(range(2000))}
    assert expected_plan_problems("a", plan_a, 2000, counts, first=True) == []
    assert expected_plan_problems("a", {**plan_a, "deletion_blocked": "x"}, 2000, counts, first=True) == [
        "deletion blocked"
    ]


def test_writes_delta_and_fingerprints():
    assert writes_delta({"item": 5, "item_git": 2}, {"item": 7, "item_git": 2, "item_log": 3}) == {
        "item": 2,
        "item_log": 3,
    }
    same = [result(mode="dag"), result(mode="direct")]
    assert fingerprint_mismatches(same) == []
    assert fingerprint_mismatches([result(mode="dag"), result(mode="direct", fingerprint="other")]) == [(2000, "b")]


def test_where_the_time_goes_from_task_instances():
    tis = [
        {"task_id": "list_ids", "start_date": "2026-01-01T00:00:02Z", "end_date": "2026-01-01T00:00:05Z"},
        {"task_id": "sync", "start_date": "2026-01-01T00:00:06Z", "end_date": "2026-01-01T00:00:10Z"},
        {"task_id": "sync", "start_date": "2026-01-01T00:00:07Z", "end_date": "2026-01-01T00:00:15Z"},
        {"task_id": "sync", "start_date": None, "end_date": None},  # never ran: no span
        {"task_id": "dispatch_webhooks", "start_date": "2026-01-01T00:00:15Z", "end_date": "2026-01-01T00:00:16Z"},
        {"task_id": "summary", "start_date": "2026-01-01T00:00:17Z", "end_date": "2026-01-01T00:00:18Z"},
    ]
    spans = task_spans(tis)
    assert len(spans["sync"]) == 2
    # triggered at 0, ended at 20: busy 2-5, 6-16, 17-18 (14 s), so 6 s of the 20 no task ran
    phases = task_phases(20.0, spans)
    assert phases == {
        PLANNING_PHASE: 3.0,
        SYNC_WALL: 9.0,
        SYNC_TOTAL: 12.0,
        "units": 2.0,
        "dispatch_webhooks": 1.0,
        SUMMARY_PHASE: 1.0,
        OVERHEAD: 6.0,
    }
    text = fmt_phases(phases)
    assert text.startswith("planning (list_ids) 3.0 s, sync wall 9.0 s (2 units), sync instances total 12.0 s")
    assert text.endswith("orchestration overhead 6.0 s")


def test_busy_seconds_is_the_union_of_the_spans():
    assert busy_seconds([]) == 0.0
    assert busy_seconds([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == 4.0
    assert busy_seconds([(4, 5), (0, 10)]) == 10.0


def test_push_latency_percentiles_and_target():
    assert percentile([], 0.95) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0
    on_time = PushLatencyResult(
        200, "(d)", latencies=[1.0] * 47 + [9.0, 12.0, 30.0], event_states=["synced"] * 50, runs={"r1": 50}
    )
    assert push_p95_check(on_time).passed  # nearest rank: the 48th of 50 is 9 s
    late = PushLatencyResult(200, "(d)", latencies=[1.0] * 45 + [11.0] * 5, event_states=["synced"] * 50)
    assert push_p95_check(late).text == "MISS by 1.0 s (+10%)"
    unseen = PushLatencyResult(200, "(d)", latencies=[1.0] * 45 + [None] * 5, event_states=["synced"] * 50)
    assert not push_p95_check(unseen).passed  # a push never seen is later than any target
    lines = describe_push_latency(
        PushLatencyResult(200, "(d)", latencies=[1.0, None], event_states=["synced", "failed"], runs={"r": 2})
    )
    assert "never seen 1" in lines[1]
    assert "failed 1, synced 1" in lines[2] and "NOT EVERY EVENT ENDED synced" in lines[2]


def test_render_markdown_shows_targets_requests_phases_and_a_loud_no():
    results = [
        result(case="c", mode="dag", wall=6.0, changed=0, listed=2000, phases={PLANNING_PHASE: 4.0, OVERHEAD: 2.0}),
        result(
            case="c",
            mode="direct",
            wall=3.0,
            changed=0,
            listed=2000,
            mapped_tis=None,
            memory={"process": 200 * 1024**2, "stack": 400 * 1024**2},
        ),
        result(case="b", mode="dag", wall=14.0),
    ]
    pushes = [PushLatencyResult(2000, "(d)", latencies=[2.0] * 50, event_states=["synced"] * 50, runs={"r": 50})]
    meta = {"date": "2026-01-01 00:00 UTC", "args": "--sizes 2000", "machine": "2 cores"}
    report = render_markdown(meta, results, pushes)
    assert report.startswith("Benchmark of 2026-01-01 00:00 UTC (`python -m devstack.bench --sizes 2000`)")
    assert "- machine: 2 cores" in report
    lines = report.splitlines()
    row_c = next(line for line in lines if line.startswith("| 2,000 | (c)"))
    assert "6.0 s (≤ 5.0 s: MISS +1.0 s (+20%))" in row_c
    assert "| 3.0 s |" in row_c and "| 2.00 |" in row_c  # direct wall, DAG/direct
    assert "4,020 / 4,020 (≤ 30: MISS +3,990 (+13300%)) | 201.0 / 201.0 |" in row_c  # REST 2,020 + git 2,000
    row_b = next(line for line in lines if line.startswith("| 2,000 | (b)"))
    assert "14.0 s (≤ 15.0 s: PASS)" in row_b and "≤ 30" not in row_b
    assert "planning (list_ids) 4.0 s, orchestration overhead 2.0 s" in report
    assert "- MISS: 2,000 (c) nothing changed, dag: wall: MISS by 1.0 s (+20%)" in lines
    assert (
        "- PASS: 2,000 (b) nightly incremental (1% changed, half of them with their hook removed, 0.25% deleted), dag: wall: "
        in report
    )
    assert "- PASS: 2,000 items, push-to-row p95 ≤ 10 s: PASS (8.0 s under, 20% of target)" in lines
    assert "Same end state in both modes (every imrt row): yes" in report
    assert "Same end state as one full sync of the same bank (every case and mode): yes" in report
    assert "SAME END STATE: NO" not in report
    results[1].reference = "NO: stim_link: 0 rows not in the reference, 1 reference rows missing"
    report = render_markdown(meta, results, pushes)
    assert (
        "Same end state as one full sync of the same bank (every case and mode): **NO** for 2,000 (c) direct: "
        "NO: stim_link" in report
    )
    assert "**!!! SAME END STATE: NO" in report
    assert "**END STATE DIFFERS**" in report
    assert "- **MISS**: 2,000 (c) nothing changed, direct: same end state: NO: stim_link" in report


def test_target_lines_name_every_check_of_a_case():
    lines = target_lines([result(case="c", mode="dag", wall=4.0, listed=2000, rest={}, git={"git info/refs": 25})])
    assert lines[2:] == [
        "- PASS: 2,000 (c) nothing changed, dag: wall: PASS (1.0 s under, 80% of target)",
        "- PASS: 2,000 (c) nothing changed, dag: GitLab requests ≤ ceil(N/100) + 10: PASS (5 under, 83% of target)",
        "- PASS: 2,000 (c) nothing changed, dag: whole stack ≤ 3 GiB: PASS (1.00 GiB under, 67% of target)",
        "- PASS: 2,000 (c) nothing changed, dag: same end state: yes",
    ]


def test_foreign_cpu_is_what_other_processes_used_in_between():
    from devstack.bench.probes import foreign_cpu_delta
    from devstack.bench.report import foreign_share

    before = {1: (100.0, 5.0), 2: (100.0, 1.0), 3: (100.0, 9.0)}
    after = {1: (100.0, 7.5), 2: (150.0, 0.5), 4: (160.0, 2.0)}  # 2: pid reused by a new process; 3 ended; 4 new
    assert foreign_cpu_delta(before, after) == 2.5 + 0.5 + 2.0
    assert foreign_cpu_delta(after, after) == 0.0
    import os

    share = foreign_share(result(wall=10.0, foreign_cpu=5.0))
    assert share == 5.0 / (10.0 * (os.cpu_count() or 1))


def test_push_latency_reads_runs_from_the_events_whatever_their_dag():
    from devstack.bench.pushes import PushMade, event_result, latencies

    made = [PushMade(1, "a" * 40, 100.0, True), PushMade(2, "b" * 40, 101.0, True), PushMade(3, "c" * 40, 102.0, False)]
    first_seen = {(1, "a" * 40): 103.5, (2, "b" * 40): 100.5, (3, "d" * 40): 110.0}  # 2: seen before git push returned
    assert latencies(made, first_seen) == [3.5, 0.0, None]  # 3: another commit's row is not this push's
    events = [
        {"commit_sha": "a" * 40, "status": "synced", "run_id": "push__2026-01-01T00:00:00"},
        {"commit_sha": "b" * 40, "status": "failed", "run_id": "webhook__2026-01-01T00:00:01"},
    ]
    result = event_result(2000, made, events, {"status": "COMPLETED"}, 300.0, 40.0)
    assert result.event_states == ["synced", "failed", "no event"]
    assert result.runs == {"push__2026-01-01T00:00:00": 1, "webhook__2026-01-01T00:00:01": 1}
    assert result.during == "(d) mode=full (2 of 3 pushes returned while it ran; it ended COMPLETED)"
