"""The configuration ``AirflowStack`` gives every Airflow component: users, kept secrets, one explicit environment.

Every component gets the same complete, explicit configuration through environment variables (nothing inherited
from ``AIRFLOW_*`` variables of the calling process, no secrets on a command line):

* PostgreSQL metadata database, SimpleAuthManager with pre-seeded passwords, or (``auth_manager="fab"``) the
  deployments' FAB auth manager with the automation role and users made by ``python -m imrt_compat.roles``, as the
  compose init and the Helm job make them;
* LocalExecutor (the default: tasks run inside the scheduler), or EdgeExecutor (``devstack.edge_workers``);
* one JWT secret, API secret key and Fernet key per home, generated once and kept (``<home>/devstack-secrets.json``)
  so that a restarted stack can still read what the previous one encrypted, and tokens stay valid;
* the API server and both log server ports on ``host``; snappy but real scheduler and DAG processor loops.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from . import edge_workers

SIMPLE_AUTH_ROLES = frozenset({"viewer", "user", "op", "admin"})  # SimpleAuthManagerRole
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
FAB_AUTH_MANAGER = "imrt_compat.fab_auth.ImrtFabAuthManager"  # what docker-compose.yaml and helm-values.yaml use
JWT_SECRET_BYTES = (
    64  # HS512, the signing algorithm Airflow picks for a shared secret, wants a 64-byte key (RFC 7518 §3.2)
)


def check_users(users: Mapping[str, str], auth_manager: str) -> None:
    """Raise ``ValueError`` unless ``users`` (name -> role) can be made under ``auth_manager`` ("simple" or "fab")."""
    if not users:
        raise ValueError("at least one user is needed")
    if auth_manager not in ("simple", "fab"):
        raise ValueError(f"auth_manager must be 'simple' or 'fab', not {auth_manager!r}")
    for name, role in users.items():
        bad_name = not name or any(c in name for c in ",: ")
        if auth_manager == "simple" and (bad_name or role.lower() not in SIMPLE_AUTH_ROLES):
            raise ValueError(f"bad SimpleAuthManager user {name!r}, role {role!r} (roles: {sorted(SIMPLE_AUTH_ROLES)})")
        if auth_manager == "fab" and (bad_name or not role):
            raise ValueError(f"bad FAB user {name!r}, role {role!r}")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _generate_fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def load_or_create_secrets(home: Path) -> dict[str, str]:
    """The home's JWT secret, API secret key and Fernet key (``<home>/devstack-secrets.json``), made once."""
    path = home / "devstack-secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if len(stored.get("jwt_secret", "").encode()) < JWT_SECRET_BYTES:  # made before HS512's length was respected
        stored.pop("jwt_secret", None)
    wanted = {
        "jwt_secret": lambda: secrets.token_urlsafe(JWT_SECRET_BYTES),
        "api_secret_key": lambda: secrets.token_urlsafe(32),
        "fernet_key": _generate_fernet_key,
    }
    missing = {k: make() for k, make in wanted.items() if not stored.get(k)}
    if missing:
        stored.update(missing)
        _write_private(path, json.dumps(stored, indent=2) + "\n")
    return stored


def load_or_create_passwords(path: Path, users: Iterable[str]) -> dict[str, str]:
    """Each user's password, kept in ``path`` (SimpleAuthManager's passwords file); new users get a random one."""
    stored: dict[str, str] = json.loads(path.read_text().strip() or "{}") if path.exists() else {}
    missing = [u for u in users if not stored.get(u)]
    if missing or not path.exists():
        stored.update({u: secrets.token_urlsafe(16) for u in missing})
        _write_private(path, json.dumps(stored) + "\n")
    return stored


def auth_manager_settings(auth_manager: str, users: Mapping[str, str], passwords_file: Path) -> dict[str, str]:
    """The ``[core]`` auth manager options (the passwords file is SimpleAuthManager's; under FAB it only keeps the
    passwords the users get)."""
    if auth_manager == "fab":
        return {"AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER}
    return {
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in users.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
    }


def airflow_environment(
    *,
    home: Path,
    metadata_url: str,
    executor: str,
    parallelism: int,
    dags_folder: Path,
    plugins_folder: Path,
    auth_settings: Mapping[str, str],
    kept_secrets: Mapping[str, str],
    host: str,
    api_port: int,
    api_url: str,
    logs_dir: Path,
    worker_log_server_port: int,
    trigger_log_server_port: int,
    extra_env: Mapping[str, str],
) -> dict[str, str]:
    """The environment every component runs with (an edge worker's is derived from it)."""
    # Start from the caller's environment without any Airflow variable (pytest's conftest sets some for its own
    # process), then set everything Airflow needs explicitly. Extra env comes last and may override.
    base = {k: v for k, v in os.environ.items() if not k.lstrip("_").startswith("AIRFLOW")}
    venv_bin = str(Path(sys.executable).parent)
    base["PATH"] = os.pathsep.join([venv_bin, *(p for p in base.get("PATH", "").split(os.pathsep) if p)])
    config = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
        "PYTHONUNBUFFERED": "1",
        # database / executor
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__CORE__EXECUTOR": edge_workers.executor_class(executor),
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        # The bank-wide runs' pool leaves an executor slot to the pushes' runs (docs/configuration.md, gitlab_pool).
        "AIRFLOW__IMRT__GITLAB_POOL_SLOTS": str(max(1, parallelism - 1)),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # what to load
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        # auth
        **auth_settings,
        "AIRFLOW__API_AUTH__JWT_SECRET": kept_secrets["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": kept_secrets["api_secret_key"],
        "AIRFLOW__CORE__FERNET_KEY": kept_secrets["fernet_key"],
        # API server and the execution API the workers call
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        # logs (log servers are not started, see devstack.airflow_stack; their ports are still distinct per stack)
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(logs_dir),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_server_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_server_port),
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "False",
        # snappy, but with the real loops: new DAG files are found within 5 s, changed ones re-parsed in 10 s
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
        "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "120",
        "AIRFLOW__SCHEDULER__CATCHUP_BY_DEFAULT": "False",
    }
    if executor == edge_workers.EDGE_EXECUTOR:
        config.update(edge_workers.edge_settings(api_url))
    return {**base, **config, **extra_env}
