"""The command: options, the soak's phases in order (stack, first sync, actions, quiescence and the final run,
comparison) and the exit status (1 when any count is not 0)."""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import __doc__ as SOAK_DESCRIPTION
from .bankrest import BankRest
from .compare import compare, read_rows
from .gitclient import DeveloperGit
from .journal import Journal
from .latency import RowWatcher, push_latencies, summarize
from .oracle import read_bank
from .quiesce import quiesce
from .report import SoakResult, render, tree_state
from .row_history import went_back, wrong_deletions
from .schedule import run_actions
from .stack import GROUP, StackOptions, first_sync, remove_work_dir, soak_stack
from .unseen import EndState, Unseen, classify_unseen
from .world import World

JOURNAL_FILE = "soak-journal.txt"


@dataclass(frozen=True)
class SoakOptions:
    minutes: float
    seed: int
    items: int = 24
    subgroup_items: int = 3
    parallelism: int = 4
    quiesce_minutes: float = 4.0
    work_dir: Path | None = None  # None: a temporary directory, removed afterwards unless keep
    keep: bool = False
    admin_url: object = None  # PostgreSQL admin URL; None: an embedded server in the work directory


class PhaseClock:
    """Seconds per phase, for the report (the test keeps the whole soak within its budget)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = self._began = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = now - self._last
        self._last = now

    def with_total(self) -> dict[str, float]:
        return {**self.laps, "total": self._last - self._began}


def say(message: str) -> None:
    print(f"[soak] {message}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.soak",
        description=SOAK_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="how long actions go on (default 30)")
    parser.add_argument("--seed", type=int, default=None, help="the random seed (default: a new one, printed)")
    parser.add_argument("--items", type=int, default=24, help="generated items in the group (default 24)")
    parser.add_argument("--subgroup-items", type=int, default=3, help="generated items in a subgroup (default 3)")
    parser.add_argument("--parallelism", type=int, default=4, help="Airflow [core] parallelism (default 4)")
    parser.add_argument(
        "--quiesce-minutes",
        type=float,
        default=4.0,
        help="deadline for each wait of quiescence and for the final run (default 4)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="work directory (default: a temporary one, removed at the end)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, bank, databases)")
    parser.add_argument(
        "--database-url", default=None, help="admin URL of a PostgreSQL server to use instead of an embedded one"
    )
    return parser


def options_from(args: argparse.Namespace) -> SoakOptions:
    return SoakOptions(
        minutes=args.minutes,
        seed=args.seed if args.seed is not None else secrets.randbelow(10**6),
        items=args.items,
        subgroup_items=args.subgroup_items,
        parallelism=args.parallelism,
        quiesce_minutes=args.quiesce_minutes,
        work_dir=args.data_dir,
        keep=args.keep,
        admin_url=args.database_url,
    )


def run_soak(options: SoakOptions, work_dir: Path, log=say) -> SoakResult:
    """The whole soak on a stack built in ``work_dir``; the result, not yet printed."""
    log(f"seed {options.seed} (replay: --seed {options.seed}); {options.minutes:g} min of actions; work dir {work_dir}")
    stack_options = StackOptions(
        work_dir, options.seed, options.items, options.subgroup_items, options.parallelism, options.admin_url
    )
    clock = PhaseClock()
    with soak_stack(stack_options, log) as stack:
        clock.lap("stack start")
        run_id, state = first_sync(stack)
        clock.lap("first sync")
        log(f"first sync {run_id}: {state}")
        journal = Journal()
        rest = BankRest(stack.server.url, stack.tokens.root)
        world = World(
            stack,
            random.Random(options.seed),
            journal,
            DeveloperGit(stack.server.url, stack.tokens.developer, work_dir),
            rest,
            ends_at=journal.started + options.minutes * 60,
        )
        locate = lambda project_id: (stack.bank.find_project(project_id) or {}).get("path_with_namespace")  # noqa: E731
        try:
            with RowWatcher(stack.imrt, locate) as watcher:
                run_actions(world, log)
                clock.lap("actions")
                log(f"actions over after {journal.elapsed():.0f} s: quiescence")
                quiet = quiesce(world, options.quiesce_minutes * 60, log)
                clock.lap("quiescence and final run")
        finally:
            rest.close()
        project_id_of = lambda path: (stack.bank.find_project(path) or {}).get("id")  # noqa: E731
        expected = read_bank(stack.repos_dir, GROUP, project_id_of)
        rows = read_rows(stack.imrt)
        comparison = compare(expected, rows)
        _, never_seen = push_latencies(journal.pushes, watcher.first_seen)
        unseen = classify_unseen(never_seen, journal, EndState.of(expected, rows))
        clock.lap("comparison")
        write_journal(journal, work_dir, unseen)
        return SoakResult(
            seed=options.seed,
            minutes=options.minutes,
            tree=tree_state(),
            first_sync=f"{run_id}: {state}",
            journal=journal,
            latency=summarize(journal.pushes, watcher.first_seen),
            quiet=quiet,
            comparison=comparison,
            malformed_heads=dict(world.malformed),
            wrong_deletions=wrong_deletions(watcher.vanished, journal),
            went_back=went_back(watcher.moves, journal.pushes, journal),
            unseen=unseen,
            timings=clock.with_total(),
        )


def main(argv: list[str] | None = None) -> int:
    options = options_from(build_parser().parse_args(argv))
    work_dir = (options.work_dir or Path(tempfile.mkdtemp(prefix="imrt-soak-"))).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    kept = options.keep or options.work_dir is not None
    try:
        result = run_soak(options, work_dir)
        if kept:
            say(f"journal of every action: {work_dir / JOURNAL_FILE}")
    finally:
        if kept:
            say(f"work directory kept: {work_dir}")
        else:
            remove_work_dir(work_dir)
    print(render(result), flush=True)
    return 0 if result.passed else 1


def write_journal(journal: Journal, work_dir: Path, unseen: list[Unseen]) -> Path:
    """Every action, one per line, then every push never seen in a row with its reason, in the work directory (kept
    with --keep or --data-dir)."""
    path = work_dir / JOURNAL_FILE
    lines = [entry.line() for entry in journal.entries]
    lines += [f"never seen in a row: {u.describe()}" for u in unseen]
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
