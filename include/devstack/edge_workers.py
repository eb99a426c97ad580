"""The EdgeExecutor side of ``AirflowStack``: its configuration and the ``airflow edge worker`` processes.

EdgeExecutor (provider apache-airflow-providers-edge3) queues each task as an "edge job" in the metadata database;
``airflow edge worker`` processes fetch jobs, run them and push their task logs over HTTP through the edge API that
the provider's plugin mounts on the API server at ``/edge_worker`` (``[edge] api_enabled``). A worker needs no
metadata database, no broker and no disk shared with anything: only the API server's URL (``[edge] api_url`` for
jobs and logs, ``[core] execution_api_server_url`` for the tasks) and the shared ``[api_auth] jwt_secret``.

Here every worker gets its own directory (``AIRFLOW_HOME``, ``[logging] base_log_folder`` and whatever
``worker_env`` adds, e.g. a git cache), a distinct hostname (``--edge-hostname``: what task instances report as
their ``hostname``) and no ``[database] sql_alchemy_conn``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

LOCAL_EXECUTOR = "LocalExecutor"
EDGE_EXECUTOR = "EdgeExecutor"
EXECUTOR_CLASSES = {
    LOCAL_EXECUTOR: "LocalExecutor",
    EDGE_EXECUTOR: "airflow.providers.edge3.executors.EdgeExecutor",
}
EDGE_API_PATH = "/edge_worker"
WORKER_READY_STATES = frozenset({"idle", "running"})  # EdgeWorkerState values of a worker that takes jobs
# Snappier than the defaults (5 s poll, 30 s heartbeat): a 2-core CI machine should not sit idle between jobs.
JOB_POLL_INTERVAL = 1
HEARTBEAT_INTERVAL = 5

WorkerEnv = Callable[[str, Path], Mapping[str, str]]
"""Extra environment of one worker, from its hostname and its home directory."""


@dataclass(frozen=True)
class EdgeWorkerSpec:
    """One ``airflow edge worker`` process: its hostname and its own directory."""

    hostname: str
    home: Path
    concurrency: int

    @property
    def logs_dir(self) -> Path:
        """Its ``[logging] base_log_folder``: the task logs it writes (and pushes to the API server)."""
        return self.home / "logs"

    @property
    def process_log(self) -> Path:
        """Where the worker process's own output goes."""
        return self.home / "edge-worker.log"

    def command(self) -> list[str]:
        """The ``airflow`` CLI arguments that start it."""
        return ["edge", "worker", "--edge-hostname", self.hostname, "--concurrency", str(self.concurrency)]


def executor_class(executor: str) -> str:
    """The ``[core] executor`` value for ``executor`` (``LocalExecutor`` or ``EdgeExecutor``)."""
    try:
        return EXECUTOR_CLASSES[executor]
    except KeyError:
        raise ValueError(f"unsupported executor {executor!r} (supported: {sorted(EXECUTOR_CLASSES)})") from None


def check_workers(executor: str, workers: int) -> None:
    """LocalExecutor runs tasks inside the scheduler (no workers); EdgeExecutor needs at least one worker."""
    executor_class(executor)
    if executor == LOCAL_EXECUTOR and workers:
        raise ValueError("LocalExecutor runs tasks in the scheduler: workers must be 0")
    if executor == EDGE_EXECUTOR and workers < 1:
        raise ValueError("EdgeExecutor needs at least one worker")


def edge_worker_specs(home: Path, workers: int, parallelism: int) -> list[EdgeWorkerSpec]:
    """``workers`` workers named ``edge-worker-<n>``, each in a directory next to (not inside) the stack's home,
    sharing ``parallelism`` slots between them."""
    concurrency = max(1, math.ceil(parallelism / workers)) if workers else 0
    return [
        EdgeWorkerSpec(f"edge-worker-{n}", home.with_name(f"{home.name}-edge-worker-{n}"), concurrency)
        for n in range(1, workers + 1)
    ]


def edge_settings(api_url: str) -> dict[str, str]:
    """The ``[edge]`` options every component gets (the API server mounts the edge API when ``api_enabled``)."""
    return {
        "AIRFLOW__EDGE__API_ENABLED": "True",
        "AIRFLOW__EDGE__API_URL": f"{api_url}{EDGE_API_PATH}/v1/rpcapi",
        "AIRFLOW__EDGE__JOB_POLL_INTERVAL": str(JOB_POLL_INTERVAL),
        "AIRFLOW__EDGE__HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
        "AIRFLOW__EDGE__PUSH_LOGS": "True",
        # read from the environment by the worker's API client: retry within seconds, not up to 90 s, so that a
        # worker started together with the API server registers as soon as the server answers
        "AIRFLOW__EDGE__API_RETRY_WAIT_MAX": "5",
    }


def worker_environment(
    stack_environment: Mapping[str, str], worker: EdgeWorkerSpec, worker_env: WorkerEnv | None
) -> dict[str, str]:
    """The stack's environment, made the worker's own: its home and log folder, no metadata database, plus
    ``worker_env``'s additions."""
    env = {k: v for k, v in stack_environment.items() if k != "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"}
    env.update(
        {
            "AIRFLOW_HOME": str(worker.home),
            "AIRFLOW_CONFIG": str(worker.home / "airflow.cfg"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(worker.logs_dir),
        }
    )
    env.update(worker_env(worker.hostname, worker.home) if worker_env else {})
    return env
