"""The benchmark's pure parts: targets, margins, formatting and the report (nothing is timed here)."""

from __future__ import annotations

from devstack.bench.bank import choose_nightly
from devstack.bench.cases import nightly_counts
from devstack.bench.probes import writes_delta
from devstack.bench.report import (
    CaseResult,
    check_at_most,
    expected_plan_problems,
    fingerprint_mismatches,
    fmt_bytes,
    fmt_endpoints,
    fmt_seconds,
    memory_check,
    ratio_check,
    render_markdown,
    rest_check,
    rest_target,
    split_counters,
    wall_check,
)
from devstack.bench.runners import run_phases


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


def test_rest_target_is_pages_plus_one_call_per_item_plus_five_per_change():
    assert rest_target(2000, 20) == 20 + 2000 + 100
    assert rest_target(1995, 0) == 20 + 1995
    assert rest_target(20000, 200) == 200 + 20000 + 1000
    assert rest_target(1, 0) == 2


def test_nightly_counts_and_choice_are_disjoint_and_deterministic():
    assert nightly_counts(2000) == {"changed": 20, "unhooked": 10, "deleted": 5}
    assert nightly_counts(20000) == {"changed": 200, "unhooked": 100, "deleted": 50}
    assert nightly_counts(40) == {"changed": 1, "unhooked": 1, "deleted": 1}
    ids = list(range(1000, 3000))
    first, again = choose_nightly(ids, 2000), choose_nightly(list(reversed(ids)), 2000)
    assert first == again
    sets = [set(first.changed), set(first.unhooked), set(first.deleted)]
    assert [len(s) for s in sets] == [20, 10, 5]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])


def test_split_counters_separates_rest_and_git_and_drops_zeros():
    rest, git = split_counters(
        {"git info/refs": 3, "GET /api/v4/projects/:id": 2, "git upload-pack": 1, "POST /api/v4/projects/:id/hooks": 0}
    )
    assert rest == {"GET /api/v4/projects/:id": 2}
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
    assert wall_check(result(case="b", wall=25.0)).passed
    assert not wall_check(result(case="c", wall=21.0)).passed
    assert wall_check(result(case="b", mode="direct")) is None  # wall targets are the DAG's
    assert wall_check(result(case="b", size=40)) is None  # no target for other sizes
    assert rest_check(result(case="a")) is None
    assert rest_check(result(case="b")).passed  # 2,020 <= 2,115
    over = result(case="c", changed=0, rest={"GET /api/v4/projects/:id/hooks": 2016})
    assert rest_check(over).text == "MISS by 1 (+0%)"
    assert memory_check(result()).passed
    assert not memory_check(result(memory={"stack": 4 * 1024**3})).passed
    assert ratio_check("a", 1.4).passed and not ratio_check("d", 2.0).passed
    assert ratio_check("b", 9.0) is None and ratio_check("a", None) is None


def test_expected_plan_problems():
    counts = nightly_counts(2000)
    plan_b = {
        "total_ids": 1995,
        "to_sync": list(range(20)),
        "to_delete": list(range(5)),
        "missing_webhook": list(range(10)),
        "deletion_blocked": "",
    }
    assert expected_plan_problems("b", plan_b, 1995, counts, first=False) == []
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


def test_run_phases_from_task_instances():
    run = {"start_date": "2026-01-01T00:00:01+00:00", "end_date": "2026-01-01T00:00:20+00:00"}
    tis = [
        {"task_id": "list_ids", "start_date": "2026-01-01T00:00:02Z", "end_date": "2026-01-01T00:00:05Z"},
        {"task_id": "sync", "start_date": "2026-01-01T00:00:06Z", "end_date": "2026-01-01T00:00:10Z"},
        {"task_id": "sync", "start_date": "2026-01-01T00:00:07Z", "end_date": "2026-01-01T00:00:15Z"},
        {"task_id": "summary", "start_date": "2026-01-01T00:00:16Z", "end_date": "2026-01-01T00:00:18Z"},
    ]
    from datetime import datetime

    triggered = datetime.fromisoformat("2026-01-01T00:00:00+00:00").timestamp()
    assert run_phases(triggered, run, tis) == {
        "queued": 1.0,
        "list_ids": 3.0,
        "gap before sync": 1.0,
        "sync (2 TIs, mean 6.0 s)": 9.0,
        "gap before summary": 1.0,
        "summary": 2.0,
        "tail": 2.0,
    }


def test_render_markdown_has_the_table_the_readme_takes():
    results = [
        result(case="a", mode="dag", wall=240.0, changed=2000, listed=2000),
        result(
            case="a",
            mode="direct",
            wall=100.0,
            changed=2000,
            listed=2000,
            mapped_tis=None,
            memory={"process": 200 * 1024**2, "stack": 400 * 1024**2},
        ),
        result(case="b", mode="dag", wall=25.0),
    ]
    report = render_markdown({"date": "2026-01-01 00:00 UTC", "args": "--sizes 2000", "machine": "2 cores"}, results)
    assert report.startswith("Benchmark of 2026-01-01 00:00 UTC (`python -m devstack.bench --sizes 2000`)")
    assert "- machine: 2 cores" in report
    lines = report.splitlines()
    row_a = next(line for line in lines if line.startswith("| 2,000 | (a)"))
    assert "240.0 s (≤ 180.0 s: MISS +60.0 s (+33%))" in row_a
    assert "2.40 (≤ 1.5: MISS +0.90 (+60%))" in row_a
    assert "| 100.0 s |" in row_a
    row_b = next(line for line in lines if line.startswith("| 2,000 | (b)"))
    assert "25.0 s (≤ 30.0 s: PASS)" in row_b
    assert "2,020 / - (≤ 2,115: PASS)" in row_b
    assert "Same end state in both modes (every imrt row): yes" in report
    assert "Same end state as one full sync of the same bank (every case and mode): yes" in report
    results[1].reference = "NO: stim_link: 0 rows not in the reference, 1 reference rows missing"
    report = render_markdown({"date": "2026-01-01 00:00 UTC", "args": "--sizes 2000", "machine": "2 cores"}, results)
    assert (
        "Same end state as one full sync of the same bank (every case and mode): NO for 2,000 (a) direct: "
        "NO: stim_link" in report
    )


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
