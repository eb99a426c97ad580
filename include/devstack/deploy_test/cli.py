"""``python -m devstack.deploy_test`` (``make deploy-test``): the whole deploy test, then a report of what it
checked; everything it started is stopped (containers, network, volumes, and the daemon if it started it). The
images stay in Docker's store, so the next run builds only what changed."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import checks, engine, idp_login, image_lock, images, settings
from .checks import Check
from .probe import Airflow, Sql

ROOT = Path(__file__).resolve().parents[3]
KILLED_SERVICE = "imrt-db"


def say(text: str) -> None:
    print(text, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deploy-test", description=__doc__)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=ROOT / ".data" / "deploy-test",
        help="logs, the run's .env and secrets, the git clones (default .data/deploy-test)",
    )
    parser.add_argument("--https-port", type=int, default=settings.Ports.https)
    parser.add_argument(
        "--images-only",
        action="store_true",
        help="only install the engine and build every image, then stop (a later run finds them in Docker's store)",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the containers and the daemon running at the end (for a look around)",
    )
    return parser.parse_args(argv)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work_dir: Path = args.work_dir
        self.results: list[Check] = []
        self.timings: list[tuple[str, float]] = []

    def timed(self, name: str, action: Callable[[], object]) -> object:
        started = time.monotonic()
        say(f"-- {name}")
        try:
            return action()
        finally:
            self.timings.append((name, time.monotonic() - started))

    def check(self, action: Callable[[], Check], name: str) -> Check | None:
        started = time.monotonic()
        try:
            result = action()
        except Exception as error:
            result = Check(name, False, f"{type(error).__name__}: {error}")
        self.results.append(result)
        self.timings.append((result.name, time.monotonic() - started))
        say(f"[{'PASS' if result.ok else 'FAIL'}] {result.name}\n       {result.evidence}")
        return result

    def execute(self) -> int:
        started = time.monotonic()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        installed = self.timed("Debian packages (docker.io, docker-compose, debootstrap)", engine.install_packages)
        say(f"   installed: {', '.join(installed) or 'nothing (already there)'}")
        daemon = engine.Daemon(self.work_dir)
        self.timed("the Docker daemon", daemon.start)
        say(f"   dockerd {'started by this run' if daemon.started else 'already running (left running)'}")
        ports = settings.Ports(https=self.args.https_port)
        deployment = settings.write_deployment(self.work_dir, ports)
        compose = engine.Compose(ROOT, deployment.env_file)
        try:
            self.timed(
                "base images (stand-ins, deploy/base-images)",
                lambda: images.build_base_images(ROOT, self.work_dir, say),
            )
            self.timed(
                "project images (docker-compose build)",
                lambda: images.build_project_images(compose, self.work_dir, say),
            )
            if self.args.images_only:
                return self.report_images(time.monotonic() - started)
            self.check(lambda: image_lock.check_image_is_the_lock(ROOT), image_lock.NAME)
            self.run_checks(compose, deployment)
        finally:
            if not self.args.images_only:
                self.save_logs(compose)
            if self.args.keep_running:
                say(f"-- left running: docker-compose -p {compose.project} --env-file {deployment.env_file} ...")
            else:
                self.timed("stopping everything", lambda: self.stop(compose, daemon))
        return self.report(time.monotonic() - started)

    def run_checks(self, compose: engine.Compose, deployment: settings.Deployment) -> None:
        compose("down", "--volumes", "--remove-orphans", timeout=600)  # what an interrupted run left
        expected = checks.expected_services(compose)
        up_started = time.monotonic()
        healthy = self.check(
            lambda: checks.check_up_and_healthy(compose, expected, up_started), "every service healthy"
        )
        if not healthy.ok:
            return
        airflow = Airflow(deployment)
        imrt = Sql(compose, "imrt-db", "imrt", "imrt")
        metadata = Sql(compose, "postgres", "airflow", "airflow")
        self.check(lambda: checks.check_image_code_runs(compose, deployment), "the image's code runs")
        self.check(lambda: checks.check_imrt_bootstrapped(compose, imrt), "imrt bootstrapped")
        self.check(lambda: checks.check_login_through_proxy(airflow), "login page through the proxy")
        synced = self.check(lambda: checks.check_sync(airflow, imrt, say)[0], "POST /sync")
        bank = checks.Bank(deployment)
        projects = bank.projects(2)
        if synced.ok:
            self.check(lambda: checks.check_push_to_row(bank, imrt, projects[0]), "git push -> row")
            self.check(lambda: checks.check_failure_alert(bank, compose, airflow, projects[1], say), "alert e-mail")
            self.check(lambda: idp_login.check_idp_login(deployment, airflow), "login through the identity provider")
        self.check(lambda: checks.check_statsd_metrics(deployment), "StatsD metrics")
        self.check(lambda: checks.check_down_up_keeps_rows(compose, expected, airflow, imrt, metadata, say), "down/up")
        self.check(
            lambda: checks.check_killed_container_recovers(compose, expected, airflow, imrt, KILLED_SERVICE, say),
            "killed container",
        )

    def save_logs(self, compose: engine.Compose) -> None:
        try:
            logs = compose("logs", "--no-color", "--timestamps", timeout=300, check=False)
            checks.write_text(self.work_dir / "logs" / "compose.log", logs)
        except Exception as error:
            say(f"   (could not save the containers' logs: {error})")

    def stop(self, compose: engine.Compose, daemon: engine.Daemon) -> None:
        compose("down", "--volumes", "--remove-orphans", timeout=600, check=False)
        daemon.stop()
        say(f"   containers, network and volumes removed; dockerd {'stopped' if daemon.pid else 'left as found'}")

    def report_images(self, seconds: float) -> int:
        say("== deploy test images: built ==")
        for name, spent in self.timings:
            say(f"  {spent:6.0f} s  {name}")
        say(f"deploy test images built in {seconds:.0f} s (no check run: make deploy-test runs them)")
        return 0

    def report(self, seconds: float) -> int:
        say("\n== deploy test: what was checked ==")
        for result in self.results:
            say(f"  [{'PASS' if result.ok else 'FAIL'}] {result.name}")
        say("== timings ==")
        for name, spent in self.timings:
            say(f"  {spent:6.0f} s  {name}")
        passed = sum(result.ok for result in self.results)
        say(
            f"deploy test: {passed} passed, {len(self.results) - passed} failed in {seconds:.0f} s "
            f"(logs: {self.work_dir / 'logs'})"
        )
        return 0 if self.results and passed == len(self.results) else 1


def main(argv: list[str] | None = None) -> None:
    sys.exit(Run(parse(argv)).execute())
