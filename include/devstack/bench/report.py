"""The benchmark's targets, the checks against them and the report: pure functions, nothing is timed here."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .. import imrt_snapshot as imrt_snapshot_module
from .cases import CASES, MODES

GIB = 1024**3

# Issue 5's targets. Wall times are for the DAG under the scheduler.
WALL_TARGETS: dict[tuple[int, str], float] = {
    (2000, "a"): 180.0,
    (2000, "b"): 30.0,
    (2000, "c"): 20.0,
    (2000, "d"): 180.0,
    (20000, "a"): 1800.0,
    (20000, "b"): 180.0,
}
RATIO_TARGET = 1.5
RATIO_CASES = ("a", "d")
REST_TARGET_CASES = ("b", "c")
MEMORY_TARGET = 3 * GIB

ITEM_TABLES = imrt_snapshot_module.ITEM_TABLES


def say(message: str = "") -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class Check:
    """A figure against its target: ``passed`` and a short text saying by how much."""

    passed: bool
    text: str

    @property
    def label(self) -> str:
        return "PASS" if self.passed else "MISS"


def check_at_most(value: float, limit: float, fmt: Callable[[float], str]) -> Check:
    """``value <= limit``, with the margin: ``PASS (-12.0 s, 80% of target)`` / ``MISS by +5.0 s (+25%)``."""
    share = value / limit if limit else math.inf
    if value <= limit:
        return Check(True, f"PASS ({fmt(limit - value)} under, {share:.0%} of target)")
    over = (value - limit) / limit if limit else math.inf
    return Check(False, f"MISS by {fmt(value - limit)} (+{over:.0%})")


def rest_target(listed: int, changed: int) -> int:
    """GitLab REST requests allowed for a (b) or (c) run over ``listed`` items of which ``changed`` changed."""
    return math.ceil(listed / 100) + listed + 5 * changed


def split_counters(counters: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """The server's counters as (GitLab REST requests, git requests), each by endpoint."""
    rest = {k: v for k, v in counters.items() if not k.startswith("git ") and v}
    git = {k: v for k, v in counters.items() if k.startswith("git ") and v}
    return dict(sorted(rest.items())), dict(sorted(git.items()))


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def fmt_bytes(size: float | None) -> str:
    if size is None:
        return "-"
    if size >= GIB:
        return f"{size / GIB:.2f} GiB"
    return f"{size / 1024**2:.0f} MiB"


def fmt_count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_endpoints(counts: Mapping[str, int]) -> str:
    """``GET /api/v4/projects/:id/hooks 2,000, ...`` with the API prefix dropped."""
    return ", ".join(f"{k.replace('/api/v4', '')} {v:,}" for k, v in counts.items()) or "none"


@dataclass
class CaseResult:
    size: int
    case: str
    mode: str
    wall: float
    status: str  # the summary's verdict (COMPLETED / FAILED) or the run's state
    expectation: str  # "ok" or what differed from the expected plan
    listed: int  # projects listed (the run's N)
    changed: int  # items changed since the previous case (for the REST target)
    rest: dict[str, int] = field(default_factory=dict)
    git: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # per table: inserted + updated + deleted
    mapped_tis: int | None = None
    memory: dict[str, int] = field(default_factory=dict)  # peak PSS in bytes: airflow, stack, process, ...
    phases: dict[str, float] = field(default_factory=dict)
    fingerprint: str = ""  # digest of the imrt snapshot after the case
    reference: str = ""  # "yes", or how the snapshot differs from one full sync of the same bank state
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at start and at end
    foreign_cpu: float = 0.0  # CPU seconds other processes (not this benchmark's) used during the case

    @property
    def rest_total(self) -> int:
        return sum(self.rest.values())

    @property
    def git_total(self) -> int:
        return sum(self.git.values())

    @property
    def item_rows(self) -> int:
        return sum(v for k, v in self.rows.items() if k in ITEM_TABLES)

    @property
    def all_rows(self) -> int:
        return sum(self.rows.values())


def foreign_share(result: CaseResult) -> float:
    """The share of the machine's CPU time that processes outside the benchmark took during the case."""
    return result.foreign_cpu / (result.wall * (os.cpu_count() or 1)) if result.wall > 0 else 0.0


def wall_check(result: CaseResult) -> Check | None:
    limit = WALL_TARGETS.get((result.size, result.case))
    if limit is None or result.mode != "dag":
        return None
    return check_at_most(result.wall, limit, fmt_seconds)


def rest_check(result: CaseResult) -> Check | None:
    if result.case not in REST_TARGET_CASES:
        return None
    return check_at_most(result.rest_total, rest_target(result.listed, result.changed), fmt_count)


def memory_check(result: CaseResult) -> Check | None:
    peak = result.memory.get("stack")
    return None if peak is None else check_at_most(peak, MEMORY_TARGET, fmt_bytes)


def ratio_of(dag: CaseResult | None, direct: CaseResult | None) -> float | None:
    if dag is None or direct is None or direct.wall <= 0:
        return None
    return dag.wall / direct.wall


def ratio_check(case: str, ratio: float | None) -> Check | None:
    if ratio is None or case not in RATIO_CASES:
        return None
    return check_at_most(ratio, RATIO_TARGET, lambda x: f"{x:.2f}")


def describe_result(result: CaseResult) -> list[str]:
    """The lines printed for one case in one mode."""

    def with_check(text: str, check: Check | None) -> str:
        return f"{text}  target: {check.text}" if check else text

    lines = [
        with_check(f"wall {fmt_seconds(result.wall)}", wall_check(result))
        + f"   [{result.status}; expected plan: {result.expectation}; load {result.load[0]:.1f}->{result.load[1]:.1f}"
        + f"; other processes: {foreign_share(result):.0%} of the CPUs]",
        with_check(
            f"GitLab REST {result.rest_total:,} ({fmt_endpoints(result.rest)})"
            + (f" [N={result.listed:,}, changed={result.changed:,}]" if result.case in REST_TARGET_CASES else ""),
            rest_check(result),
        ),
        f"git {result.git_total:,} ({fmt_endpoints(result.git)})",
        f"rows written (inserted + updated + deleted): item tables {result.item_rows:,} ("
        + (", ".join(f"{k} {v:,}" for k, v in sorted(result.rows.items()) if k in ITEM_TABLES) or "none")
        + f"); other {result.all_rows - result.item_rows:,} ("
        + (", ".join(f"{k} {v:,}" for k, v in sorted(result.rows.items()) if k not in ITEM_TABLES) or "none")
        + ")",
    ]
    if result.mapped_tis is not None:
        lines.append(f"mapped sync task instances {result.mapped_tis:,}")
    memory = result.memory
    own = "Airflow" if result.mode == "dag" else "this process"
    own_peak = memory.get("airflow") if result.mode == "dag" else memory.get("process")
    lines.append(
        with_check(
            f"peak PSS: {own} {fmt_bytes(own_peak)}, PostgreSQL {fmt_bytes(memory.get('postgres'))}, "
            f"item bank server {fmt_bytes(memory.get('itembank'))}; whole stack {fmt_bytes(memory.get('stack'))}",
            memory_check(result),
        )
    )
    lines.append(f"same end state as one full sync of this bank: {result.reference}")
    if result.phases:
        lines.append("phases: " + ", ".join(f"{k} {fmt_seconds(v)}" for k, v in result.phases.items()))
    return lines


def render_markdown(meta: Mapping[str, str], results: Sequence[CaseResult]) -> str:
    """The report: machine and settings, the figures per size and case, the requests by endpoint."""
    by_key = {(r.size, r.case, r.mode): r for r in results}
    lines = [f"Benchmark of {meta.get('date', '?')} (`python -m devstack.bench {meta.get('args', '')}`)", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items() if key not in ("date", "args")]
    lines += [
        "",
        "| items | case | DAG wall (target) | direct wall | DAG/direct (target) | GitLab REST DAG / direct (target) "
        "| git requests DAG / direct | rows written | mapped TIs | Airflow peak | whole-stack peak DAG / direct "
        "| CPU taken by other processes DAG / direct |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r.size, r.case) for r in results})
    for size, case in keys:
        dag, direct = by_key.get((size, case, "dag")), by_key.get((size, case, "direct"))
        any_result = dag or direct
        assert any_result is not None
        wall = "-"
        if dag is not None:
            check = wall_check(dag)
            wall = fmt_seconds(dag.wall) + (
                f" (≤ {fmt_seconds(WALL_TARGETS[(size, case)])}: {_short(check)})" if check else ""
            )
            if dag.status != "COMPLETED" or dag.expectation != "ok":
                wall += f" [{dag.status}, {dag.expectation}]"
        direct_wall = fmt_seconds(direct.wall) if direct else "-"
        if direct is not None and (direct.status != "COMPLETED" or direct.expectation != "ok"):
            direct_wall += f" [{direct.status}, {direct.expectation}]"
        ratio = ratio_of(dag, direct)
        ratio_text = "-" if ratio is None else f"{ratio:.2f}"
        check = ratio_check(case, ratio)
        if check:
            ratio_text += f" (≤ {RATIO_TARGET}: {_short(check)})"
        rest = " / ".join(fmt_count(r.rest_total) if r else "-" for r in (dag, direct))
        if case in REST_TARGET_CASES:
            limit = rest_target(any_result.listed, any_result.changed)
            verdicts = {_short(c) for c in (rest_check(r) for r in (dag, direct) if r) if c}
            rest += f" (≤ {limit:,}: {', '.join(sorted(verdicts))})"
        git = " / ".join(fmt_count(r.git_total) if r else "-" for r in (dag, direct))
        rows = fmt_count(any_result.item_rows)
        tis = fmt_count(dag.mapped_tis) if dag and dag.mapped_tis is not None else "-"
        airflow_peak = fmt_bytes(dag.memory.get("airflow")) if dag else "-"
        stack = " / ".join(fmt_bytes(r.memory.get("stack")) if r else "-" for r in (dag, direct))
        peaks = [r.memory.get("stack") for r in (dag, direct) if r and r.memory.get("stack")]
        if peaks:
            stack += f" (≤ 3 GiB: {_short(check_at_most(max(peaks), MEMORY_TARGET, fmt_bytes))})"
        others = " / ".join(f"{foreign_share(r):.0%}" if r else "-" for r in (dag, direct))
        lines.append(
            f"| {size:,} | ({case}) {CASES[case]} | {wall} | {direct_wall} | {ratio_text} | {rest} | {git} | {rows} "
            f"| {tis} | {airflow_peak} | {stack} | {others} |"
        )
    lines += [
        "",
        "Requests by endpoint and phases:",
        "",
        "| items | case | mode | GitLab REST | git | phases |",
        "|---|---|---|---|---|---|",
    ]
    for result in sorted(results, key=lambda r: (r.size, r.case, MODES.index(r.mode))):
        phases = ", ".join(f"{k} {fmt_seconds(v)}" for k, v in result.phases.items()) or "-"
        lines.append(
            f"| {result.size:,} | ({result.case}) | {result.mode} | {fmt_endpoints(result.rest)} "
            f"| {fmt_endpoints(result.git)} | {phases} |"
        )
    mismatched = fingerprint_mismatches(results)
    lines += [
        "",
        "Same end state in both modes (every imrt row): "
        + ("yes" if not mismatched else "NO for " + ", ".join(f"{s:,} ({c})" for s, c in mismatched)),
    ]
    off_reference = [r for r in results if r.reference != "yes"]
    lines += [
        "Same end state as one full sync of the same bank (every case and mode): "
        + (
            "yes"
            if not off_reference
            else "NO for " + "; ".join(f"{r.size:,} ({r.case}) {r.mode}: {r.reference}" for r in off_reference)
        )
    ]
    return "\n".join(lines) + "\n"


def _short(check: Check | None) -> str:
    """``PASS``, or ``MISS +12.0 s (+40%)``."""
    if check is None:
        return "-"
    return "PASS" if check.passed else check.text.replace("MISS by ", "MISS +")


def fingerprint_mismatches(results: Sequence[CaseResult]) -> list[tuple[int, str]]:
    prints: dict[tuple[int, str], set[str]] = {}
    for r in results:
        if r.fingerprint:
            prints.setdefault((r.size, r.case), set()).add(r.fingerprint)
    return sorted(key for key, values in prints.items() if len(values) > 1)


def expected_plan_problems(
    case: str, plan: Mapping, size_now: int, counts: Mapping[str, int], *, first: bool
) -> list[str]:
    """What differs from the plan the case must produce (empty: as expected)."""
    problems = []
    to_sync, deleted = len(plan.get("to_sync", ())), len(plan.get("to_delete", ()))
    missing = len(plan.get("missing_webhook", ()))
    if plan.get("total_ids") != size_now:
        problems.append(f"listed {plan.get('total_ids')} not {size_now}")
    wanted = {
        "a": (size_now, 0, size_now if first else 0),
        "b": (counts["changed"], counts["deleted"], counts["unhooked"]),
        "c": (0, 0, 0),
        "d": (size_now, 0, 0),
    }[case]
    for name, got, want in zip(
        ("to sync", "to delete", "missing webhook"), (to_sync, deleted, missing), wanted, strict=True
    ):
        if got != want:
            problems.append(f"{name} {got} not {want}")
    if plan.get("deletion_blocked"):
        problems.append("deletion blocked")
    return problems
