"""Run a real Airflow 3 stack (api-server, scheduler, dag-processor) as subprocesses, for e2e tests and `make run`.

The launcher never imports Airflow: it starts the ``airflow`` CLI of the running interpreter's environment and talks
to the stack over the public REST API only (``devstack.airflow_rest``).

Every component gets the same complete, explicit configuration through environment variables, described in
``devstack.airflow_config``: PostgreSQL metadata, SimpleAuthManager or the deployments' FAB auth manager, LocalExecutor
(tasks run inside the scheduler) or EdgeExecutor with ``workers`` ``airflow edge worker`` processes, each in its own
directory, reaching the API server over HTTP only (``devstack.edge_workers``), secrets kept per home. Here:

* free ports for the API and both log servers, so that several stacks can run side by side;
* every listening socket on ``host`` (127.0.0.1): the scheduler's log server, which can only bind all interfaces,
  is not started (``--skip-serve-logs``); the api-server reads the task logs from the shared local log folder.

Each component runs in its own session (process group). ``stop()`` sends SIGINT to every group, then SIGTERM, then
SIGKILL, and finally kills any descendant that left its group (task runners make their own process groups).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from . import airflow_config, edge_workers
from .airflow_rest import AirflowRestClient, AirflowStackError, url_segment
from .edge_workers import EdgeWorkerSpec, WorkerEnv

log = logging.getLogger(__name__)

_HEALTH_KEYS = ("metadatabase", "scheduler", "dag_processor")
_TERMINAL_RUN_STATES = frozenset({"success", "failed"})
_POLL_INTERVAL = 0.5
_IDLE_WORKER_GRACE = 5.0  # seconds after SIGINT, see AirflowStack._kill_idle_workers
_LOCAL_WORKER_TITLE = "airflow worker -- LocalExecutor"
_PASSWORD_ENV = "IMRT_STACK_USER_PASSWORD"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:])


def _is_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline()).strip()[:100] or proc.name()
    except psutil.Error:
        return "?"


def _suppress_gone() -> contextlib.suppress:
    """A process that went away (or is no longer ours to signal) is not an error while stopping."""
    return contextlib.suppress(ProcessLookupError, PermissionError, psutil.NoSuchProcess)


class AirflowStack(AirflowRestClient):
    """A running (or startable) Airflow stack: ``airflow api-server``, ``scheduler`` and ``dag-processor``, plus
    ``workers`` edge workers when ``executor="EdgeExecutor"``; and the REST client of its own API server
    (``AirflowRestClient``; default user: ``admin``, else the first admin, else the first user).

    Use as a context manager, or call ``start()`` and ``stop()``. All paths are made absolute.
    ``worker_env(hostname, worker_home)`` adds to an edge worker's environment (e.g. a per-worker cache directory).
    """

    def __init__(
        self,
        home: Path,
        metadata_url: str,  # a sqlalchemy URL object works too
        *,
        dags_folder: Path,
        plugins_folder: Path | None = None,
        env: Mapping[str, str] | None = None,
        users: Mapping[str, str] = {"admin": "admin"},
        auth_manager: str = "simple",
        host: str = "127.0.0.1",
        api_port: int | None = None,
        parallelism: int = 8,
        log_prefix: str = "",
        executor: str = edge_workers.LOCAL_EXECUTOR,
        workers: int = 0,
        worker_env: WorkerEnv | None = None,
    ) -> None:
        airflow_config.check_users(users, auth_manager)
        self.auth_manager = auth_manager
        edge_workers.check_workers(executor, workers)
        self.home = Path(home).resolve()
        # A sqlalchemy URL object is accepted too; its password must survive rendering.
        render = getattr(metadata_url, "render_as_string", None)
        self.metadata_url: str = render(hide_password=False) if render else str(metadata_url)
        self.dags_folder = Path(dags_folder).resolve()
        self.plugins_folder = Path(plugins_folder).resolve() if plugins_folder else self.home / "plugins"
        self.extra_env = dict(env or {})
        self.users = dict(users)
        self.host = host
        self.api_port = api_port or free_port(host)
        self.worker_log_server_port = free_port(host)
        self.trigger_log_server_port = free_port(host)
        self.parallelism = parallelism
        self.log_prefix = log_prefix
        self.executor = executor
        self.logs_dir = self.home / "logs"
        self.processes: dict[str, subprocess.Popen] = {}
        self.start_seconds: float | None = None
        self.timings: dict[str, float] = {}  # seconds per start()/stop() phase, for reporting
        self._log_files: dict[str, Path] = {}
        self._airflow = str(Path(sys.executable).with_name("airflow"))
        admins = [u for u, r in self.users.items() if r.lower() == "admin"]  # FAB's role is "Admin"

        self.home.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.plugins_folder.mkdir(parents=True, exist_ok=True)
        self.passwords_file = self.home / "simple_auth_manager_passwords.json"
        super().__init__(
            url=f"http://{host}:{self.api_port}",
            passwords=airflow_config.load_or_create_passwords(self.passwords_file, self.users),
            default_user="admin" if "admin" in self.users else (admins or list(self.users))[0],
        )
        self.environment = airflow_config.airflow_environment(
            home=self.home,
            metadata_url=self.metadata_url,
            executor=self.executor,
            parallelism=self.parallelism,
            dags_folder=self.dags_folder,
            plugins_folder=self.plugins_folder,
            auth_settings=airflow_config.auth_manager_settings(auth_manager, self.users, self.passwords_file),
            kept_secrets=airflow_config.load_or_create_secrets(self.home),
            host=self.host,
            api_port=self.api_port,
            api_url=self.url,
            logs_dir=self.logs_dir,
            worker_log_server_port=self.worker_log_server_port,
            trigger_log_server_port=self.trigger_log_server_port,
            extra_env=self.extra_env,
        )
        self.edge_workers: dict[str, EdgeWorkerSpec] = {  # component name (its hostname) -> worker
            worker.hostname: worker for worker in edge_workers.edge_worker_specs(self.home, workers, parallelism)
        }
        self._component_environments = {
            name: edge_workers.worker_environment(self.environment, worker, worker_env)
            for name, worker in self.edge_workers.items()
        }
        for worker in self.edge_workers.values():
            worker.logs_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> AirflowStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def component_environment(self, component: str) -> dict[str, str]:
        """The environment a component process runs with."""
        return self._component_environments.get(component, self.environment)

    def log_file(self, component: str) -> Path:
        """The output of a component process (an edge worker's is in its own directory)."""
        if component in self.edge_workers:
            return self.edge_workers[component].process_log
        return self.logs_dir / f"{self.log_prefix}{component}.log"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        path = self.log_file(name)
        self._log_files[name] = path
        worker = self.edge_workers.get(name)
        with open(path, "ab") as out:
            return subprocess.Popen(
                [self._airflow, *args],
                cwd=worker.home if worker else self.home,
                env=self.component_environment(name),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _logs_report(self, lines: int = 40) -> str:
        parts = []
        for name, path in self._log_files.items():
            proc = self.processes.get(name)
            status = "" if proc is None else f" (pid {proc.pid}, exit code {proc.poll()})"
            parts.append(f"----- {name}{status}: {path}\n{_tail(path, lines)}")
        return "\n".join(parts)

    def check_alive(self) -> None:
        """Raise ``AirflowStackError`` (with log tails) if a component process has exited."""
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise AirflowStackError(f"Airflow component(s) exited: {dead}\n{self._logs_report()}")

    def start(self, timeout: float = 180) -> None:
        """Migrate the database, start the components and wait until the health endpoint reports them healthy."""
        if self.processes:
            raise AirflowStackError("already started")
        began = time.monotonic()
        deadline = began + timeout
        self.timings = {}
        atexit.register(self.stop)  # a safety net if the caller never stops us (not run on SIGKILL/SIGTERM)
        try:
            self._run_setup("db-migrate", [self._airflow, "db", "migrate"], deadline)
            self.timings["db_migrate"] = time.monotonic() - began
            if self.auth_manager == "fab":
                self._create_fab_users(deadline)
            for component, args in self._component_commands().items():
                self.processes[component] = self._spawn(component, args)
            self._wait_healthy(deadline)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = self.timings["start"] = time.monotonic() - began
        log.info("Airflow stack at %s healthy after %.1f s (%s)", self.url, self.start_seconds, self.timings)

    def _component_commands(self) -> dict[str, list[str]]:
        return {
            "api-server": ["api-server", "--host", self.host, "--port", str(self.api_port)],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            **{name: worker.command() for name, worker in self.edge_workers.items()},
        }

    def kill(self, component: str) -> None:
        """SIGKILL a component and everything it started (its task processes too): a crash, for fault tests."""
        proc = psutil.Process(self.processes[component].pid)
        victims = [proc, *proc.children(recursive=True)]
        for victim in victims:
            with _suppress_gone():
                victim.kill()
        psutil.wait_procs(victims, timeout=10)
        self.processes[component].wait(timeout=10)

    def restart(self, component: str, timeout: float = 120) -> None:
        """Start a component again (after :meth:`kill`) and wait until the stack is healthy."""
        if self.processes[component].poll() is None:
            raise AirflowStackError(f"{component} is still running")
        self.processes[component] = self._spawn(component, self._component_commands()[component])
        self._wait_healthy(time.monotonic() + timeout)

    def _create_fab_users(self, deadline: float) -> None:
        """The automation role and every user, by the command the deployments run (passwords in the environment)."""
        roles = [sys.executable, "-m", "imrt_compat.roles"]
        self._run_setup("fab-roles", [*roles, "role"], deadline)
        for user, role in self.users.items():
            command = [*roles, "user", user, "--role", role, "--password-env", _PASSWORD_ENV]
            self._run_setup("fab-roles", command, deadline, env={_PASSWORD_ENV: self.password(user)})

    def _run_setup(self, name: str, command: list[str], deadline: float, env: Mapping[str, str] | None = None) -> None:
        """Run a one-shot setup command to completion (its output in the log file ``name``)."""
        path = self.log_file(name)
        self._log_files[name] = path
        with open(path, "ab") as out:
            try:
                result = subprocess.run(
                    command,
                    cwd=self.home,
                    env={**self.environment, **(env or {})},
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=max(1.0, deadline - time.monotonic()),
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired as exc:
                raise AirflowStackError(f"{name} timed out\n{_tail(path)}") from exc
        if result.returncode != 0:
            raise AirflowStackError(f"{name} failed ({result.returncode})\n{_tail(path)}")

    def _wait_healthy(self, deadline: float) -> None:
        last: dict[str, Any] | None = None
        spawned = time.monotonic()
        while True:
            self.check_alive()
            last = self.health()
            if last and "api_answering" not in self.timings:
                self.timings["api_answering"] = time.monotonic() - spawned
            healthy = last and all((last.get(key) or {}).get("status") == "healthy" for key in _HEALTH_KEYS)
            if healthy and self._edge_workers_ready():
                return
            if time.monotonic() > deadline:
                raise AirflowStackError(f"Airflow stack not healthy in time; health: {last}\n{self._logs_report()}")
            time.sleep(_POLL_INTERVAL)

    def _edge_workers_ready(self) -> bool:
        if not self.edge_workers:
            return True
        states = self.edge_worker_states()
        return all(states.get(w.hostname) in edge_workers.WORKER_READY_STATES for w in self.edge_workers.values())

    def pids(self) -> set[int]:
        """Pids of the live component processes, their descendants and anything else in their process groups."""
        return {proc.pid for proc in self._tracked()}

    def _tracked(self, known: dict[int, psutil.Process] | None = None) -> list[psutil.Process]:
        """Live processes of the stack: leaders, their descendants, members of their groups (plus ``known`` ones)."""
        found: dict[int, psutil.Process] = dict(known or {})
        for popen in self.processes.values():
            try:
                leader = psutil.Process(popen.pid)
                found[leader.pid] = leader
                found.update((child.pid, child) for child in leader.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        groups = {popen.pid for popen in self.processes.values()}
        for proc in psutil.process_iter():
            try:
                if proc.pid not in found and os.getpgid(proc.pid) in groups:
                    found[proc.pid] = proc
            except (OSError, psutil.Error):
                continue
        return [proc for proc in found.values() if _is_alive(proc)]

    def stop(self, timeout: float = 30) -> None:
        """Stop every component: SIGINT to each process group, then SIGTERM, then SIGKILL. Idempotent.

        About two thirds of ``timeout`` go to the graceful SIGINT, the rest to SIGTERM. Descendants that left
        their group (task runners make their own) are remembered before signalling and killed at the end.
        LocalExecutor workers still idle 5 s after SIGINT are killed (see ``_kill_idle_workers``). Edge workers get
        their SIGINT first, while the API server still answers their goodbye (a drained worker reports itself
        offline), and up to a third of ``timeout`` to exit.
        Raises ``AirflowStackError`` if a process survives SIGKILL.
        """
        atexit.unregister(self.stop)
        if not self.processes:
            return
        began = time.monotonic()
        tracked = {proc.pid: proc for proc in self._tracked()}
        self._stop_edge_workers_first(timeout / 3)
        phases = ((signal.SIGINT, timeout * 2 / 3), (signal.SIGTERM, timeout / 3), (signal.SIGKILL, 10.0))
        for sig, budget in phases:
            alive = self._tracked(tracked)
            if not alive:
                break
            if sig != signal.SIGINT:
                log.warning(
                    "Airflow stack %s: %s still running, sending %s; %s",
                    self.url,
                    [(p.pid, _describe(p)) for p in alive],
                    sig.name,
                    {name: p.poll() for name, p in self.processes.items()},
                )
            self._signal_groups(sig)
            if sig == signal.SIGKILL:
                for proc in alive:
                    with _suppress_gone():
                        proc.kill()
            until = time.monotonic() + budget
            next_sweep = time.monotonic() + _IDLE_WORKER_GRACE if sig == signal.SIGINT else float("inf")
            while (alive := self._tracked(tracked)) and time.monotonic() < until:
                if time.monotonic() > next_sweep:
                    next_sweep = time.monotonic() + 1.0
                    self._kill_idle_workers(alive)
                self._reap()
                time.sleep(0.1)
        self._reap()
        survivors = self._tracked(tracked)
        self.timings["stop"] = time.monotonic() - began
        self.processes.clear()
        self._cached_tokens.clear()
        if survivors:
            raise AirflowStackError(f"processes survived SIGKILL: {[p.pid for p in survivors]}")

    def _kill_idle_workers(self, alive: list[psutil.Process]) -> None:
        """SIGKILL LocalExecutor workers that are still idle well after the scheduler got SIGINT.

        On SIGINT the scheduler (``LocalExecutor.end()``) puts one shutdown message per worker on the queue and joins
        them. Workers ignore SIGINT and SIGTERM. Now and then (observed on 3.3.2, about 1 stop in 5 under load) one
        idle worker never returns and the scheduler hangs in ``join()``, through SIGTERM too (multiprocessing joins
        its children at exit), until SIGKILL. An idle worker runs no task, so killing it loses nothing and lets the
        scheduler finish its own shutdown. Called every second from 5 s after SIGINT: a worker that finishes its
        task later turns idle too (and may then wait on a queue lock that a killed worker held).
        """
        titles = {p: _describe(p) for p in alive}
        idle = [p for p, title in titles.items() if title.startswith(_LOCAL_WORKER_TITLE) and title.endswith("<idle>")]
        if idle:
            log.warning("Airflow stack %s: killing idle LocalExecutor workers %s", self.url, [p.pid for p in idle])
        for proc in idle:
            with _suppress_gone():
                proc.kill()

    def _reap(self) -> None:
        for popen in self.processes.values():
            popen.poll()

    def _stop_edge_workers_first(self, budget: float) -> None:
        workers = [self.processes[name] for name in self.edge_workers if name in self.processes]
        for popen in workers:
            with _suppress_gone():
                os.killpg(popen.pid, signal.SIGINT)
        until = time.monotonic() + budget
        while any(popen.poll() is None for popen in workers) and time.monotonic() < until:
            time.sleep(0.1)

    def _signal_groups(self, sig: signal.Signals) -> None:
        for popen in self.processes.values():
            with _suppress_gone():
                os.killpg(popen.pid, sig)  # start_new_session=True: the group id is the leader's pid

    # ------------------------------------------------------------------ waiting on the stack

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict:
        """Wait until the dag-processor has parsed ``dag_id``; return the DAG document."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            path = f"/api/v2/dags/{url_segment(dag_id)}"
            response = self.api("GET", path)
            if response.status_code == 200:
                return response.json()
            if response.status_code != 404:
                raise AirflowStackError(f"GET {path}: {response.status_code} {response.text}")
            if time.monotonic() > deadline:
                errors = "\n".join(f"{e.get('filename')}:\n{e.get('stack_trace')}" for e in self.import_errors())
                raise TimeoutError(
                    f"DAG {dag_id!r} not parsed within {timeout} s; import errors:\n{errors or '(none)'}\n"
                    f"{_tail(self.log_file('dag-processor'))}"
                )
            time.sleep(_POLL_INTERVAL)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Wait until the run is ``success`` or ``failed``; return that state."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            state = self.dag_run(dag_id, run_id)["state"]
            if state in _TERMINAL_RUN_STATES:
                return state
            if time.monotonic() > deadline:
                tis = {(t["task_id"], t["map_index"]): t["state"] for t in self.task_instances(dag_id, run_id)}
                raise TimeoutError(f"run {dag_id}/{run_id} still {state!r} after {timeout} s; task instances: {tis}")
            time.sleep(1.0)
