"""``python -m devstack.locks`` (``make lock``): regenerate the two dependency locks, hashed, with pip-tools.

One resolution for the image and the tests:

* ``requirements.txt``, the runtime lock: ``pip-compile --generate-hashes`` of ``requirements.in``. It names every
  distribution of the image's Python environment (Airflow, its providers, everything they depend on), each pinned
  with the sha256 of every file of its release. The image installs it with ``--require-hashes``, and the Airflow
  stand-in installs Airflow under it (``deploy/base-images/airflow``).
* ``requirements-dev.txt``, the development and test lock: ``pip-compile --generate-hashes`` of
  ``requirements-dev.in``, whose first line ``-r requirements.txt`` makes each runtime pin a requirement: it holds every
  runtime pin unchanged (version and hashes, checked here) plus the tools of the tests and the dev stack.
  ``make install`` installs it with ``--require-hashes``.

Pins already in the locks are kept unless ``--upgrade`` (everything) or ``--upgrade-package NAME`` says otherwise
(pip-compile's rules). pip-compile runs in a scratch virtual environment with pinned pip and pip-tools; each new lock
is then installed alone, with ``--require-hashes``, into a scratch environment that must pass ``pip check`` and whose
``pip freeze --all`` must equal the lock (pip, setuptools and wheel aside). Nothing is written unless both locks pass.
The comment block at the top of each lock file is kept. Standard library only: it runs before the development
environment exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_IN = REPO_ROOT / "requirements.in"
RUNTIME_LOCK = REPO_ROOT / "requirements.txt"
DEV_IN = REPO_ROOT / "requirements-dev.in"
DEV_LOCK = REPO_ROOT / "requirements-dev.txt"
INCLUDE_RUNTIME_LOCK = "-r requirements.txt"

# The pip of the images (deploy/base-images: python's PIP_VERSION, airflow's AIRFLOW_PIP_VERSION) and the pip-tools
# that resolves with it.
PIP_VERSION = "26.1.2"
PIP_TOOLS_VERSION = "7.6.2"
PIP_COMPILE_OPTIONS = (
    "--generate-hashes",  # every file of each pinned release, so any platform's wheel verifies
    "--allow-unsafe",  # pip and setuptools too, should anything require them
    "--strip-extras",  # a lock usable as a constraints file (the Airflow stand-in's)
    "--no-header",  # the lock's own comment block is kept instead
    "--no-emit-index-url",
    "--no-emit-find-links",
    "--no-emit-trusted-host",
    "--quiet",
)
# The Python of the image (apache/airflow:3.3.2-python3.11): the locks are resolved for it.
IMAGE_PYTHON = (3, 11)
# Installed by venv/ensurepip and left out by `pip freeze`: not locked unless something requires them.
ENVIRONMENT_TOOLS = frozenset({"pip", "setuptools", "wheel", "distribute"})

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)(?P<options>(?:\s+--hash=\S+)*)$")
HASH_OPTION = re.compile(r"^--hash=(?P<hash>sha256:[0-9a-f]{64})$")
COMMENT = re.compile(r"(^|\s)#.*$")
FROZEN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:==(?P<version>\S+)| @ (?P<url>\S+))$")


class LockError(RuntimeError):
    """A lock that cannot be read, or a resolution that fails its checks."""


@dataclass(frozen=True)
class Pin:
    name: str  # as the lock spells it
    version: str
    hashes: tuple[str, ...]  # "sha256:<hex>", sorted

    @property
    def line(self) -> str:
        return f"{self.name}=={self.version}"


def canonical_name(name: str) -> str:
    """The PEP 503 normalized form of a distribution name (``GitPython`` and ``gitpython`` are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def logical_lines(text: str) -> list[str]:
    """The lines of a requirements file as pip reads them: backslash continuations joined, comments dropped (a
    comment line also ends a continuation, as in pip), blank lines dropped."""
    lines: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        joined = " ".join(part for part in pending if part)
        pending.clear()
        if joined:
            lines.append(joined)

    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            flush()
            continue
        line = COMMENT.sub("", raw).strip()
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
        else:
            pending.append(line)
            flush()
    flush()
    return lines


def requirement_lines(path: Path) -> list[str]:
    """The requirement and option lines of a requirements file (``.in`` or lock), as pip reads them."""
    return logical_lines(path.read_text(encoding="utf-8"))


def parse_pin(line: str) -> Pin:
    match = PIN.match(line)
    if not match:
        raise LockError(f"not an exact pin: {line}")
    hashes = []
    for option in match["options"].split():
        hashed = HASH_OPTION.match(option)
        if not hashed:
            raise LockError(f"not a sha256 hash: {option} ({match['name']})")
        hashes.append(hashed["hash"])
    return Pin(match["name"], match["version"], tuple(sorted(hashes)))


def parse_lock(path: Path, *, strict: bool = True) -> dict[str, Pin]:
    """Canonical name -> pin of every line of a lock. ``strict``: every line must be ``name==version`` with its
    hashes, and no distribution twice; otherwise option lines (``-r ...``) and loose lines are skipped."""
    pins: dict[str, Pin] = {}
    for line in requirement_lines(path):
        try:
            pin = parse_pin(line)
        except LockError as error:
            if strict:
                raise LockError(f"{path.name}: {error}") from None
            continue
        key = canonical_name(pin.name)
        if key in pins and strict:
            raise LockError(f"{path.name}: {pin.name} pinned twice")
        pins.setdefault(key, pin)
    return pins


def read_pins(path: Path) -> dict[str, str]:
    """Canonical name -> ``name==version`` for every pin of a requirements file (``-r`` not followed)."""
    return {key: pin.line for key, pin in parse_lock(path, strict=False).items()}


def unhashed(pins: dict[str, Pin]) -> list[str]:
    return sorted(pin.name for pin in pins.values() if not pin.hashes)


def shared_pin_differences(runtime: dict[str, Pin], dev: dict[str, Pin]) -> list[str]:
    """How the dev lock departs from the runtime lock on the distributions of the runtime lock (it must hold each
    of them at the same version with the same hashes)."""
    differences = []
    for key, pin in sorted(runtime.items()):
        other = dev.get(key)
        if other is None:
            differences.append(f"{pin.name}: {pin.version} in requirements.txt, missing from requirements-dev.txt")
        elif other.version != pin.version:
            differences.append(
                f"{pin.name}: {pin.version} in requirements.txt, {other.version} in requirements-dev.txt"
            )
        elif other.hashes != pin.hashes:
            differences.append(f"{pin.name}: other hashes in requirements-dev.txt than in requirements.txt")
    return differences


def frozen_versions(freeze: str) -> tuple[dict[str, str], dict[str, str]]:
    """``pip freeze`` output -> (canonical name -> version of each ``name==version`` line, canonical name -> URL of
    each ``name @ url`` line). Comments and editable lines are skipped."""
    versions: dict[str, str] = {}
    urls: dict[str, str] = {}
    for line in freeze.splitlines():
        match = FROZEN.match(line.strip())
        if not match:
            continue
        if match["version"]:
            versions[canonical_name(match["name"])] = match["version"]
        else:
            urls[canonical_name(match["name"])] = match["url"]
    return versions, urls


def environment_differences(
    lock: dict[str, Pin], installed: dict[str, str], also_installed: set[str] = frozenset()
) -> list[str]:
    """How an installed environment (canonical name -> version) departs from a lock: a locked distribution missing
    or at another version, or an installed one the lock does not name (pip, setuptools, wheel and ``also_installed``
    aside)."""
    differences = []
    for key, pin in sorted(lock.items()):
        version = installed.get(key)
        if version is None:
            differences.append(f"{pin.name}: locked {pin.version}, not installed")
        elif version != pin.version:
            differences.append(f"{pin.name}: locked {pin.version}, installed {version}")
    for key in sorted(set(installed) - set(lock) - ENVIRONMENT_TOOLS - set(also_installed)):
        differences.append(f"{key}: installed {installed[key]}, not in the lock")
    return differences


def header(path: Path) -> list[str]:
    """The comment block at the top of a file (kept when the file is regenerated)."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    block = []
    for line in lines:
        if not line.startswith("#"):
            break
        block.append(line)
    return block


def render_pins(pins: dict[str, Pin]) -> str:
    """Pins in pip-compile's hashed format (no annotations): a seed for pip-compile's existing pins."""
    blocks = []
    for pin in sorted(pins.values(), key=lambda pin: canonical_name(pin.name)):
        blocks.append(" \\\n    ".join([pin.line, *(f"--hash={digest}" for digest in pin.hashes)]))
    return "\n".join(blocks) + "\n"


# ------------------------------------------------------------------------------------------------ running pip


def scrubbed_environment() -> dict[str, str]:
    """This environment without PYTHONPATH (`make lock` sets it to include/, whose egg-info pip would list)."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def scratch_venv(target: Path) -> Path:
    """A new virtual environment with the images' pip; returns its python."""
    venv.create(target, with_pip=True, clear=True)
    python = target / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"pip=={PIP_VERSION}"],
        check=True,
        cwd=target,
        env=scrubbed_environment(),
    )
    return python


def pip_compile(tools: Path, workdir: Path, source: str, output: str, extra: list[str]) -> None:
    """pip-compile ``source`` into ``output``, both in ``workdir`` (so annotations name the repository's files)."""
    command = [str(tools / "bin" / "pip-compile"), *PIP_COMPILE_OPTIONS, *extra, "--output-file", output, source]
    subprocess.run(command, check=True, cwd=workdir, env=scrubbed_environment())


def check_installs_alone(workdir: Path, name: str, lock: Path) -> None:
    """Install ``lock`` alone, with --require-hashes, into a scratch venv: pip check clean, pip freeze = the lock."""
    python = scratch_venv(workdir / f"verify-{name}")
    env = scrubbed_environment()

    def pip(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-m", "pip", *args], cwd=workdir, env=env, text=True, **kwargs)

    pip("install", "--quiet", "--require-hashes", "-r", str(lock), check=True)
    checked = pip("check", capture_output=True)
    if checked.returncode != 0:
        raise LockError(f"{lock.name}: pip check failed:\n{checked.stdout}{checked.stderr}")
    versions, urls = frozen_versions(pip("freeze", "--all", capture_output=True, check=True).stdout)
    differences = environment_differences(parse_lock(lock), versions)
    differences += [f"{key}: installed from {url}" for key, url in urls.items()]
    if differences:
        raise LockError(f"{lock.name}: a clean install is not the lock:\n  " + "\n  ".join(differences))


# ------------------------------------------------------------------------------------------------ the locks


def lock(upgrade: bool = False, upgrade_packages: tuple[str, ...] = (), verify: bool = True) -> tuple[int, int]:
    """Regenerate both locks; returns their numbers of pins."""
    with tempfile.TemporaryDirectory(prefix="imrt-lock-") as scratch:
        scratch = Path(scratch)
        tools = scratch / "pip-tools"
        python = scratch_venv(tools)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"pip-tools=={PIP_TOOLS_VERSION}"],
            check=True,
            cwd=scratch,
            env=scrubbed_environment(),
        )
        work = scratch / "compile"
        work.mkdir()
        for source in (RUNTIME_IN, DEV_IN):
            shutil.copy(source, work / source.name)
        # pip-compile keeps the pins (and reuses the hashes) of its output file: seed it with the current locks.
        current = (
            {**parse_lock(DEV_LOCK, strict=False), **parse_lock(RUNTIME_LOCK, strict=False)}
            if RUNTIME_LOCK.exists() and DEV_LOCK.exists()
            else {}
        )
        extra = ["--upgrade"] if upgrade else []
        for package in upgrade_packages:
            extra += ["--upgrade-package", package]

        (work / RUNTIME_LOCK.name).write_text(render_pins(current))
        pip_compile(tools, work, RUNTIME_IN.name, RUNTIME_LOCK.name, extra)
        runtime = parse_lock(work / RUNTIME_LOCK.name)

        # The dev resolution starts from the new runtime lock: its pins are requirements (-r requirements.txt).
        seed = {**{key: pin for key, pin in current.items() if key not in runtime}, **runtime}
        (work / DEV_LOCK.name).write_text(render_pins(seed))
        pip_compile(tools, work, DEV_IN.name, DEV_LOCK.name, extra)
        dev = parse_lock(work / DEV_LOCK.name)

        problems = [
            f"unhashed in {path}: {names}"
            for path, names in ((RUNTIME_LOCK.name, unhashed(runtime)), (DEV_LOCK.name, unhashed(dev)))
            if names
        ]
        problems += shared_pin_differences(runtime, dev)
        if problems:
            raise LockError("the new locks disagree:\n  " + "\n  ".join(problems))
        if verify:
            check_installs_alone(scratch, "runtime", work / RUNTIME_LOCK.name)
            check_installs_alone(scratch, "dev", work / DEV_LOCK.name)
        for target in (RUNTIME_LOCK, DEV_LOCK):
            body = (work / target.name).read_text(encoding="utf-8")
            target.write_text("\n".join([*header(target), body.rstrip("\n")]) + "\n", encoding="utf-8")
        return len(runtime), len(dev)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.locks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--upgrade", action="store_true", help="re-resolve every pin to the newest allowed version")
    parser.add_argument(
        "--upgrade-package",
        action="append",
        default=[],
        metavar="NAME",
        help="re-resolve this distribution (NAME or NAME==VERSION), keeping the other pins; repeatable",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip installing each new lock into a scratch venv (pip check, pip freeze = lock)",
    )
    args = parser.parse_args(argv)
    if sys.version_info[:2] != IMAGE_PYTHON:
        print(
            f"make lock: resolve with Python {'.'.join(map(str, IMAGE_PYTHON))}, the image's (markers differ between "
            f"versions), e.g. make lock PYTHON=python3.11; this is {sys.version.split()[0]}",
            file=sys.stderr,
        )
        return 2
    try:
        runtime, dev = lock(args.upgrade, tuple(args.upgrade_package), verify=not args.no_verify)
    except (LockError, subprocess.CalledProcessError) as error:
        print(f"make lock: {error}", file=sys.stderr)
        return 1
    print(
        f"requirements.txt: {runtime} pins; requirements-dev.txt: {dev} pins ({dev - runtime} beyond the runtime lock)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
