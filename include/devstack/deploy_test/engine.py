"""The container engine: Debian's packages, the daemon (started by hand: no systemd here), and the two commands."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("docker.io", "docker-compose", "debootstrap", "openssl", "git")
DOCKER = "/usr/bin/docker"  # Debian's client, the daemon's version (another `docker` may come first on PATH)
COMPOSE = "/usr/bin/docker-compose"
DAEMON_READY_SECONDS = 60


class EngineError(RuntimeError):
    """A docker, compose or apt command failed; the message holds its output's tail."""


def run(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
    check: bool = True,
    capture: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
    )
    if check and result.returncode != 0:
        tail = (result.stdout or "")[-4000:]
        raise EngineError(f"{' '.join(args[:4])} ... exited {result.returncode}\n{tail}")
    return result


def missing_packages() -> list[str]:
    missing = []
    for package in PACKAGES:
        query = run(["dpkg-query", "-W", "-f=${Status}", package], check=False)
        if "install ok installed" not in (query.stdout or ""):
            missing.append(package)
    return missing


def install_packages() -> list[str]:
    """apt-get install what is missing (``--no-install-recommends``: no apparmor, no needrestart)."""
    missing = missing_packages()
    if missing:
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env, timeout=600)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env, timeout=900)
    return missing


@dataclass
class Daemon:
    """dockerd, started by us (and then stopped by us) unless one already answers."""

    work_dir: Path
    started: bool = False
    pid: int | None = None

    @property
    def pid_file(self) -> Path:
        return self.work_dir / "dockerd.pid"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "dockerd.log"

    def answers(self) -> bool:
        return run([DOCKER, "version", "--format", "{{.Server.Version}}"], check=False, timeout=30).returncode == 0

    def start(self) -> None:
        if self.answers():
            self.pid = self._pid_from_file()  # ours from an interrupted run, or someone else's (then left alone)
            self.started = self.pid is not None
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                ["dockerd", "--pidfile", str(self.pid_file)], stdout=log, stderr=log, start_new_session=True
            )
        self.pid, self.started = process.pid, True
        deadline = time.monotonic() + DAEMON_READY_SECONDS
        while not self.answers():
            if process.poll() is not None or time.monotonic() > deadline:
                raise EngineError(f"dockerd did not start; see {self.log_file}")
            time.sleep(0.5)

    def _pid_from_file(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """SIGTERM to our dockerd (it stops its containers' processes), then wait for it to go."""
        if not self.started or self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        self.started = False


def docker(*args: str, timeout: float = 1800, check: bool = True, capture: bool = True) -> str:
    return run([DOCKER, *args], timeout=timeout, check=check, capture=capture).stdout or ""


def image_exists(tag: str) -> bool:
    return run([DOCKER, "image", "inspect", tag], check=False, timeout=60).returncode == 0


@dataclass
class Compose:
    """docker-compose on the repository's compose files, as written, with the run's .env: docker-compose.yaml and
    docker-compose.oidc.yaml (the login through an identity provider, with the demo provider)."""

    root: Path
    env_file: Path
    project: str = "imrt-deploy-test"
    files: tuple[str, ...] = ("docker-compose.yaml", "docker-compose.oidc.yaml")
    profiles: tuple[str, ...] = ("demo",)
    extra_env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        profiles = [part for profile in self.profiles for part in ("--profile", profile)]
        files = [part for name in self.files for part in ("--file", str(self.root / name))]
        return [
            COMPOSE,
            "--project-name",
            self.project,
            "--project-directory",
            str(self.root),
            *files,
            "--env-file",
            str(self.env_file),
            *profiles,
            *args,
        ]

    def __call__(self, *args: str, timeout: float = 1800, check: bool = True, capture: bool = True) -> str:
        env = {"COMPOSE_HTTP_TIMEOUT": "300", **self.extra_env}
        return (
            run(self.command(*args), env=env, timeout=timeout, check=check, capture=capture, cwd=self.root).stdout or ""
        )

    def container_ids(self) -> dict[str, str]:
        """Service name -> container id, for every container of the project (running or not)."""
        out = docker(
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--format",
            '{{.ID}} {{.Label "com.docker.compose.service"}}',
        )
        return {service: cid for cid, service in (line.split() for line in out.splitlines() if line.strip())}


def have_tools() -> bool:
    return all(shutil.which(tool) for tool in ("dockerd", COMPOSE, "debootstrap"))
