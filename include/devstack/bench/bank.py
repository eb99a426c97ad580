"""The benchmark's item banks: generated once and copied per mode, changed for case (b), served by the item bank
server in its own process."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .cases import GROUP, SEED, TOKEN, nightly_counts
from .probes import with_children
from .report import say


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
                [
                    sys.executable,
                    "-m",
                    "itembank_server",
                    "serve",
                    "--root",
                    str(self.root),
                    "--port",
                    "0",
                    "--group",
                    GROUP,
                    "--token",
                    TOKEN,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
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
        return with_children(self.process.pid if self.process else None)

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
    """The changed, unhooked and deleted projects of case (b). The unhooked ones are among the changed ones: a hook
    that broke shows when a push goes undelivered, which is the evidence the sweep acts on."""
    counts = nightly_counts(size)
    c, u, d = counts["changed"], counts["unhooked"], counts["deleted"]
    picked = random.Random(f"nightly-{size}").sample(sorted(project_ids), c + d)
    return Nightly(tuple(sorted(picked[:c])), tuple(sorted(picked[:u])), tuple(sorted(picked[c:])))


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
                pid,
                files=files,
                message="Nightly edit (benchmark)",
                author_name="Bench B",
                author_email="bench@example.org",
                committed_at=datetime(2026, 2, 1, 3, 0, tzinfo=UTC),
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
