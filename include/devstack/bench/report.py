"""The benchmark's targets, the checks against them and the report: pure functions, nothing is timed here."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .. import imrt_snapshot as imrt_snapshot_module
from .cases import CASES, MODES, PLANNING, PLANNING_TITLE, PUSH_LATENCY_TITLE

GIB = 1024**3

# Issue 22 requirement 5's targets: wall times of the DAG under the scheduler (the planning case: ``open_run``, what
# the list_ids task runs, in this process), on this 2-core machine.
WALL_TARGETS: dict[tuple[int, str], float] = {
    (2000, "b"): 15.0,
    (2000, "c"): 5.0,
    (20000, "a"): 15 * 60.0,
    (20000, "b"): 90.0,
    (20000, "c"): 20.0,
    (100000, PLANNING): 60.0,
}
# The mode each case's wall target is for.
TARGET_MODE = {**dict.fromkeys(CASES, "dag"), PLANNING: "direct"}
# Cases held to the request budget ceil(N/100) + BUDGET_SLACK GitLab requests (REST + GraphQL + git): nothing changed.
BUDGET_CASES = ("c", PLANNING)
BUDGET_SLACK = 10
MEMORY_TARGET = 3 * GIB
PUSH_P95_TARGET = 10.0

ITEM_TABLES = imrt_snapshot_module.ITEM_TABLES

# Where a run's time goes (see ``dag_phases`` and the direct runner): the same names in both modes.
PLANNING_PHASE = "planning (list_ids)"
SYNC_WALL = "sync wall"
SYNC_TOTAL = "sync instances total"
DISPATCH_PHASE = "dispatch_webhooks"
SUMMARY_PHASE = "summary"
OVERHEAD = "orchestration overhead"
PHASES = (PLANNING_PHASE, SYNC_WALL, SYNC_TOTAL, DISPATCH_PHASE, SUMMARY_PHASE, OVERHEAD)


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


def pages(listed: int) -> int:
    """ceil(N/100): one request per 100 projects, the unit every case's requests are shown against."""
    return math.ceil(listed / 100)


def request_budget(listed: int) -> int:
    """GitLab requests (REST + GraphQL + git) a nothing-changed run over ``listed`` projects may make."""
    return pages(listed) + BUDGET_SLACK


def split_counters(counters: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """The server's counters as (REST requests, GraphQL requests, git requests), each by endpoint."""
    nonzero = {k: v for k, v in sorted(counters.items()) if v}
    git = {k: v for k, v in nonzero.items() if k.startswith("git ")}
    graphql = {k: v for k, v in nonzero.items() if "graphql" in k.lower() and k not in git}
    rest = {k: v for k, v in nonzero.items() if k not in git and k not in graphql}
    return rest, graphql, git


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
    status: str  # the summary's verdict (COMPLETED / FAILED) or the run's state; PLANNED for the planning case
    expectation: str  # "ok" or what differed from the expected plan
    listed: int  # projects listed (the run's N)
    changed: int  # items changed since the previous case
    rest: dict[str, int] = field(default_factory=dict)
    git: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # per table: inserted + updated + deleted
    mapped_tis: int | None = None
    memory: dict[str, int] = field(default_factory=dict)  # peak PSS in bytes: airflow, stack, process, ...
    phases: dict[str, float] = field(default_factory=dict)  # PHASES, and "units" (work units / sync TIs)
    fingerprint: str = ""  # digest of the imrt snapshot after the case
    reference: str = ""  # "yes", or how the snapshot differs from one full sync of the same bank state
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at start and at end
    foreign_cpu: float = 0.0  # CPU seconds other processes (not this benchmark's) used during the case
    graphql: dict[str, int] = field(default_factory=dict)

    @property
    def rest_total(self) -> int:
        return sum(self.rest.values())

    @property
    def graphql_total(self) -> int:
        return sum(self.graphql.values())

    @property
    def git_total(self) -> int:
        return sum(self.git.values())

    @property
    def requests(self) -> int:
        """Every GitLab request: REST, GraphQL and git."""
        return self.rest_total + self.graphql_total + self.git_total

    @property
    def item_rows(self) -> int:
        return sum(v for k, v in self.rows.items() if k in ITEM_TABLES)

    @property
    def all_rows(self) -> int:
        return sum(self.rows.values())


def case_title(case: str) -> str:
    return PLANNING_TITLE if case == PLANNING else CASES[case]


def foreign_share(result: CaseResult) -> float:
    """The share of the machine's CPU time that processes outside the benchmark took during the case."""
    return result.foreign_cpu / (result.wall * (os.cpu_count() or 1)) if result.wall > 0 else 0.0


def wall_check(result: CaseResult) -> Check | None:
    limit = WALL_TARGETS.get((result.size, result.case))
    if limit is None or result.mode != TARGET_MODE[result.case]:
        return None
    return check_at_most(result.wall, limit, fmt_seconds)


def budget_check(result: CaseResult) -> Check | None:
    """Every GitLab request against ceil(N/100) + 10, for the nothing-changed cases."""
    if result.case not in BUDGET_CASES:
        return None
    return check_at_most(result.requests, request_budget(result.listed), fmt_count)


def memory_check(result: CaseResult) -> Check | None:
    peak = result.memory.get("stack")
    return None if peak is None else check_at_most(peak, MEMORY_TARGET, fmt_bytes)


def end_state_ok(result: CaseResult) -> bool:
    return result.reference == "yes"


def requests_text(result: CaseResult) -> str:
    """``2,017 = REST 21 + GraphQL 0 + git 1,996; 100.9 × ceil(N/100) = 20``, and the budget's verdict if any."""
    unit = pages(result.listed)
    text = (
        f"{result.requests:,} = REST {result.rest_total:,} + GraphQL {result.graphql_total:,} + git "
        f"{result.git_total:,}; {result.requests / unit if unit else 0:.1f} × ceil(N/100) = {unit:,}"
    )
    check = budget_check(result)
    if check is not None:
        text += f" (≤ {request_budget(result.listed):,}: {_short(check)})"
    return text


def ratio_of(dag: CaseResult | None, direct: CaseResult | None) -> float | None:
    if dag is None or direct is None or direct.wall <= 0:
        return None
    return dag.wall / direct.wall


def busy_seconds(spans: Sequence[tuple[float, float]]) -> float:
    """How long at least one of ``spans`` (start, end) was running: the length of their union."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def task_phases(wall: float, spans_by_task: Mapping[str, Sequence[tuple[float, float]]]) -> dict[str, float]:
    """Where a run's ``wall`` time went, from its tasks' (start, end) spans: planning, the sync instances (wall:
    first start to last end; total: the sum of their durations; units: how many), dispatch_webhooks, summary, and the
    orchestration overhead (the wall time during which none of them ran: queueing, scheduling gaps, the tail)."""
    from imrt_compat.task_contract import DISPATCH_WEBHOOKS, LIST_IDS, SUMMARY, SYNC

    def duration(task_id: str) -> float:
        return sum(end - start for start, end in spans_by_task.get(task_id, ()))

    syncs = spans_by_task.get(SYNC, ())
    every = [span for spans in spans_by_task.values() for span in spans]
    return {
        PLANNING_PHASE: duration(LIST_IDS),
        SYNC_WALL: (max(e for _, e in syncs) - min(s for s, _ in syncs)) if syncs else 0.0,
        SYNC_TOTAL: duration(SYNC),
        "units": float(len(syncs)),
        DISPATCH_PHASE: duration(DISPATCH_WEBHOOKS),
        SUMMARY_PHASE: duration(SUMMARY),
        OVERHEAD: max(0.0, wall - busy_seconds(every)),
    }


def fmt_phases(phases: Mapping[str, float]) -> str:
    """``planning (list_ids) 3.0 s, sync wall 9.0 s (2 units), ...``: the named phases in order, then any other."""
    if not phases:
        return "-"
    parts = []
    for name in PHASES:
        if name not in phases:
            continue
        text = f"{name} {fmt_seconds(phases[name])}"
        if name == SYNC_WALL and "units" in phases:
            text += f" ({phases['units']:.0f} units)"
        parts.append(text)
    parts += [f"{k} {fmt_seconds(v)}" for k, v in phases.items() if k not in PHASES and k != "units"]
    return ", ".join(parts)


def describe_result(result: CaseResult) -> list[str]:
    """The lines printed for one case in one mode."""

    def with_check(text: str, check: Check | None) -> str:
        return f"{text}  target: {check.text}" if check else text

    lines = [
        with_check(f"wall {fmt_seconds(result.wall)}", wall_check(result))
        + f"   [{result.status}; expected plan: {result.expectation}; load {result.load[0]:.1f}->{result.load[1]:.1f}"
        + f"; other processes: {foreign_share(result):.0%} of the CPUs]",
        f"GitLab requests {requests_text(result)} [N={result.listed:,}, changed={result.changed:,}]",
        f"  REST: {fmt_endpoints(result.rest)}",
        f"  GraphQL: {fmt_endpoints(result.graphql)}",
        f"  git: {fmt_endpoints(result.git)}",
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
    lines.append(end_state_line(result))
    lines.append("where the time goes: " + fmt_phases(result.phases))
    return lines


def end_state_line(result: CaseResult) -> str:
    if end_state_ok(result):
        return "same end state as one full sync of this bank: yes"
    return f"!!! SAME END STATE: NO !!! {result.size:,} ({result.case}) {result.mode}: {result.reference}"


@dataclass
class PushLatencyResult:
    """The push-latency case: each push's push-to-row seconds (None: never seen in item_git) and how its hook event
    ended (``synced``, ``failed``, ``pending``, ... or ``no event``), the runs that took the events."""

    size: int
    during: str  # the run the pushes were made during
    latencies: list[float | None] = field(default_factory=list)
    event_states: list[str] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)  # run id -> events it took
    full_sync_wall: float = 0.0
    pushes_seconds: float = 0.0  # how long the 50 pushes took to make
    reference: str = ""
    made: list = field(default_factory=list)  # the pushes (pushes.PushMade): project, sha, when git push returned

    @property
    def seen(self) -> list[float]:
        return sorted(x for x in self.latencies if x is not None)


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` in (0, 1]) of ``values``; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def push_p95_check(result: PushLatencyResult) -> Check:
    """p95 ≤ 10 s over every push; a push never seen counts as infinitely late."""
    values = [math.inf if x is None else x for x in result.latencies]
    p95 = percentile(values, 0.95)
    if p95 is None or math.isinf(p95):
        return Check(False, "MISS (pushes never seen in item_git)" if p95 is not None else "MISS (no push)")
    return check_at_most(p95, PUSH_P95_TARGET, fmt_seconds)


def describe_push_latency(result: PushLatencyResult) -> list[str]:
    seen = result.seen
    states: dict[str, int] = {}
    for state in result.event_states:
        states[state] = states.get(state, 0) + 1
    p50, p95 = percentile(seen, 0.5), percentile([math.inf if x is None else x for x in result.latencies], 0.95)
    lines = [
        f"{len(result.latencies)} pushes in {fmt_seconds(result.pushes_seconds)} during {result.during} "
        f"(that run: {fmt_seconds(result.full_sync_wall)})",
        f"push-to-row p50 {fmt_seconds(p50)}, p95 {fmt_seconds(p95) if p95 != math.inf else 'never'}, "
        f"max {fmt_seconds(seen[-1] if seen else None)}; never seen {len(result.latencies) - len(seen)}  "
        f"target p95 ≤ {fmt_seconds(PUSH_P95_TARGET)}: {push_p95_check(result).text}",
        "hook events: "
        + (", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "none")
        + ("" if states.get("synced", 0) == len(result.event_states) else "  !!! NOT EVERY EVENT ENDED synced !!!"),
        "runs that took the events: " + (", ".join(f"{k} ({v})" for k, v in sorted(result.runs.items())) or "none"),
    ]
    if result.reference:
        lines.append(
            "same end state as one full sync of this bank: "
            + (result.reference if result.reference == "yes" else f"!!! NO !!! {result.reference}")
        )
    return lines


def render_markdown(
    meta: Mapping[str, str], results: Sequence[CaseResult], pushes: Sequence[PushLatencyResult] = ()
) -> str:
    """The report: machine and settings, the figures per size and case against the targets, the requests against
    ceil(N/100), where the time goes, the push latency, and the end-state comparison (loud when it fails)."""
    lines = [f"Benchmark of {meta.get('date', '?')} (`python -m devstack.bench {meta.get('args', '')}`)", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items() if key not in ("date", "args")]
    if results:
        lines += ["", *_case_table(results), "", *_requests_and_phases_table(results)]
    for push in pushes:
        lines += ["", f"Push latency ({push.size:,} items; {PUSH_LATENCY_TITLE}):", ""]
        lines += [f"- {line}" for line in describe_push_latency(push)]
    lines += ["", *target_lines(results, pushes), "", *end_state_lines(results, pushes)]
    return "\n".join(lines) + "\n"


def _case_table(results: Sequence[CaseResult]) -> list[str]:
    by_key = {(r.size, r.case, r.mode): r for r in results}
    lines = [
        "| items | case | DAG wall | direct wall | DAG/direct | GitLab requests DAG / direct (REST + GraphQL + git) "
        "| × ceil(N/100) | rows written | mapped TIs | Airflow peak | whole-stack peak DAG / direct "
        "| CPU taken by other processes DAG / direct |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, case in sorted({(r.size, r.case) for r in results}):
        dag, direct = by_key.get((size, case, "dag")), by_key.get((size, case, "direct"))
        both = [r for r in (dag, direct) if r]
        walls = [_wall_cell(r) for r in (dag, direct)]
        ratio = ratio_of(dag, direct)
        requests = " / ".join(f"{r.requests:,}" if r else "-" for r in (dag, direct))
        budgets = {_short(c) for c in (budget_check(r) for r in both) if c}
        if budgets:
            requests += f" (≤ {request_budget(both[0].listed):,}: {', '.join(sorted(budgets))})"
        multiples = " / ".join(f"{r.requests / max(1, pages(r.listed)):.1f}" if r else "-" for r in (dag, direct))
        tis = fmt_count(dag.mapped_tis) if dag and dag.mapped_tis is not None else "-"
        stack = " / ".join(fmt_bytes(r.memory.get("stack")) if r else "-" for r in (dag, direct))
        peaks = [r.memory["stack"] for r in both if r.memory.get("stack")]
        if peaks:
            stack += f" (≤ 3 GiB: {_short(check_at_most(max(peaks), MEMORY_TARGET, fmt_bytes))})"
        lines.append(
            f"| {size:,} | ({case}) {case_title(case)} | {walls[0]} | {walls[1]} "
            f"| {'-' if ratio is None else f'{ratio:.2f}'} | {requests} | {multiples} | {fmt_count(both[0].item_rows)} "
            f"| {tis} | {fmt_bytes(dag.memory.get('airflow')) if dag else '-'} | {stack} "
            f"| {' / '.join(f'{foreign_share(r):.0%}' if r else '-' for r in (dag, direct))} |"
        )
    return lines


def _wall_cell(result: CaseResult | None) -> str:
    if result is None:
        return "-"
    text = fmt_seconds(result.wall)
    check = wall_check(result)
    if check:
        text += f" (≤ {fmt_seconds(WALL_TARGETS[(result.size, result.case)])}: {_short(check)})"
    if result.status not in ("COMPLETED", "PLANNED") or result.expectation != "ok":
        text += f" [{result.status}, {result.expectation}]"
    if not end_state_ok(result):
        text += " **END STATE DIFFERS**"
    return text


def _requests_and_phases_table(results: Sequence[CaseResult]) -> list[str]:
    lines = [
        "Requests by endpoint and where the time goes (DAG: the task instances' start and end; direct: the pipeline "
        "calls; orchestration overhead: the wall time no task ran, or in direct mode the glue between the calls):",
        "",
        "| items | case | mode | GitLab REST | GraphQL | git | where the time goes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (r.size, r.case, MODES.index(r.mode))):
        lines.append(
            f"| {r.size:,} | ({r.case}) | {r.mode} | {fmt_endpoints(r.rest)} | {fmt_endpoints(r.graphql)} "
            f"| {fmt_endpoints(r.git)} | {fmt_phases(r.phases)} |"
        )
    return lines


def target_lines(results: Sequence[CaseResult], pushes: Sequence[PushLatencyResult] = ()) -> list[str]:
    """One ``PASS``/``MISS`` line per target that a measured figure meets or misses."""
    lines = ["Targets (issue 22 requirement 5):", ""]
    for r in sorted(results, key=lambda r: (r.size, r.case, MODES.index(r.mode))):
        where = f"{r.size:,} ({r.case}) {case_title(r.case)}, {r.mode}"
        for name, check in (
            ("wall", wall_check(r)),
            (f"GitLab requests ≤ ceil(N/100) + {BUDGET_SLACK}", budget_check(r)),
            ("whole stack ≤ 3 GiB", memory_check(r)),
        ):
            if check is not None:
                lines.append(f"- {check.label}: {where}: {name}: {check.text}")
        lines.append(f"- {'PASS' if end_state_ok(r) else '**MISS**'}: {where}: same end state: {r.reference}")
    for push in pushes:
        check = push_p95_check(push)
        lines.append(f"- {check.label}: {push.size:,} items, push-to-row p95 ≤ 10 s: {check.text}")
    return lines


def end_state_lines(results: Sequence[CaseResult], pushes: Sequence[PushLatencyResult] = ()) -> list[str]:
    mismatched = fingerprint_mismatches(results)
    off_reference = [r for r in results if not end_state_ok(r)]
    off_pushes = [p for p in pushes if p.reference and p.reference != "yes"]
    lines = [
        "Same end state in both modes (every imrt row): "
        + ("yes" if not mismatched else "**NO** for " + ", ".join(f"{s:,} ({c})" for s, c in mismatched)),
        "Same end state as one full sync of the same bank (every case and mode): "
        + (
            "yes"
            if not off_reference and not off_pushes
            else "**NO** for "
            + "; ".join(
                [f"{r.size:,} ({r.case}) {r.mode}: {r.reference}" for r in off_reference]
                + [f"{p.size:,} push latency: {p.reference}" for p in off_pushes]
            )
        ),
    ]
    if mismatched or off_reference or off_pushes:
        lines.append("")
        lines.append("**!!! SAME END STATE: NO — the figures above do not count until this is explained !!!**")
    return lines


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
    case: str, plan: Mapping, size_now: int, counts: Mapping[str, int], *, first: bool, swept: bool = True
) -> list[str]:
    """What differs from the plan the case must produce (empty: as expected). ``swept``: the run was listed by the
    GraphQL sweep, which checks the hooks of new projects, of changed ones no delivery announced and every hook in a
    full run (the REST listing reads every project's hooks and names those missing one)."""
    problems = []
    to_sync, deleted = len(plan.get("to_sync", ())), len(plan.get("to_delete", ()))
    hooks = len({*plan.get("missing_webhook", ()), *plan.get("verify_webhooks", ())})
    if plan.get("total_ids") != size_now:
        problems.append(f"listed {plan.get('total_ids')} not {size_now}")
    if case == "a":
        wanted = (size_now, 0, size_now if first else 0)
    elif case == "b":  # the unhooked projects are among the changed ones, and no hook delivered their pushes
        wanted = (counts["changed"], counts["deleted"], counts["changed"] if swept else counts["unhooked"])
    elif case == "d":
        wanted = (size_now, 0, size_now if swept else 0)
    else:  # (c) and the planning case: nothing changed
        wanted = (0, 0, 0)
    names = ("to sync", "to delete", "hooks to check")
    for name, got, want in zip(names, (to_sync, deleted, hooks), wanted, strict=True):
        if got != want:
            problems.append(f"{name} {got} not {want}")
    if plan.get("deletion_blocked"):
        problems.append("deletion blocked")
    if plan.get("failed"):
        problems.append(f"{len(plan['failed'])} projects could not be read")
    return problems
