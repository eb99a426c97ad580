"""The deploy test's pieces that run without Docker: the stand-in images' conventions, the constraints it writes
from the locks, the stand-in entrypoint's behaviour, the StatsD exporter stand-in's mapping, and its settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devstack.deploy_test import engine, images, settings

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base-images"


def test_the_airflow_stand_in_is_the_tag_the_project_image_builds_on():
    froms = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert froms == [images.airflow_tag(ROOT)]


def test_the_deploy_test_builds_every_image_the_compose_files_build():
    """One service per built image in images.COMPOSE_BUILDS (the Airflow services share the project image)."""
    built_images = {}
    for name in engine.Compose(ROOT, ROOT / ".env").files:
        for service, spec in yaml.safe_load((ROOT / name).read_text())["services"].items():
            if "build" in spec:
                built_images.setdefault(spec["image"], set()).add(service)
    chosen = {service: image for image, services in built_images.items() for service in services}
    assert sorted(chosen[service] for service in images.COMPOSE_BUILDS) == sorted(built_images)


def test_the_airflow_stand_in_keeps_the_published_image_conventions():
    dockerfile = (BASE / "airflow" / "Dockerfile").read_text()
    for convention in (
        "ARG AIRFLOW_UID=50000",
        "ARG AIRFLOW_HOME=/opt/airflow",
        '--uid "${AIRFLOW_UID}" --gid 0',
        'ENTRYPOINT ["/usr/bin/dumb-init", "--", "/entrypoint"]',
        "CMD []",
        "DUMB_INIT_SETSID=1",
        'VIRTUAL_ENV="${AIRFLOW_USER_HOME_DIR}/.local"',
        "USER ${AIRFLOW_UID}",
        "EXPOSE 8080",
        "chmod g=u /etc/passwd",
        "AIRFLOW__CORE__LOAD_EXAMPLES=false",
    ):
        assert convention in dockerfile, convention
    pinned = re.search(r"^ARG AIRFLOW_VERSION=(\S+)$", dockerfile, re.MULTILINE).group(1)
    assert images.airflow_tag(ROOT) == f"apache/airflow:{pinned}-python3.11"


def test_the_constraints_come_from_the_locks_without_extras_or_hashes():
    text = images.constraints_from_locks(ROOT)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert images.airflow_tag(ROOT).split(":")[1].split("-")[0] in next(
        line for line in lines if line.startswith("apache-airflow==")
    )
    assert not [line for line in lines if "[" in line or "--hash" in line or line.startswith("-")]
    names = [re.split(r"==", line)[0].lower() for line in lines]
    assert len(names) == len(set(names))
    runtime = dict(re.findall(r"^([A-Za-z0-9][\w.-]*)==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE))
    for name, version in runtime.items():
        assert f"{name}=={version}" in lines, f"the runtime lock's pin of {name} wins"


def test_the_postgres_stand_in_keeps_the_official_conventions():
    dockerfile = (BASE / "postgres" / "Dockerfile").read_text()
    for convention in (
        "--uid=999",
        "PGDATA=/var/lib/postgresql/data",
        "STOPSIGNAL SIGINT",
        "EXPOSE 5432",
        'ENTRYPOINT ["docker-entrypoint.sh"]',
        'CMD ["postgres"]',
    ):
        assert convention in dockerfile
    entrypoint = (BASE / "postgres" / "docker-entrypoint.sh").read_text()
    for variable in (
        "POSTGRES_PASSWORD",
        "POSTGRES_USER",
        "POSTGRES_DB",
        "POSTGRES_INITDB_ARGS",
        "_FILE",
        "/docker-entrypoint-initdb.d",
    ):
        assert variable in entrypoint


@pytest.fixture
def fake_airflow(tmp_path):
    """An `airflow` that records its arguments, first on PATH."""
    log = tmp_path / "calls"
    binary = tmp_path / "bin"
    binary.mkdir()
    (binary / "airflow").write_text(f'#!/bin/sh\necho "airflow $*" >> {log}\n')
    (binary / "airflow").chmod(0o755)
    env = {"PATH": f"{binary}:{os.environ['PATH']}", "AIRFLOW_USER_HOME_DIR": str(tmp_path), "HOME": str(tmp_path)}
    return env, log


def _entrypoint(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(BASE / "airflow" / "entrypoint"), *args], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.skipif(os.getgid() != 0, reason="the entrypoint insists on group 0, as the published one does")
def test_the_stand_in_entrypoint_behaves_as_documented(fake_airflow):
    env, log = fake_airflow
    assert _entrypoint(env, "airflow", "version").returncode == 0
    assert _entrypoint(env, "scheduler").returncode == 0
    assert _entrypoint({**env, "_AIRFLOW_DB_MIGRATE": "true"}).returncode == 0
    bash = _entrypoint(env, "bash", "-c", "echo from-bash")
    assert bash.stdout.strip() == "from-bash"
    assert log.read_text().splitlines() == [
        "airflow version",
        "airflow db check",
        "airflow scheduler",  # waits for the database before a component
        "airflow db migrate",  # _AIRFLOW_DB_MIGRATE with no command: migrate, exit 0
    ]


def test_the_statsd_exporter_stand_in_maps_like_the_exporter(tmp_path):
    sys.path.insert(0, str(BASE / "statsd-exporter"))
    try:
        import statsd_exporter as exporter
    finally:
        sys.path.pop(0)
    registry = exporter.Registry()
    for line in (
        "airflow.imrt.items_synced:300|c",
        "airflow.imrt.items_synced:2|c|@0.5",
        "airflow.pool.slots:4|g",
        "airflow.pool.slots:-1|g",
        "airflow.imrt.run_duration:1500|ms",
        "airflow.ti.x:1|c|#dag_id:d",
    ):
        exporter.handle_line(registry, line)
    text = registry.exposition()
    assert "# TYPE airflow_imrt_items_synced counter\nairflow_imrt_items_synced 304" in text
    assert "airflow_pool_slots 3" in text
    assert "airflow_imrt_run_duration_sum 1.5" in text and "airflow_imrt_run_duration_count 1" in text
    assert 'airflow_ti_x{dag_id="d"} 1' in text


def test_the_deploy_test_writes_secrets_as_files_and_no_secret_into_its_env_file(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the secret files are handed to root:0, as docs/deployment.md says")
    deployment = settings.write_deployment(tmp_path, settings.Ports())
    declared = {}
    for name in ("docker-compose.yaml", "docker-compose.oidc.yaml"):
        declared.update(yaml.safe_load((ROOT / name).read_text())["secrets"])
    for secret in declared.values():
        path = deployment.secrets_dir / secret["file"].rsplit("/", 1)[-1]
        assert path.is_file() and oct(path.stat().st_mode & 0o777) == "0o440", path
    env_text = deployment.env_file.read_text()
    for value in settings.secret_values(deployment.secrets_dir):
        assert value not in env_text
    connections = json.loads((deployment.secrets_dir / "airflow_connections.json").read_text())
    assert connections["imrt_default"]["password"] == deployment.secret("imrt_db_password")
    assert connections["gitlab_default"]["password"] == deployment.itembank_token
    idp = json.loads((deployment.secrets_dir / "imrt_idp_config.json").read_text())
    assert [client["client_secret_file"] for client in idp["clients"]] == ["/run/secrets/imrt_oidc_client_secret"]
    assert {user["username"] for user in idp["users"]} == set(settings.IDP_USERS)
    assert len(settings.secret_values(deployment.secrets_dir)) >= 12
