"""``python -m devstack.locks``: regenerate the two dependency locks from their ``.in`` files.

* ``requirements.txt``, the runtime lock (what the project image installs over the official Airflow image): the
  pins of ``requirements.in`` plus every distribution that installing it adds to, or changes in, a clean install of
  apache-airflow alone. What Airflow brings itself stays out, so the image keeps the versions its own constraints
  chose for it.
* ``requirements-dev.txt``, the development and test lock (what ``make install`` installs): ``-r requirements.txt``
  plus every other distribution of a clean install of ``requirements-dev.in``, Airflow's own dependencies included,
  so a development environment is the same everywhere.

Each lock is resolved in a scratch virtual environment, which must pass ``pip check``. The comment block at the top
of each lock file is kept. Standard library only: it runs before the development environment exists.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_IN = REPO_ROOT / "requirements.in"
RUNTIME_LOCK = REPO_ROOT / "requirements.txt"
DEV_IN = REPO_ROOT / "requirements-dev.in"
DEV_LOCK = REPO_ROOT / "requirements-dev.txt"
INCLUDE_RUNTIME_LOCK = "-r requirements.txt"

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)$")


def canonical_name(name: str) -> str:
    """The PEP 503 normalized form of a distribution name (``GitPython`` and ``gitpython`` are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a requirements file: comments and blank lines dropped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def read_pins(path: Path) -> dict[str, str]:
    """Canonical name -> pin line for every ``name==version`` line of a requirements file (``-r`` not followed)."""
    pins = {}
    for line in requirement_lines(path):
        match = PIN.match(line)
        if match:
            pins[canonical_name(match["name"])] = line
    return pins


def header(path: Path) -> list[str]:
    """The comment block at the top of a file (kept when the file is regenerated)."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    block = []
    for line in lines:
        if not line.startswith("#"):
            break
        block.append(line)
    return block


def resolve(workdir: Path, name: str, pip_args: list[str]) -> dict[str, str]:
    """Install ``pip_args`` into a new scratch venv, check it, and return its pins (canonical name -> line)."""
    target = workdir / name
    venv.create(target, with_pip=True, clear=True)
    python = str(target / "bin" / "python")
    # Only the scratch venv: no PYTHONPATH (`make lock` sets it to include/, whose egg-info pip would list) and
    # the scratch directory as working directory (`python -m` puts it on the path).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    def pip(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([python, "-m", "pip", *args], check=True, cwd=workdir, env=env, **kwargs)

    pip("install", "--quiet", *pip_args)
    pip("check")
    frozen = pip("freeze", capture_output=True, text=True).stdout
    pins = {}
    for line in frozen.splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[canonical_name(match["name"])] = line.strip()
    return pins


def airflow_pin(requirements_in: Path) -> str:
    """The ``apache-airflow==X`` line of the runtime requirements."""
    return read_pins(requirements_in)["apache-airflow"]


def runtime_pins(airflow_alone: dict[str, str], runtime: dict[str, str], direct: set[str]) -> dict[str, str]:
    """The runtime lock's pins: the direct requirements, and what they add to or change in Airflow alone."""
    return {
        name: line
        for name, line in runtime.items()
        if name in direct or airflow_alone.get(name) != line
    }


def dev_pins(dev: dict[str, str], runtime_lock: dict[str, str]) -> dict[str, str]:
    """The dev lock's own pins: everything installed that the runtime lock (included by ``-r``) does not pin."""
    return {name: line for name, line in dev.items() if name not in runtime_lock}


def write_lock(path: Path, pins: dict[str, str], includes: list[str] = ()) -> None:
    lines = [*header(path), *includes, *sorted(pins.values(), key=str.lower)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def lock_runtime(workdir: Path) -> dict[str, str]:
    airflow_alone = resolve(workdir, "airflow", [airflow_pin(RUNTIME_IN)])
    runtime = resolve(workdir, "runtime", ["-r", str(RUNTIME_IN)])
    direct = {canonical_name(re.split(r"[<>=!~\[; ]", line, 1)[0]) for line in requirement_lines(RUNTIME_IN)}
    pins = runtime_pins(airflow_alone, runtime, direct)
    write_lock(RUNTIME_LOCK, pins)
    return pins


def lock_dev(workdir: Path) -> dict[str, str]:
    dev = resolve(workdir, "dev", ["-r", str(DEV_IN)])
    pins = dev_pins(dev, read_pins(RUNTIME_LOCK))
    write_lock(DEV_LOCK, pins, includes=[INCLUDE_RUNTIME_LOCK])
    return pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.locks", description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=("runtime", "dev", "all"), nargs="?", default="all")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="imrt-lock-") as scratch:
        if args.which in ("runtime", "all"):
            print(f"requirements.txt: {len(lock_runtime(Path(scratch)))} pins")
        if args.which in ("dev", "all"):
            print(f"requirements-dev.txt: {len(lock_dev(Path(scratch)))} pins beyond requirements.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
