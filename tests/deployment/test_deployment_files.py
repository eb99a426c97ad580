"""The deployment files: docker-compose.yaml, helm-values.yaml, Dockerfile, .env.example, .dockerignore.

No Docker engine or Helm is needed: the two YAML files are validated against their JSON schemas (Compose
Specification, the Airflow chart's values.schema.json) with jsonschema's Draft7Validator, and the rest is checked
as data. The schemas folder comes from ``IMRT_SCHEMAS_DIR``, by default ``../shared/schemas`` beside the clone:
without the files there, the schema tests fail (they never skip).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
HELM_FILE = ROOT / "helm-values.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

SCHEMAS_ENV = "IMRT_SCHEMAS_DIR"
DEFAULT_SCHEMAS_DIR = ROOT.parent / "shared" / "schemas"  # the project's shared folder beside the clone
COMPOSE_SCHEMA = "compose-spec.json"
CHART_SCHEMA = "airflow-chart-values.schema.json"

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-init",
}
SENSITIVE_KEY = re.compile(r"secret|password|token|fernet|conn", re.IGNORECASE)
# ${VAR}, ${VAR:?msg}, ${VAR?msg}, ${VAR:-default}, ${VAR-default}, ${VAR:+alt}, ${VAR+alt}; not $${...}, which
# Compose passes on as a literal ${...} for the container's shell.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
# A run of 24+ key-like characters: with two of upper case, lower case and digits, a generated secret or token
# (names like AIRFLOW__CORE__EXECUTOR have one; "/" splits runs, so URL paths are not taken for one).
KEY_RUN = re.compile(r"[A-Za-z0-9_\-=]{24,}")
# user:password@ in a URL, with a literal password (an interpolation has been replaced by "\x00" first).
URL_PASSWORD = re.compile(r"://[^/\s:@]+:(?!\x00@)[^@\s/]+@")


# ------------------------------------------------------------------------------------------------ fixtures


def _looks_like_secret(text: str) -> bool:
    for run in KEY_RUN.findall(text):
        classes = sum(bool(re.search(pattern, run)) for pattern in ("[a-z]", "[A-Z]", "[0-9]"))
        if classes >= 2:
            return True
    return bool(URL_PASSWORD.search(text))


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def helm() -> dict:
    return _load_yaml(HELM_FILE)


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def pinned_airflow() -> str:
    text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    found = re.findall(r"^apache-airflow==(\S+)\s*$", text, flags=re.MULTILINE)
    assert len(found) == 1, "requirements.txt must pin apache-airflow exactly once"
    return found[0]


@pytest.fixture(scope="module")
def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["project"]["version"]


@pytest.fixture(scope="module")
def schemas_dir() -> Path:
    configured = os.environ.get(SCHEMAS_ENV) or str(DEFAULT_SCHEMAS_DIR)
    path = Path(configured)
    missing = [name for name in (COMPOSE_SCHEMA, CHART_SCHEMA) if not (path / name).is_file()]
    if missing:
        pytest.fail(f"{SCHEMAS_ENV}={configured} but {', '.join(missing)} not found there", pytrace=False)
    return path


def _validator(schema_path: Path) -> jsonschema.Draft7Validator:
    # Draft 7 explicitly: compose-spec's $schema URL is not recognised by jsonschema's auto-detection, which
    # would silently fall back to a newer draft.
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(validator: jsonschema.Draft7Validator, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


def _walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every (path, value) pair of a YAML document, containers included."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, index))


def _common_env(compose: dict) -> dict:
    return compose["x-airflow-common"]["environment"]


# ------------------------------------------------------------------------------------------------ schemas


def test_compose_file_matches_the_compose_specification(schemas_dir, compose):
    assert _errors(_validator(schemas_dir / COMPOSE_SCHEMA), compose) == []


def test_the_validators_catch_mistakes(schemas_dir, compose):
    """The schema is strict enough to be worth running: a typo'd key fails (the Helm values' schema tests, against
    the pinned chart version: test_helm_values.py)."""
    bad_compose = json.loads(json.dumps(compose))
    bad_compose["services"]["airflow-scheduler"]["restart_policy"] = "always"
    assert _errors(_validator(schemas_dir / COMPOSE_SCHEMA), bad_compose)


# ------------------------------------------------------------------------------------------------ secrets


def _compose_secret_problems(compose: dict) -> list[str]:
    problems = []
    for path, value in _walk(compose):
        where = "/".join(map(str, path))
        if isinstance(value, str):
            bare = INTERPOLATION.sub("\x00", value)
            if _looks_like_secret(bare):
                problems.append(f"{where}: looks like a literal secret: {value!r}")
        if not path or not isinstance(path[-1], str) or not SENSITIVE_KEY.search(path[-1]):
            continue
        key = path[-1]
        if isinstance(value, (dict, list)) or value is None:
            continue
        text = str(value)
        if key.upper().endswith("_FILE") and text.startswith("/"):
            continue  # a path to a file, not the secret
        found = list(INTERPOLATION.finditer(text))
        if not found:
            problems.append(f"{where}: {key} must come from ${{...}} (the .env file), not {text!r}")
        for match in found:
            if match["op"] in (":-", "-") and match["arg"]:
                problems.append(f"{where}: {key} has a literal default {match['arg']!r}")
            if match["op"] in (":+", "+"):
                problems.append(f"{where}: {key} uses ${{VAR+alt}}: the alternative would be a literal")
    return problems


def test_compose_file_holds_no_secret_values(compose):
    assert _compose_secret_problems(compose) == []


def test_compose_secret_check_catches_literals(compose):
    bad = json.loads(json.dumps(compose))
    env = bad["services"]["airflow-scheduler"].setdefault("environment", {})
    env["AIRFLOW__API_AUTH__JWT_SECRET"] = "hunter2"
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "postgresql://airflow:airflow@postgres/airflow"
    env["AIRFLOW__CORE__FERNET_KEY"] = "${AIRFLOW_FERNET_KEY:-Zm9vYmFyYmF6cXV4cXV1eHF1dXh4eHh4eHh4eHh4eA=}"
    env["SOMETHING"] = "aB3dE5gH7jK9mN1pQ3sT5vW7"
    problems = "\n".join(_compose_secret_problems(bad))
    for key in ("JWT_SECRET", "SQL_ALCHEMY_CONN", "FERNET_KEY", "SOMETHING"):
        assert key in problems


def test_helm_takes_every_airflow_secret_from_kubernetes_secrets(helm):
    for key in ("jwtSecretName", "apiSecretKeySecretName", "fernetKeySecretName"):
        assert helm.get(key), f"{key} must name a Kubernetes Secret"
    assert helm["data"]["metadataSecretName"]
    assert helm["postgresql"]["enabled"] is False


def test_env_example_lists_every_compose_variable_without_values_for_secrets(compose):
    wanted = {
        match["name"]
        for _, value in _walk(compose)
        if isinstance(value, str)
        for match in INTERPOLATION.finditer(value)
    }
    lines = [line for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    listed = dict(line.split("=", 1) for line in lines)
    assert sorted(wanted - listed.keys()) == []
    for name, value in listed.items():
        if SENSITIVE_KEY.search(name) and not name.startswith("AIRFLOW_CONN_"):
            assert value == "", f".env.example: {name} must be left empty (a placeholder would start up)"
        assert not _looks_like_secret(value), f".env.example: {name} holds something that looks like a real secret"


def test_secrets_stay_out_of_the_image_build_context():
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert ".env" in ignored
    for needed in ("dags", "plugins", "include", "requirements.txt", "pyproject.toml"):
        assert needed not in ignored and f"{needed}/" not in ignored


# ------------------------------------------------------------------------------------------------ versions


def test_dockerfile_base_image_is_the_pinned_airflow(dockerfile, pinned_airflow):
    froms = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert froms == [f"apache/airflow:{pinned_airflow}-python3.11"]


def test_helm_airflow_version_is_the_pinned_airflow(helm, pinned_airflow, project_version):
    assert helm["airflowVersion"] == pinned_airflow
    assert helm["defaultAirflowTag"] == pinned_airflow
    # The project image carries the project's version; its Airflow is the pinned one (Dockerfile FROM).
    assert helm["images"]["airflow"]["tag"] == project_version
    assert helm["images"]["airflow"]["repository"]


def test_compose_and_helm_use_the_same_max_map_length(compose, helm):
    from imrt_compat.settings import DEFAULTS

    compose_value = str(_common_env(compose)["AIRFLOW__CORE__MAX_MAP_LENGTH"])
    helm_value = str(helm["config"]["core"]["max_map_length"])
    assert compose_value == helm_value
    assert int(compose_value) >= int(DEFAULTS["imrt_map_bound"])


def test_compose_and_helm_agree_on_auth_and_the_anonymous_sync(compose, helm):
    env = _common_env(compose)
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == helm["config"]["core"]["auth_manager"]
    assert env["AIRFLOW__IMRT__ALLOW_ANONYMOUS_SYNC"] == "${IMRT_ALLOW_ANONYMOUS_SYNC:-False}"
    assert str(helm["config"]["imrt"]["allow_anonymous_sync"]) == "False"


# ------------------------------------------------------------------------------------------------ image


def test_image_contains_the_dag_the_plugin_and_the_packages(dockerfile):
    assert (ROOT / "dags" / "item_synchronization.py").is_file()
    assert (ROOT / "plugins" / "imrt_compat_plugin.py").is_file()
    assert re.search(r"^COPY\b.*\sdags/\s+/opt/airflow/dags/?$", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^COPY\b.*\splugins/\s+/opt/airflow/plugins/?$", dockerfile, flags=re.MULTILINE)
    for package in ("imrt_sync", "imrt_compat"):
        assert re.search(rf"^COPY\b.*\sinclude/{package}/\s+\S+", dockerfile, flags=re.MULTILINE)
    assert re.search(r"pip install [^\n]*-r /tmp/imrt-requirements.txt", dockerfile)
    assert re.search(r"pip install [^\n]*--no-deps", dockerfile)
    assert re.search(r"apt-get install [^\n]*\bgit\b", dockerfile)
    assert "HEALTHCHECK" not in re.sub(r"#.*", "", dockerfile)
    # Back to the unprivileged user after the apt step.
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users[-1] == "airflow"


def test_helm_uses_the_baked_in_dags(helm):
    assert helm["dags"]["gitSync"]["enabled"] is False
    assert helm["dags"]["persistence"]["enabled"] is False
    assert helm["executor"] == "KubernetesExecutor"  # each task a pod of the image that bakes the DAG in


# ------------------------------------------------------------------------------------------------ compose


def test_api_server_is_bound_to_the_loopback_interface(compose):
    ports = compose["services"]["airflow-apiserver"]["ports"]
    assert ports, "the API server publishes its port"
    for port in ports:
        if isinstance(port, dict):
            assert port.get("host_ip") == "127.0.0.1", port
        else:
            assert str(port).startswith("127.0.0.1:"), port
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond the loopback interface"


def test_every_airflow_service_gets_the_common_environment(compose):
    common = _common_env(compose)
    services = compose["services"]
    assert AIRFLOW_SERVICES <= services.keys()
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        different = {k for k, v in common.items() if env.get(k) != v}
        assert different == set(), f"{name}: {sorted(different)} differ from x-airflow-common"
        assert services[name]["image"] == compose["x-airflow-common"]["image"]
    # The values that have to be identical everywhere are really there.
    for key in (
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__CORE__MAX_MAP_LENGTH",
        "AIRFLOW_CONN_GITLAB_DEFAULT",
        "AIRFLOW_CONN_IMRT_DEFAULT",
        "AIRFLOW_VAR_IMRT_GITLAB_GROUP",
        "AIRFLOW_VAR_IMRT_WEBHOOK_URL",
        "AIRFLOW_VAR_IMRT_WEBHOOK_SECRET",
    ):
        assert key in common, key
    assert common["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert common["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


def test_airflow_services_mount_the_common_volumes_and_wait_for_init(compose):
    common = compose["x-airflow-common"]["volumes"]
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        assert set(common) <= set(services[name]["volumes"]), name
        if name != "airflow-init":
            assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
            assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
            assert services[name]["restart"] == "always"
            assert services[name]["healthcheck"]["test"]
    assert "PYTHONPATH" in _common_env(compose) and "/opt/airflow/include" in _common_env(compose)["PYTHONPATH"]
    assert "./include:/opt/airflow/include" in common


def test_demo_profile_holds_the_item_bank(compose):
    services = compose["services"]
    demo = {name for name, service in services.items() if "demo" in service.get("profiles", [])}
    assert demo == {"itembank"}
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == {"itembank"}, "everything else starts with a plain `docker compose up`"
    itembank = services["itembank"]
    args = list(itembank["command"])
    assert args[0] == "serve"
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert options["--host"] == "0.0.0.0"
    assert options["--port"] == "8929"
    assert options["--group"] == "iat-demo"
    assert options["--generate"] == "300"
    # The repository URLs it hands out must reach it from the Airflow containers.
    assert options["--external-url"] == "http://itembank:8929"
    assert itembank["environment"]["ITEMBANK_TOKENS"].startswith("${ITEMBANK_TOKENS")


def test_compose_databases(compose):
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:16"
    assert services["imrt-db"]["image"] == "postgres:16"
    assert services["imrt-db"]["environment"]["POSTGRES_DB"] == "imrt"
    volumes = {v.split(":")[0] for name in ("postgres", "imrt-db") for v in services[name]["volumes"]}
    assert len(volumes) == 2, "each database has its own volume"


# ------------------------------------------------------------------------------------- imrt schema migrations

MIGRATE_UPGRADE = ["python", "-m", "imrt_compat.migrate", "upgrade"]


def test_compose_migrates_the_imrt_database_once_before_the_airflow_services(compose):
    services = compose["services"]
    migrate = services["imrt-migrate"]
    assert migrate["command"] == MIGRATE_UPGRADE
    assert migrate["image"] == compose["x-airflow-common"]["image"]
    assert migrate["environment"]["AIRFLOW_CONN_IMRT_DEFAULT"] == _common_env(compose)["AIRFLOW_CONN_IMRT_DEFAULT"]
    assert migrate["depends_on"]["imrt-db"]["condition"] == "service_healthy"
    assert migrate.get("restart", "no") == "no", "a one-shot job"
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services[name]["depends_on"]["imrt-migrate"]["condition"] == "service_completed_successfully", name


# ------------------------------------------------------------------------------------------------ authentication

AUTH_MANAGER = "imrt_compat.fab_auth.ImrtFabAuthManager"
ROLES_COMMAND = "python -m imrt_compat.roles"


def _init_script(compose: dict) -> str:
    command = compose["services"]["airflow-init"]["command"]
    return command[-1] if isinstance(command, list) else command


def _helm_user_script(helm: dict) -> str:
    return helm["createUserJob"]["args"][-1]


def _roles_user_commands(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if f"{ROLES_COMMAND} user" in line]


def test_the_configured_auth_manager_is_fabs():
    from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager
    from imrt_compat.fab_auth import ImrtFabAuthManager

    assert f"{ImrtFabAuthManager.__module__}.{ImrtFabAuthManager.__qualname__}" == AUTH_MANAGER
    assert issubclass(ImrtFabAuthManager, FabAuthManager)


def test_no_simple_auth_manager_setting_is_left(compose, helm):
    env = _common_env(compose)
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == AUTH_MANAGER
    assert not [key for key in env if "SIMPLE_AUTH_MANAGER" in key]
    assert helm["config"]["core"]["auth_manager"] == AUTH_MANAGER
    assert not [key for key in helm["config"]["core"] if key.startswith("simple_auth_manager")]


def test_compose_init_makes_the_role_and_the_users_after_the_migration(compose):
    from imrt_compat.roles import AUTOMATION_ROLE

    lines = [line.strip() for line in _init_script(compose).splitlines()]
    migrate = lines.index("/entrypoint airflow db migrate")
    role = lines.index(f"/entrypoint {ROLES_COMMAND} role")
    users = _roles_user_commands(_init_script(compose))
    assert migrate < role < min(lines.index(line) for line in users)
    assert any("--role Admin --password-env _AIRFLOW_ADMIN_PASSWORD" in line for line in users)
    assert any(f'--role "{AUTOMATION_ROLE}" --password-env _IMRT_AUTOMATION_PASSWORD' in line for line in users)
    env = compose["services"]["airflow-init"]["environment"]
    assert env["_AIRFLOW_ADMIN_PASSWORD"].startswith("${AIRFLOW_ADMIN_PASSWORD:?")
    assert env["_IMRT_AUTOMATION_PASSWORD"] == "${IMRT_AUTOMATION_PASSWORD:-}"


def test_no_password_is_passed_on_a_command_line(compose, helm):
    for script in (_init_script(compose), _helm_user_script(helm)):
        assert "airflow users" not in script, "FAB's `airflow users create` takes the password as an argument"
        for line in _roles_user_commands(script):
            assert not re.search(r"\s(-p|--password)(\s|=)", line), line
            assert "--password-env" in line
