"""What the benchmark measures beside the wall time: memory (PSS), other processes' CPU, rows written, the imrt
snapshot; and the pids of the processes it measures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .. import imrt_snapshot as imrt_snapshot_module


def pss_bytes(pid: int) -> int | None:
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


def with_children(pid: int | None) -> set[int]:
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
            except Exception:
                continue
            seen |= pids
            size = sum(filter(None, (pss_bytes(pid) for pid in pids)))
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

    from ..postgres import sqlalchemy_url

    engine = sa.create_engine(sqlalchemy_url(admin_url, database), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS n FROM pg_stat_user_tables")
            )
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


def postmaster_pids(pgdata: Path) -> set[int]:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return set()
    return with_children(pid)
