"""The two modes: the cases run and measured in this process (``direct``) or as DAG runs under the real scheduler
(``dag``), and the reference each case's end state is compared with."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from imrt_compat.task_contract import DISPATCH_WEBHOOKS, LIST_IDS, PLAN, SUMMARY, SYNC, TASK_IDS, VERDICT, XComSlot
from imrt_sync import DAG_ID

from .. import imrt_snapshot as imrt_snapshot_module
from ..airflow_rest import url_segment
from .bank import BankServer, bank_state, copy_bank, pristine_bank, project_ids
from .cases import CASE_MODE, GROUP, TOKEN, WEBHOOK_SECRET, WEBHOOK_URL
from .probes import (
    MemorySampler,
    foreign_cpu_delta,
    foreign_cpu_seconds,
    imrt_snapshot,
    postmaster_pids,
    settled_table_writes,
    with_children,
    writes_delta,
)
from .report import CaseResult, expected_plan_problems, fmt_seconds, say, split_counters, task_phases


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
    settings: dict[str, str] = field(default_factory=dict)  # --setting NAME=VALUE: imrt_NAME in both modes
    push_interval: float = 2.0  # seconds between the push-latency case's pushes


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
        from ..postgres import ensure_database

        assert runner.server is not None
        url = ensure_database(self.admin_url, f"bench_reference_{runner.size}", recreate=True)
        _, verdict, _ = direct_run(
            self.options, runner.server.url, url, runner.work.parent / "reference-git-cache", "d", create_hooks=False
        )
        if verdict["status"] != "COMPLETED":
            raise RuntimeError(f"the reference full sync failed: {verdict['message']}")
        return imrt_snapshot(url)


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
        from ..postgres import ensure_database

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
        ours = lambda: with_children(os.getpid()) | postmaster_pids(self.pgdata)  # noqa: E731
        foreign_before = foreign_cpu_seconds(ours)
        with MemorySampler(groups) as sampler:
            started = time.time()
            plan, verdict, phases, mapped = self.execute(case)
            wall = phases.pop("wall", time.time() - started)
        foreign = foreign_cpu_delta(foreign_before, foreign_cpu_seconds(ours))
        counters = self.server.counters()
        writes_after = settled_table_writes(self.admin_url, self.imrt_db)
        rest, graphql, git = split_counters(counters)
        swept = self.options.settings.get("gitlab_listing", "graphql") != "rest"
        problems = expected_plan_problems(case, plan, size_now, nightly_counts_, first=first, swept=swept)
        memory = {
            ("airflow" if self.mode == "dag" else "process") if k == "own" else k: v for k, v in sampler.peaks.items()
        }
        snapshot = imrt_snapshot(self.imrt_url)
        assert self.references is not None
        return CaseResult(
            size=self.size,
            case=case,
            mode=self.mode,
            wall=wall,
            status=verdict.get("status", "?"),
            expectation="ok" if not problems else "; ".join(problems),
            listed=int(plan.get("total_ids", size_now)),
            changed=changed,
            rest=rest,
            graphql=graphql,
            git=git,
            rows=writes_delta(writes_before, writes_after),
            mapped_tis=mapped,
            memory=memory,
            phases=phases,
            fingerprint=imrt_snapshot_module.digest(snapshot),
            reference=self.references.compare(self, snapshot),
            load=(load_start, os.getloadavg()[0]),
            foreign_cpu=foreign,
        )


class DirectRunner(ModeRunner):
    """The pipeline functions called in this process, sync units on a thread pool as wide as the parallelism."""

    mode = "direct"

    def own_pids(self) -> set[int]:
        others = (self.server.pids() if self.server else set()) | postmaster_pids(self.pgdata)
        return with_children(os.getpid()) - others

    def execute(self, case: str) -> tuple[dict, dict, dict[str, float], int | None]:
        assert self.server is not None
        plan, verdict, phases = direct_run(self.options, self.server.url, self.imrt_url, self.work / "git-cache", case)
        return plan, verdict, phases, None


def run_settings(options: Options, gitlab_url: str, git_cache: Path):
    """The settings of a run in this process, as the DAG's tasks read them from the stack's variables: (SyncSettings,
    GitLabSettings); ``options.settings`` (``--setting``) on top."""
    from imrt_sync.config import GitLabSettings, SyncSettings

    settings = SyncSettings(
        group=GROUP,
        webhook_url=WEBHOOK_URL,
        webhook_secret=WEBHOOK_SECRET,
        map_bound=options.map_bound,
        batch_size=options.batch_size,
        concurrency=options.concurrency,
        git_cache_dir=git_cache,
        **typed_settings(options.settings),
    )
    return settings, GitLabSettings(base_url=gitlab_url, token=TOKEN, allow_http=True)


def typed_settings(raw: Mapping[str, str]) -> dict[str, object]:
    """``--setting`` values (``imrt_<name>`` variables) typed as ``SyncSettings``'s defaults; a name this checkout's
    ``SyncSettings`` does not have is an error (a benchmark of a setting that is silently ignored measures nothing)."""
    from imrt_sync.config import SyncSettings, field_defaults

    defaults = field_defaults(SyncSettings)
    typed: dict[str, object] = {}
    for name, value in raw.items():
        if name not in defaults:
            raise ValueError(f"--setting {name}: SyncSettings has no field {name!r} in this checkout")
        default = defaults[name]
        if isinstance(default, bool):
            typed[name] = value.lower() in ("1", "true", "yes")
        elif isinstance(default, (int, float)):
            typed[name] = type(default)(value)
        else:
            typed[name] = value
    return typed


def direct_run(
    options: Options, gitlab_url: str, imrt_url, git_cache: Path, case: str, *, create_hooks: bool = True
) -> tuple[dict, dict, dict[str, float]]:
    """One run of ``case`` through the run protocol the DAG's tasks call (``imrt_sync.pipeline``), in this process,
    sync units on a thread pool as wide as the parallelism: (plan, verdict, phases). ``create_hooks`` False: the
    hooks step is left out (a reference sync must not change the bank's hooks)."""
    import sqlalchemy as sa

    from imrt_sync import pipeline
    from imrt_sync.config import RunParams
    from imrt_sync.contracts import RunContext, RunResults, no_webhooks
    from imrt_sync.schema_migrations import prepare_database

    settings, gitlab_settings = run_settings(options, gitlab_url, git_cache)
    run = RunContext(f"bench__{case}__{time.time_ns()}", RunParams(mode=CASE_MODE[case]))
    spans: dict[str, list[tuple[float, float]]] = {}
    started = time.time()
    # As the DAG's tasks build theirs (imrt_compat.engine.task_engine): psycopg 3, pre-ping.
    engine = sa.create_engine(
        imrt_url,
        pool_pre_ping=True,
        pool_size=max(4, options.parallelism),
        connect_args={"connect_timeout": 10},
    )

    def timed(task_id: str, call):
        """``call()``, its span recorded under ``task_id`` (as the DAG's task instance of that name would be)."""
        mark = time.time()
        try:
            return call()
        finally:
            spans.setdefault(task_id, []).append((mark, time.time()))

    try:
        prepare_database(engine)
        planned = timed(LIST_IDS, lambda: pipeline.open_run(run, engine, lambda: (settings, gitlab_settings)))
        with pipeline.Services.open(settings, gitlab_settings, engine) as services:
            with ThreadPoolExecutor(max_workers=options.parallelism) as pool:
                outcomes = list(
                    pool.map(
                        lambda unit: timed(SYNC, lambda: pipeline.sync_unit(services, unit, run.params)),
                        planned["units"],
                    )
                )
            hooks = no_webhooks()
            if create_hooks:
                hooks = timed(
                    DISPATCH_WEBHOOKS, lambda: pipeline.dispatch_webhooks(services, planned["plan"], run.params)
                )
            results = RunResults(planned["plan"], planned["units"], outcomes, hooks)
            verdict = timed(SUMMARY, lambda: pipeline.close_run(services, run, results))
    finally:
        engine.dispose()
    wall = time.time() - started
    return planned["plan"], verdict, {"wall": wall, **task_phases(wall, spans)}


class DagRunner(ModeRunner):
    """The DAG under the real scheduler; each case one run triggered through the REST API."""

    mode = "dag"

    def __init__(self, *args, hooks_to_stack: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.stack = None
        # True: the project hooks IMRT creates point at this stack's /webHook (the push-latency case), so that a push
        # reaches the receiver; else at WEBHOOK_URL, which no one answers (no push is made in the other cases).
        self.hooks_to_stack = hooks_to_stack
        self.webhook_url = WEBHOOK_URL

    def setup(self) -> None:
        from ..airflow_stack import free_port
        from ..postgres import ensure_database
        from ..project import prepare_imrt_database, project_stack, sync_environment

        assert self.server is not None
        home = self.work / "airflow"
        shutil.rmtree(home, ignore_errors=True)
        metadata_url = ensure_database(self.admin_url, f"bench_airflow_{self.size}", recreate=True)
        prepare_imrt_database(self.imrt_url)
        api_port = free_port() if self.hooks_to_stack else None
        if api_port is not None:
            self.webhook_url = f"http://127.0.0.1:{api_port}/webHook"
        env = sync_environment(
            gitlab_url=self.server.url,
            gitlab_token=TOKEN,
            group=GROUP,
            imrt_url=self.imrt_url,
            git_cache_dir=self.work / "git-cache",
            webhook_url=self.webhook_url,
            webhook_secret=WEBHOOK_SECRET,
        )
        env.update(
            {
                "AIRFLOW_VAR_IMRT_CONCURRENCY": str(self.options.concurrency),
                "AIRFLOW_VAR_IMRT_MAP_BOUND": str(self.options.map_bound),
                "AIRFLOW_VAR_IMRT_BATCH_SIZE": str(self.options.batch_size),
                **{f"AIRFLOW_VAR_IMRT_{name.upper()}": value for name, value in self.options.settings.items()},
                # No scheduled run: every measured run is a REST-triggered one, alone (see the module doc).
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            }
        )
        self.stack = project_stack(home, metadata_url, env, parallelism=self.options.parallelism, api_port=api_port)
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

    def _xcom(self, run_id: str, slot: XComSlot):
        response = self.stack.api("GET", slot.rest_path(run_id))
        if response.status_code != 200:
            return None
        return slot.rest_value(response.json())

    def execute(self, case: str) -> tuple[dict, dict, dict[str, float], int | None]:
        started = time.time()
        run_id = self.trigger(case)
        return self.finish(run_id, started)

    def trigger(self, case: str) -> str:
        """Start one run of ``case`` through the REST API; its run id."""
        return self.stack.trigger(DAG_ID, {"mode": CASE_MODE[case]})

    def finish(self, run_id: str, started: float) -> tuple[dict, dict, dict[str, float], int | None]:
        """Wait for the run to end; (plan, verdict, phases with the wall time from ``started``, mapped TIs)."""
        stack = self.stack
        deadline = time.monotonic() + self.options.run_timeout
        # The wall time is the run's end_date, so polling only has to notice the end. GET dagRun costs the API server
        # ~70 ms of CPU on a run with 250 mapped instances (it loads every instance's DAG version), so the run is
        # watched through its last task instance (cheap) and read only once that one has ended.
        summary = f"/api/v2/dags/{DAG_ID}/dagRuns/{url_segment(run_id)}/taskInstances/{SUMMARY}"
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
        plan = self._xcom(run_id, PLAN) or {}
        verdict = self._xcom(run_id, VERDICT) or {"status": f"run {run['state']}"}
        if run["state"] != "success" and verdict.get("status") == "COMPLETED":
            verdict = {**verdict, "status": f"COMPLETED but run {run['state']}"}
        mapped = [ti for ti in tis if ti["task_id"] == SYNC and ti["map_index"] >= 0]
        wall = ended - started
        return plan, verdict, {"wall": wall, **task_phases(wall, task_spans(tis))}, len(mapped)


_ENDED_TI_STATES = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})


def _timestamp(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def task_spans(tis: Sequence[Mapping]) -> dict[str, list[tuple[float, float]]]:
    """The (start, end) of each ended task instance, by task id (the REST API's ``start_date``/``end_date``)."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for ti in tis:
        start, end = _timestamp(ti.get("start_date")), _timestamp(ti.get("end_date"))
        if start and end and ti["task_id"] in TASK_IDS:
            spans.setdefault(ti["task_id"], []).append((start, end))
    return spans
