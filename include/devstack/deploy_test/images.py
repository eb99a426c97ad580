"""The images: stand-ins for the base images no registry can give us here (``deploy/base-images/``), then the
project's own images, built by ``docker-compose build`` from the compose file's ``build`` sections.

Each build's output goes to ``<work>/logs/build-<name>.log``; Docker's layer cache makes a second run cheap.
"""

from __future__ import annotations

import functools
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.locks import read_pins

from . import engine

DEBIAN = "debian:bookworm-slim"
PYTHON = "python:3.11-slim-bookworm"
POSTGRES = "postgres:16"
STATSD_EXPORTER = "prom/statsd-exporter:v0.28.0"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_LOCAL_CAS = Path("/usr/local/share/ca-certificates")
HOST_APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)(?P<marker>\s*;[^\\#]*)?"
)
# The compose services whose `build` sections make the project's images (one per image).
COMPOSE_BUILDS = ("airflow-init", "itembank", "mailsink", "proxy", "idp")


@dataclass(frozen=True)
class Built:
    name: str
    seconds: float
    cached: bool  # nothing rebuilt (the image existed and was kept)


def airflow_tag(root: Path) -> str:
    version = read_pins(root / "requirements.txt")["apache-airflow"].split("==")[1]
    return f"apache/airflow:{version}-python3.11"


def debian_mirror() -> str:
    text = HOST_APT_SOURCES.read_text() if HOST_APT_SOURCES.exists() else ""
    match = re.search(r"^URIs:\s*(\S+)", text, re.MULTILINE)
    return match.group(1) if match else "http://deb.debian.org/debian"


def build_debian_base(work_dir: Path, log: Path) -> None:
    """debootstrap (minbase) bookworm from this machine's Debian mirror, with this machine's apt sources and its
    CA certificates (downloads from containers go through its HTTPS interception), imported as debian:bookworm-slim."""
    rootfs = work_dir / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    with log.open("w") as out:
        result = engine.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), debian_mirror()], timeout=900, check=False
        )
        out.write(result.stdout or "")
    if result.returncode != 0:
        raise engine.EngineError(f"debootstrap failed; see {log}")
    if HOST_APT_SOURCES.exists():
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        shutil.copy(HOST_APT_SOURCES, rootfs / "etc/apt/sources.list.d/debian.sources")
    (rootfs / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
    shutil.copy(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    local = rootfs / "usr/local/share/ca-certificates"
    local.mkdir(parents=True, exist_ok=True)
    for certificate in HOST_LOCAL_CAS.glob("*.crt"):
        shutil.copy(certificate, local / certificate.name)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        for child in (rootfs / junk).glob("*"):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            elif child.name != "lock":
                child.unlink(missing_ok=True)
    changes = "--change 'CMD [\"bash\"]' --change 'ENV LANG=C.UTF-8'"
    tar = f"tar -C {rootfs} -c . | {engine.DOCKER} import {changes} - {DEBIAN}"
    engine.run(["bash", "-o", "pipefail", "-c", tar], timeout=600)
    shutil.rmtree(rootfs, ignore_errors=True)


def constraints_from_locks(root: Path) -> str:
    """The runtime lock as a plain pip constraints file, the stand-in's ``~/constraints.txt`` (the published image
    keeps Airflow's there): every ``name==version`` (with its marker) of requirements.txt; extras and hashes dropped,
    so that ``pip install -c ~/constraints.txt`` works without hash-checking mode (the dev lock holds the same
    pins)."""
    pins: dict[str, str] = {}
    for line in (root / "requirements.txt").read_text().splitlines():
        match = REQUIREMENT.match(line.strip())
        if match:
            key = re.sub(r"[-_.]+", "-", match["name"]).lower()
            pins.setdefault(key, f"{match['name']}=={match['version']}{(match['marker'] or '').rstrip()}")
    header = "# Written by devstack.deploy_test from requirements.txt (hashes dropped): do not edit.\n"
    return header + "\n".join(pins[key] for key in sorted(pins)) + "\n"


def airflow_context(root: Path, work_dir: Path) -> Path:
    """deploy/base-images/airflow plus the runtime lock, as it is (requirements.txt, hashed: Airflow is installed
    under it with --require-hashes), and its plain pins (constraints.txt, kept as ~/constraints.txt)."""
    context = work_dir / "contexts" / "airflow"
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(root / "deploy" / "base-images" / "airflow", context)
    shutil.copy(root / "requirements.txt", context / "requirements.txt")
    (context / "constraints.txt").write_text(constraints_from_locks(root))
    return context


def docker_build(tag: str, context: Path, log: Path, dockerfile: Path | None = None) -> None:
    args = ["build", "--tag", tag, *(["--file", str(dockerfile)] if dockerfile else []), str(context)]
    result = engine.run([engine.DOCKER, *args], env={"DOCKER_BUILDKIT": "0"}, timeout=1800, check=False)
    log.write_text(result.stdout or "")
    if result.returncode != 0:
        raise engine.EngineError(f"docker build {tag} failed; see {log}")


def timed(name: str, action: Callable[[], None], report: Callable[[str], None]) -> Built:
    started = time.monotonic()
    action()
    built = Built(name, time.monotonic() - started, cached=False)
    report(f"  built {name} in {built.seconds:.0f} s")
    return built


def build_base_images(root: Path, work_dir: Path, report: Callable[[str], None]) -> list[Built]:
    """The stand-ins, in dependency order. debian:bookworm-slim is made once (debootstrap); the others are
    `docker build`s, fast when nothing in their directory (or the locks, for Airflow's) changed."""
    logs = work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = root / "deploy" / "base-images"
    built = []
    if engine.image_exists(DEBIAN):
        built.append(Built(DEBIAN, 0.0, cached=True))
    else:
        built.append(timed(DEBIAN, lambda: build_debian_base(work_dir, logs / "build-debian.log"), report))
    steps = [
        (PYTHON, lambda: base / "python", "python"),
        (airflow_tag(root), lambda: airflow_context(root, work_dir), "airflow"),
        (POSTGRES, lambda: base / "postgres", "postgres"),
        (STATSD_EXPORTER, lambda: base / "statsd-exporter", "statsd-exporter"),
    ]
    for tag, context, name in steps:
        built.append(timed(tag, functools.partial(_build_in, tag, context, logs / f"build-{name}.log"), report))
    return built


def _build_in(tag: str, context: Callable[[], Path], log: Path) -> None:
    """``docker_build`` of the directory ``context()`` makes (timed with the build: Airflow's is assembled)."""
    docker_build(tag, context(), log)


def build_project_images(compose: engine.Compose, work_dir: Path, report: Callable[[str], None]) -> Built:
    """The project image (Dockerfile), the demo item bank, the mail sink, the proxy and the demo identity provider, as
    the compose files build them."""
    log = work_dir / "logs" / "build-compose.log"

    def build() -> None:
        result = engine.run(compose.command("build", *COMPOSE_BUILDS), timeout=1800, check=False, cwd=compose.root)
        log.write_text(result.stdout or "")
        if result.returncode != 0:
            raise engine.EngineError(f"docker-compose build failed; see {log}\n{(result.stdout or '')[-2000:]}")

    return timed("project images (docker-compose build)", build, report)
