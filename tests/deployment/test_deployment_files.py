"""The deployment files: docker-compose.yaml (and docker-compose.dev.yaml), helm-values.yaml, Dockerfile,
.env.example, .dockerignore, the images built beside them (deploy/), and the deploy test's own rules.

No Docker engine or Helm is needed: the two YAML files are validated against their JSON schemas (Compose
Specification, the Airflow chart's values.schema.json) with jsonschema's Draft7Validator, and the rest is checked
as data. The schemas folder comes from ``IMRT_SCHEMAS_DIR``, by default ``../shared/schemas`` beside the clone:
without the files there, the schema tests fail (they never skip).
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
COMPOSE_DEV_FILE = ROOT / "docker-compose.dev.yaml"
COMPOSE_OIDC_FILE = ROOT / "docker-compose.oidc.yaml"
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
# One-shot services of the project image that prepare the imrt database before Airflow starts.
IMRT_JOBS = {"imrt-bootstrap", "imrt-migrate"}
SECRETS_DIR = "/run/secrets/"
SENSITIVE_KEY = re.compile(r"secret|password|token|fernet|conn", re.IGNORECASE)
# ${VAR}, ${VAR:?msg}, ${VAR?msg}, ${VAR:-default}, ${VAR-default}, ${VAR:+alt}, ${VAR+alt}; not $${...}, which
# Compose passes on as a literal ${...} for the container's shell.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
# A run of 24+ key-like characters: with two of upper case, lower case and digits, a generated secret or token
# (names like AIRFLOW__CORE__EXECUTOR have one; "/" splits runs, so URL paths are not taken for one).
KEY_RUN = re.compile(r"[A-Za-z0-9_\-=]{24,}")
# user:password@ in a URL, with a literal password (an interpolation has been replaced by "\x00" first; a printf
# "%s" filled from a secret file is not a literal either).
URL_PASSWORD = re.compile(r"://[^/\s:@]+:(?!\x00@)(?!%s@)[^@\s/]+@")


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
def oidc_overlay() -> dict:
    return _load_yaml(COMPOSE_OIDC_FILE)


@pytest.fixture(scope="module")
def helm() -> dict:
    return _load_yaml(HELM_FILE)


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def pinned_airflow() -> str:
    text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    found = re.findall(r"^apache-airflow==([^\s\\]+)", text, flags=re.MULTILINE)
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


def test_the_oidc_overlay_matches_the_compose_specification(schemas_dir, oidc_overlay):
    assert _errors(_validator(schemas_dir / COMPOSE_SCHEMA), oidc_overlay) == []


def test_the_validators_catch_mistakes(schemas_dir, compose):
    """The schema is strict enough to be worth running: a typo'd key fails (the Helm values' schema tests, against
    the pinned chart version: test_helm_values.py)."""
    bad_compose = json.loads(json.dumps(compose))
    bad_compose["services"]["airflow-scheduler"]["restart_policy"] = "always"
    assert _errors(_validator(schemas_dir / COMPOSE_SCHEMA), bad_compose)


# ------------------------------------------------------------------------------------------------ secrets


# Where a secret-looking key may point instead of holding a value: a *_FILE path or a command or JSON reading files
# under /run/secrets (Docker secrets), or an import path (AIRFLOW__SECRETS__BACKEND names a class, not a secret).
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*$")


def _secret_reference(key: str, text: str) -> bool:
    if key.upper().endswith("_FILE"):
        return text.startswith(SECRETS_DIR)
    if key.upper().endswith(("_CMD", "_KWARGS")):
        return SECRETS_DIR in text and not INTERPOLATION.search(text)
    return key.upper().endswith("__BACKEND") and bool(IMPORT_PATH.match(text))


def _compose_secret_problems(compose: dict) -> list[str]:
    """Literal secrets anywhere, and any secret-looking key that is not a reference to a Docker secret: a secret
    never reaches a container as a plain environment variable, not even interpolated from .env."""
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
        if not _secret_reference(key, text):
            problems.append(
                f"{where}: {key} must be read from a Docker secret (*_FILE, or *_CMD reading "
                f"{SECRETS_DIR}), not set in the environment: {text!r}"
            )
    return problems


def test_compose_file_holds_no_secret_values(compose):
    assert _compose_secret_problems(compose) == []


def test_compose_secret_check_catches_literals_and_plain_environment(compose):
    bad = json.loads(json.dumps(compose))
    env = bad["services"]["airflow-scheduler"].setdefault("environment", {})
    env["AIRFLOW__API_AUTH__JWT_SECRET"] = "hunter2"
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "postgresql://airflow:airflow@postgres/airflow"
    env["AIRFLOW__CORE__FERNET_KEY"] = "${AIRFLOW_FERNET_KEY:-Zm9vYmFyYmF6cXV4cXV1eHF1dXh4eHh4eHh4eHh4eA=}"
    env["AIRFLOW__API__SECRET_KEY"] = "${AIRFLOW_API_SECRET_KEY:?set it}"  # from .env: still plain environment
    env["AIRFLOW_CONN_IMRT_DEFAULT"] = "${AIRFLOW_CONN_IMRT_DEFAULT}"
    env["POSTGRES_PASSWORD_FILE"] = "/tmp/password"  # a file, but not a Docker secret
    env["AIRFLOW__CORE__FERNET_KEY_CMD"] = "cat ${FERNET_FILE}"
    env["SOMETHING"] = "aB3dE5gH7jK9mN1pQ3sT5vW7"
    problems = "\n".join(_compose_secret_problems(bad))
    for key in (
        "JWT_SECRET",
        "SQL_ALCHEMY_CONN",
        "FERNET_KEY:",
        "SECRET_KEY",
        "AIRFLOW_CONN_IMRT_DEFAULT",
        "POSTGRES_PASSWORD_FILE",
        "FERNET_KEY_CMD",
        "SOMETHING",
    ):
        assert key in problems, key


def test_helm_takes_every_airflow_secret_from_kubernetes_secrets(helm):
    for key in ("jwtSecretName", "apiSecretKeySecretName", "fernetKeySecretName"):
        assert helm.get(key), f"{key} must name a Kubernetes Secret"
    assert helm["data"]["metadataSecretName"]
    assert helm["postgresql"]["enabled"] is False


def test_env_example_lists_every_compose_variable_without_values_for_secrets(compose, oidc_overlay):
    wanted = {
        match["name"]
        for document in (compose, oidc_overlay)
        for _, value in _walk(document)
        if isinstance(value, str)
        for match in INTERPOLATION.finditer(value)
    }
    lines = [line for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    listed = dict(line.split("=", 1) for line in lines)
    assert sorted(wanted - listed.keys()) == []
    for name, value in listed.items():
        # Secrets are files (IMRT_SECRETS_DIR names their folder), never variables.
        assert not SENSITIVE_KEY.search(name) or name == "IMRT_SECRETS_DIR", f".env.example: {name} looks secret"
        assert not _looks_like_secret(value), f".env.example: {name} holds something that looks like a real secret"


def test_env_example_names_every_secret_file(compose, oidc_overlay):
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for secret in [*compose["secrets"].values(), *oidc_overlay["secrets"].values()]:
        name = secret["file"].rsplit("/", 1)[-1]
        assert name in text, f".env.example does not say how to write the secret file {name}"


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


def _published(service: dict) -> list[str]:
    return [
        port if isinstance(port, str) else f"{port.get('host_ip')}:{port['published']}:{port['target']}"
        for port in service.get("ports", [])
    ]


def test_only_the_proxy_publishes_the_api_and_the_rest_stays_on_the_loopback_interface(compose):
    services = compose["services"]
    assert "ports" not in services["airflow-apiserver"], "the API server is reached through the proxy only"
    (proxy_port,) = _published(services["proxy"])
    assert proxy_port == "${IMRT_PROXY_BIND:-127.0.0.1}:${IMRT_HTTPS_PORT:-443}:${IMRT_HTTPS_PORT:-443}"
    for name, service in services.items():
        if name != "proxy":
            for port in _published(service):
                assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond the loopback interface"


def test_the_external_url_sets_base_url_the_hook_url_and_the_proxy_fix(compose):
    env = _common_env(compose)
    external = "https://${IMRT_EXTERNAL_HOST:?set IMRT_EXTERNAL_HOST in .env}:${IMRT_HTTPS_PORT:-443}"
    assert env["AIRFLOW__API__BASE_URL"] == external
    assert env["AIRFLOW_VAR_IMRT_WEBHOOK_URL"] == f"{external}/webHook"
    assert env["AIRFLOW__FAB__ENABLE_PROXY_FIX"] == "True"
    api_server = compose["services"]["airflow-apiserver"]
    assert api_server["command"] == ["api-server", "--proxy-headers"]
    assert api_server["environment"]["FORWARDED_ALLOW_IPS"] == "*"
    proxy = compose["services"]["proxy"]
    assert proxy["environment"]["IMRT_EXTERNAL_HOST"].startswith("${IMRT_EXTERNAL_HOST:?")
    # Inside the network the external name is the proxy too (the demo GitLab calls the hook URL through it).
    assert proxy["networks"]["default"]["aliases"] == ["${IMRT_EXTERNAL_HOST:?set IMRT_EXTERNAL_HOST in .env}"]
    assert {"tls_certificate", "tls_private_key"} <= set(proxy["secrets"])
    template = (ROOT / "deploy" / "proxy" / "imrt.conf.template").read_text(encoding="utf-8")
    for header in ("X-Forwarded-For", "X-Forwarded-Proto https", "X-Forwarded-Host", "X-Forwarded-Port"):
        assert f"proxy_set_header {header}" in template
    assert "listen ${IMRT_HTTPS_PORT} ssl" in template and "/run/secrets/tls_certificate" in template


def test_alerts_are_configured_from_the_deployment(compose):
    env = _common_env(compose)
    assert env["AIRFLOW__IMRT__ALERT_EMAIL_TO"].startswith("${IMRT_ALERT_EMAIL_TO:?"), "required: no silent day one"
    assert env["AIRFLOW__IMRT__ALERT_EMAIL_FROM"].startswith("${IMRT_ALERT_EMAIL_FROM:?")
    assert "smtp_default" in ENV_EXAMPLE.read_text(encoding="utf-8")
    from devstack.deploy_test.settings import connections

    assert connections("x", "y")["smtp_default"]["conn_type"] == "smtp"


def _service_secrets(service: dict) -> set[str]:
    return {item if isinstance(item, str) else item["source"] for item in service.get("secrets", [])}


def test_secrets_reach_the_services_as_docker_secret_files(compose):
    services = compose["services"]
    common = _service_secrets(compose["x-airflow-common"])
    assert common == {
        "airflow_db_password",
        "airflow_jwt_secret",
        "airflow_api_secret_key",
        "airflow_fernet_key",
        "airflow_connections",
        "airflow_variables",
    }
    for name in AIRFLOW_SERVICES | IMRT_JOBS:
        assert common <= _service_secrets(services[name]), name
    assert _service_secrets(services["airflow-init"]) - common == {"airflow_admin_password", "imrt_automation_password"}
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/airflow_db_password"
    assert services["imrt-db"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/imrt_db_password"
    for name, secret in compose["secrets"].items():
        assert secret["file"].startswith("${IMRT_SECRETS_DIR:-./secrets}/"), name
    # The local-filesystem secrets backend picks its parser by the file's extension.
    kwargs = json.loads(_common_env(compose)["AIRFLOW__SECRETS__BACKEND_KWARGS"])
    targets = {item["target"] for item in compose["x-airflow-common"]["secrets"] if isinstance(item, dict)}
    for path in kwargs.values():
        assert path.endswith(".json") and path.removeprefix(SECRETS_DIR) in targets
    for key, value in _common_env(compose).items():
        if key.endswith("_CMD"):
            assert re.search(r"\$\$\(cat /run/secrets/\w+\)", value), f"{key} reads a secret file: {value}"


def test_no_bind_mount_in_the_compose_file(compose):
    """The image's code is what runs: only named volumes (declared at the top) are mounted."""
    declared = set(compose["volumes"])
    for name, service in [("x-airflow-common", compose["x-airflow-common"]), *compose["services"].items()]:
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                assert volume.get("type") == "volume" and volume["source"] in declared, f"{name}: {volume}"
            else:
                source = volume.split(":")[0]
                assert source in declared, f"{name} mounts {source}: only named volumes (no bind mount)"
    for key in _common_env(compose):
        assert key != "PYTHONPATH", "nothing from the checkout goes on the path"


def test_the_development_override_mounts_the_checkout_and_is_never_merged_by_default():
    assert not (ROOT / "docker-compose.override.yaml").exists(), "Compose would merge it into every `up`"
    dev = _load_yaml(COMPOSE_DEV_FILE)
    for name in AIRFLOW_SERVICES | IMRT_JOBS:
        service = dev["services"][name]
        assert "./include:/opt/airflow/include:ro" in service["volumes"], name
        assert service["environment"]["PYTHONPATH"] == "/opt/airflow/include"
    from devstack.deploy_test.engine import Compose

    command = Compose(ROOT, ROOT / ".env").command("up")
    files = [command[index + 1] for index, part in enumerate(command) if part == "--file"]
    assert files == [str(COMPOSE_FILE), str(COMPOSE_OIDC_FILE)], "the deploy test runs the shipped files as written"


def test_every_airflow_service_gets_the_common_environment(compose):
    common = _common_env(compose)
    services = compose["services"]
    assert services.keys() >= AIRFLOW_SERVICES
    for name in AIRFLOW_SERVICES | IMRT_JOBS:
        env = services[name]["environment"]
        different = {k for k, v in common.items() if env.get(k) != v}
        assert different == set(), f"{name}: {sorted(different)} differ from x-airflow-common"
        assert services[name]["image"] == compose["x-airflow-common"]["image"]
    # The values that have to be identical everywhere are really there.
    for key in (
        "AIRFLOW__API_AUTH__JWT_SECRET_CMD",
        "AIRFLOW__API__SECRET_KEY_CMD",
        "AIRFLOW__CORE__FERNET_KEY_CMD",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
        "AIRFLOW__SECRETS__BACKEND",
        "AIRFLOW__SECRETS__BACKEND_KWARGS",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__CORE__MAX_MAP_LENGTH",
        "AIRFLOW__API__BASE_URL",
        "AIRFLOW_VAR_IMRT_GITLAB_GROUP",
        "AIRFLOW_VAR_IMRT_WEBHOOK_URL",
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
    assert "airflow-logs:/opt/airflow/logs" in common


def test_every_long_running_service_has_a_health_check_and_restarts(compose):
    for name, service in compose["services"].items():
        if name in IMRT_JOBS or name == "airflow-init":
            assert service.get("restart", "no") == "no", f"{name} is a one-shot job"
        else:
            assert service["healthcheck"]["test"], name
            assert service["restart"] == "always", name


def test_demo_profile_holds_the_item_bank_and_the_mail_sink(compose):
    services = compose["services"]
    demo = {name for name, service in services.items() if "demo" in service.get("profiles", [])}
    assert demo == {"itembank", "mailsink"}
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == demo, "everything else starts with a plain `docker compose up`"
    itembank = services["itembank"]
    # Its own image from include/itembank_server, never the product image.
    assert itembank["image"] != compose["x-airflow-common"]["image"]
    assert itembank["build"] == {
        "context": "./include/itembank_server",
        "dockerfile": "../../deploy/itembank/Dockerfile",
    }
    args = list(itembank["command"])
    assert args[0] == "serve"
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert options["--host"] == "0.0.0.0"
    assert options["--port"] == "8929"
    assert options["--group"] == "iat-demo"
    assert options["--generate"] == "300"
    # The repository URLs it hands out must reach it from the Airflow containers.
    assert options["--external-url"] == "http://itembank:8929"
    assert options["--hook-ca-bundle"] == "/run/secrets/tls_certificate"
    assert "itembank_tokens" in _service_secrets(itembank) and "environment" not in itembank


def test_the_oidc_overlay_holds_no_secret_values(oidc_overlay):
    assert _compose_secret_problems(oidc_overlay) == []


def test_the_oidc_overlay_gives_the_api_server_the_login_configuration_and_the_client_secret_as_a_file(
    oidc_overlay, dockerfile
):
    # oauth_login builds FAB's settings from the environment when imported: read, not imported.
    oauth_login = (ROOT / "include/imrt_compat/oauth_login.py").read_text(encoding="utf-8")
    api_server = oidc_overlay["services"]["airflow-apiserver"]
    assert set(api_server) == {"environment", "secrets"}, "the overlay only adds the login to the API server"
    env = api_server["environment"]
    # FAB's configuration file is the image's copy of imrt_compat/oauth_login.py.
    assert "COPY --chown=airflow:0 include/imrt_compat/ /opt/airflow/include/imrt_compat/" in dockerfile
    assert env["AIRFLOW__FAB__CONFIG_FILE"] == "/opt/airflow/include/imrt_compat/oauth_login.py"
    assert f'DEFAULT_CLIENT_SECRET_FILE = "{env["IMRT_OIDC_CLIENT_SECRET_FILE"]}"' in oauth_login
    assert _service_secrets(api_server) == {"imrt_oidc_client_secret"}
    required = set(re.findall(r'_required\(environ, "(IMRT_OIDC_\w+)"\)', oauth_login))
    assert required == {"IMRT_OIDC_DISCOVERY_URL", "IMRT_OIDC_CLIENT_ID", "IMRT_OIDC_ROLES_MAPPING"}
    for name in required:  # from .env, and `docker compose` stops naming the variable when it is not set
        assert env[name] == f"${{{name}:?set {name} in .env}}", name
    for name, secret in oidc_overlay["secrets"].items():
        assert secret["file"].startswith("${IMRT_SECRETS_DIR:-./secrets}/"), name


def test_the_oidc_overlay_demo_provider_is_reached_under_one_name_by_the_browser_and_the_api_server(oidc_overlay):
    idp = oidc_overlay["services"]["idp"]
    assert idp["profiles"] == ["demo"]
    assert idp["build"] == {
        "context": "./include/devstack/oidc_provider",
        "dockerfile": "../../../deploy/idp/Dockerfile",
    }
    assert (
        ROOT / "include/devstack/oidc_provider" / idp["build"]["dockerfile"]
    ).resolve() == ROOT / "deploy/idp/Dockerfile"
    args = list(idp["command"])
    assert args[0] == "serve"
    options = dict(zip(args[1::2], args[2::2], strict=True))
    host, port = "${IMRT_IDP_HOST:-idp.imrt.localhost}", "${IMRT_IDP_PORT:-8180}"
    # The issuer names the host and port the browser uses; inside the network the same name is the service's.
    assert options["--issuer"] == f"http://{host}:{port}/realms/imrt"
    assert options["--port"] == port and options["--host"] == "0.0.0.0"
    assert idp["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert idp["networks"]["default"]["aliases"] == [host]
    assert options["--config"] == "/run/secrets/imrt_idp_config.json"
    assert {"imrt_idp_config", "imrt_oidc_client_secret"} == _service_secrets(idp)
    assert [volume.split(":")[0] for volume in idp["volumes"]] == ["idp-data"]
    assert set(oidc_overlay["volumes"]) == {"idp-data"}
    assert idp["healthcheck"]["test"] and idp["restart"] == "always"


def test_the_demo_item_bank_image_installs_what_its_server_imports():
    """Every distribution a module of include/itembank_server imports is installed by deploy/itembank/Dockerfile
    (the image holds nothing else: a missing one fails the image's build, as graphql-core once did)."""
    imported = set()
    for path in (ROOT / "include" / "itembank_server").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"itembank_server"}
    distributions = importlib.metadata.packages_distributions()
    needed = {re.sub(r"[-_.]+", "-", name).lower() for module in third_party for name in distributions[module]}
    dockerfile = (ROOT / "deploy" / "itembank" / "Dockerfile").read_text(encoding="utf-8")
    pinned = {re.sub(r"[-_.]+", "-", name).lower() for name in re.findall(r"\b([A-Za-z][\w.-]*)==\S+", dockerfile)}
    assert needed and needed <= pinned, sorted(needed - pinned)


def test_the_demo_item_bank_image_pins_the_development_lock():
    dockerfile = (ROOT / "deploy" / "itembank" / "Dockerfile").read_text(encoding="utf-8")
    pinned = dict(re.findall(r"\b([A-Za-z][\w.-]*)==(\S+)", dockerfile))
    lock = dict(
        re.findall(r"^([A-Za-z][\w.-]*)==([^\s\\]+)", (ROOT / "requirements-dev.txt").read_text(), re.MULTILINE)
    )
    assert pinned and all(lock.get(name) == version for name, version in pinned.items()), pinned


def test_compose_databases(compose):
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:16"
    assert services["imrt-db"]["image"] == "postgres:16"
    assert services["imrt-db"]["environment"]["POSTGRES_DB"] == "imrt"
    volumes = {v.split(":")[0] for name in ("postgres", "imrt-db") for v in services[name]["volumes"]}
    assert len(volumes) == 2, "each database has its own volume"


# ------------------------------------------------------------------------------------- imrt schema migrations

MIGRATE_UPGRADE = ["python", "-m", "imrt_compat.migrate", "upgrade"]
BOOTSTRAP_LEGACY = ["python", "-m", "imrt_compat.migrate", "bootstrap-legacy"]


def test_compose_bootstraps_then_migrates_the_imrt_database_before_the_airflow_services(compose):
    services = compose["services"]
    bootstrap, migrate = services["imrt-bootstrap"], services["imrt-migrate"]
    assert bootstrap["command"] == BOOTSTRAP_LEGACY
    assert migrate["command"] == MIGRATE_UPGRADE
    for job in (bootstrap, migrate):
        assert job["image"] == compose["x-airflow-common"]["image"]
        assert job["depends_on"]["imrt-db"]["condition"] == "service_healthy"
        assert job.get("restart", "no") == "no", "a one-shot job"
    assert migrate["depends_on"]["imrt-bootstrap"]["condition"] == "service_completed_successfully"
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
    # Each password is read from its secret file into the environment of the one command that needs it.
    assert any('_AIRFLOW_ADMIN_PASSWORD="$$(cat /run/secrets/airflow_admin_password)"' in line for line in users)
    assert any('_IMRT_AUTOMATION_PASSWORD="$$(cat /run/secrets/imrt_automation_password)"' in line for line in users)
    env = compose["services"]["airflow-init"]["environment"]
    assert not [key for key in env if "PASSWORD" in key]


def test_no_password_is_passed_on_a_command_line(compose, helm):
    for script in (_init_script(compose), _helm_user_script(helm)):
        assert "airflow users" not in script, "FAB's `airflow users create` takes the password as an argument"
        for line in _roles_user_commands(script):
            assert not re.search(r"\s(-p|--password)(\s|=)", line), line
            assert "--password-env" in line
