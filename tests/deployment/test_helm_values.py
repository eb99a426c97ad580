"""The Helm deployment: helm-values.yaml for the official Apache Airflow chart, pinned to version 1.22.0, and the
EdgeExecutor example under deploy/helm/ (an overlay of the values and a Deployment of edge workers).

Neither Helm nor Kubernetes exists here, so nothing is installed or rendered by Helm. What can be checked without them:

* the values (alone and with the edge overlay) against the chart's values schema (jsonschema ``Draft7Validator``);
* the template strings the values rely on, rendered by a small renderer of exactly the expressions they use, and
  only where the chart renders that value with ``tpl``;
* every image the files name: the project image only, the same everywhere, taken from ``images.airflow`` by the
  chart's own image helper wherever the chart allows it (the migration job included);
* every command the files run, against the packages of the project image (installed here from the same runtime
  lock): the modules exist, are shipped, and their argument parsers accept the arguments; the Airflow CLI accepts
  the ``airflow`` commands (its providers' commands included, e.g. ``airflow edge worker``);
* that no secret is a value or an environment variable: Secrets are mounted as files, read through ``_CMD`` options
  and Airflow's local-filesystem secrets backend.

Chart facts relied on (chart source, apache/airflow ``chart/``):

* ``templates/_helpers.yaml``: ``airflow.fullname`` (the release name when it contains the chart name, else
  ``<release>-airflow``), ``custom_airflow_environment`` (``env`` values quoted as they are; ``extraEnv`` through
  ``tpl``), ``airflow_image`` / ``airflow_image_for_migrations`` (``images.airflow`` unless
  ``images.useDefaultImageForMigration``), ``standard_airflow_environment`` (each built-in secret variable behind its
  ``enableBuiltInSecretEnvVars`` switch);
* ``templates/api-server/api-server-deployment.yaml``: ``apiServer.extraInitContainers`` is rendered with plain
  ``toYaml`` (no ``tpl``), so no template string may go there; the values use no init container at all;
* ``values.schema.json``: the ``(templated)`` values (``config``, ``extraEnv``, the jobs' ``args``);
* chart 1.19.0 moved the create-user job's switch and default user from ``webserver.defaultUser`` to
  ``createUserJob.enabled`` / ``createUserJob.defaultUser`` (apache/airflow#59767).

The schema: ``IMRT_SCHEMAS_DIR`` (default ``../shared/schemas``) holds ``airflow-chart-values.schema.json`` from an
apache/airflow commit of the 1.19.0 development line, older than the pinned chart: it lacks the keys 1.19.0 added
(``createUserJob.enabled``, ``createUserJob.defaultUser``) and a schema for ``ingress.apiServer``. The tests validate
against that schema plus exactly those additions (:data:`PINNED_CHART_ADDITIONS`), structured like their siblings.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HELM_FILE = ROOT / "helm-values.yaml"
EDGE_VALUES_FILE = ROOT / "deploy" / "helm" / "values-edge.yaml"
OIDC_VALUES_FILE = ROOT / "deploy" / "helm" / "values-oidc.yaml"
EDGE_WORKER_FILE = ROOT / "deploy" / "helm" / "edge-worker.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

CHART_VERSION = "1.22.0"
MIN_HELM = "3.19.0"
RELEASE = "imrt-airflow"  # the release name the docs use and deploy/helm/edge-worker.yaml assumes
CHART_NAME = "airflow"

SCHEMAS_ENV = "IMRT_SCHEMAS_DIR"
DEFAULT_SCHEMAS_DIR = ROOT.parent / "shared" / "schemas"
CHART_SCHEMA = "airflow-chart-values.schema.json"

SHIPPED_PACKAGES = {"imrt_sync", "imrt_compat"}
AUTOMATION_ROLE = "IMRT Sync Automation"
AIRFLOW_SECRETS_DIR = "/opt/airflow/secrets/airflow"
IMRT_SECRETS_DIR = "/opt/airflow/secrets/imrt"
USERS_SECRETS_DIR = "/opt/airflow/secrets/users"

SENSITIVE_KEY = re.compile(r"secret|password|token|fernet|conn", re.IGNORECASE)
KEY_RUN = re.compile(r"[A-Za-z0-9_\-=]{24,}")
URL_PASSWORD = re.compile(r"://[^/\s:@]+:[^@\s/]+@")


# ------------------------------------------------------------------------------------------------ loading


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _merge(base: Any, overlay: Any) -> Any:
    """Helm's merge of several ``-f`` files: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(overlay)


def _walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, index))


@pytest.fixture(scope="module")
def helm() -> dict:
    return _load_yaml(HELM_FILE)


@pytest.fixture(scope="module")
def edge_values() -> dict:
    return _load_yaml(EDGE_VALUES_FILE)


@pytest.fixture(scope="module")
def helm_edge(helm, edge_values) -> dict:
    return _merge(helm, edge_values)


@pytest.fixture(scope="module")
def helm_oidc(helm) -> dict:
    return _merge(helm, _load_yaml(OIDC_VALUES_FILE))


@pytest.fixture(scope="module")
def edge_worker() -> dict:
    return _load_yaml(EDGE_WORKER_FILE)


@pytest.fixture(scope="module")
def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["project"]["version"]


@pytest.fixture(scope="module")
def base_schema() -> dict:
    configured = os.environ.get(SCHEMAS_ENV) or str(DEFAULT_SCHEMAS_DIR)
    path = Path(configured) / CHART_SCHEMA
    if not path.is_file():
        pytest.fail(f"{SCHEMAS_ENV}={configured} but {CHART_SCHEMA} not found there", pytrace=False)
    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ schema


def pinned_chart_schema(base: dict) -> dict:
    """The shared schema plus what chart 1.19.0 .. 1.22.0 added that the values use (module docstring)."""
    schema = copy.deepcopy(base)
    props = schema["properties"]
    user_job = props["createUserJob"]["properties"]
    assert "enabled" not in user_job, "the shared schema has createUserJob.enabled now: drop the addition"
    user_job["enabled"] = {"description": "Whether the create user job should be created.", "type": "boolean"}
    user_job["defaultUser"] = copy.deepcopy(props["webserver"]["properties"]["defaultUser"])
    ingress = props["ingress"]["properties"]
    assert "apiServer" not in ingress, "the shared schema has ingress.apiServer now: drop the addition"
    ingress["apiServer"] = copy.deepcopy(ingress["web"])
    return schema


PINNED_CHART_ADDITIONS = ("createUserJob.enabled", "createUserJob.defaultUser", "ingress.apiServer")


def _validator(schema: dict) -> jsonschema.Draft7Validator:
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(schema: dict, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in sorted(_validator(schema).iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


def test_values_match_the_pinned_charts_schema(base_schema, helm):
    assert _errors(pinned_chart_schema(base_schema), helm) == []


def test_values_with_the_edge_overlay_match_the_schema(base_schema, helm_edge):
    assert _errors(pinned_chart_schema(base_schema), helm_edge) == []
    assert helm_edge["executor"] == "airflow.providers.edge3.executors.EdgeExecutor"
    assert helm_edge["config"]["core"] == (_load_yaml(HELM_FILE))["config"]["core"], "the overlay keeps the rest"


def test_values_with_the_oidc_overlay_match_the_schema_and_hold_no_secret(base_schema, helm, helm_oidc):
    assert _errors(pinned_chart_schema(base_schema), helm_oidc) == []
    assert helm_secret_problems(helm_oidc) == []
    assert helm_oidc["apiServer"]["args"] == helm["apiServer"]["args"], "the overlay keeps the proxy headers"


def test_the_oidc_overlay_configures_the_login_and_reads_the_client_secret_from_a_mounted_secret(helm_oidc):
    api_server = helm_oidc["apiServer"]
    assert api_server["apiServerConfig"].strip() == "from imrt_compat.oauth_login import *"
    assert importlib.util.find_spec("imrt_compat.oauth_login") is not None
    env = {item["name"]: item["value"] for item in api_server["env"]}
    oauth_login = (ROOT / "include" / "imrt_compat" / "oauth_login.py").read_text(encoding="utf-8")
    required = set(re.findall(r'_required\(environ, "(IMRT_OIDC_\w+)"\)', oauth_login))
    assert required and required <= set(env)
    json.loads(env["IMRT_OIDC_ROLES_MAPPING"])
    files = _mounted_files(api_server["extraVolumes"], api_server["extraVolumeMounts"])
    secret_dir = env["IMRT_OIDC_CLIENT_SECRET_FILE"].rsplit("/", 1)[0]
    assert files == {f"{secret_dir}/*": "imrt-oidc-client/*"}
    assert env["IMRT_OIDC_CLIENT_SECRET_FILE"] == f"{secret_dir}/client_secret"  # the key the docs' kubectl writes
    assert "--from-file=client_secret=" in OIDC_VALUES_FILE.read_text(encoding="utf-8")


def test_the_schema_catches_mistakes(base_schema, helm):
    schema = pinned_chart_schema(base_schema)
    for mutate in (
        lambda v: v["apiServer"].__setitem__("replica", 2),
        lambda v: v["createUserJob"].__setitem__("enable", True),
        lambda v: v["createUserJob"].__setitem__("enabled", "yes"),
        lambda v: v["ingress"]["apiServer"]["hosts"][0].__setitem__("host", "x"),
        lambda v: v["migrateDatabaseJob"].__setitem__("arg", []),
        lambda v: v["volumes"][0]["projected"]["sources"][0]["secret"].__setitem__("secretName", "x"),
    ):
        bad = copy.deepcopy(helm)
        mutate(bad)
        assert _errors(schema, bad), "a mistake the schema should catch"


def test_current_keys_only(helm):
    """Chart 1.19.0 replaced webserver.defaultUser; Airflow 3 has no webserver component (the API server's keys)."""
    assert "webserver" not in helm, "webserver.* is Airflow 2's component (defaultUser moved to createUserJob)"
    assert helm["createUserJob"]["enabled"] is True
    assert "defaultUser" not in helm["createUserJob"], "the job runs imrt_compat.roles: the chart's user is unused"
    for key in ("webserverSecretKey", "webserverSecretKeySecretName", "webserverSecretAnnotations"):
        assert key not in helm
    assert "web" not in helm.get("ingress", {}), "ingress.web is the Airflow 2 webserver's"


def test_the_chart_version_and_helm_are_pinned_where_the_install_is_described():
    header = HELM_FILE.read_text(encoding="utf-8")
    assert f'chart "airflow" version {CHART_VERSION}' in header
    assert f"--version {CHART_VERSION}" in header and f"Helm {MIN_HELM}" in header
    assert f"--version {CHART_VERSION}" in EDGE_VALUES_FILE.read_text(encoding="utf-8")
    section = _kubernetes_section()
    assert f"--version {CHART_VERSION}" in section
    assert MIN_HELM in section
    assert "helm upgrade --install" in section
    for line in section.splitlines():
        if "helm upgrade --install" in line:
            assert f"--version {CHART_VERSION}" in line, line


def _kubernetes_section() -> str:
    text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    start = text.index("## Kubernetes: the official Helm chart")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_the_docs_say_that_kubernetes_was_not_run_here():
    section = _kubernetes_section()
    assert "not run here" in section.lower() or "never ran" in section.lower()
    assert "tests/deployment/test_helm_values.py" in section


# ------------------------------------------------------------------------------------------------ rendering


class TemplateError(ValueError):
    pass


TEMPLATE = re.compile(r"\{\{-?\s*(?P<expr>.*?)\s*-?\}\}")
VALUES_PATH = re.compile(r"^\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)$")
FIELDS = r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+"
INDEX_FIELD = re.compile(rf"^\(index\s+(?P<path>\.Values{FIELDS})\s+(?P<n>\d+)\)(?P<rest>{FIELDS})$")
INCLUDE = re.compile(r'^(?:include|template)\s+"(?P<name>[^"]+)"\s+\.$')


def _schema_default(schema: dict, keys: list[str]) -> Any:
    node = schema
    for key in keys:
        node = node.get("properties", {}).get(key)
        if node is None:
            raise TemplateError(f".Values.{'.'.join(keys)}: neither in the values nor in the chart's defaults")
    if "default" not in node:
        raise TemplateError(f".Values.{'.'.join(keys)}: no default in the chart's schema")
    return node["default"]


def _lookup(values: dict, schema: dict, keys: list[str]) -> Any:
    node: Any = values
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return _schema_default(schema, keys)
        node = node[key]
    return node


def _fields(node: Any, keys: list[str], where: str) -> Any:
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise TemplateError(f"{where}: no field {key!r}")
        node = node[key]
    return node


def fullname(values: dict, release: str) -> str:
    """The chart's ``airflow.fullname`` helper (templates/_helpers.yaml)."""
    if values.get("fullnameOverride"):
        return values["fullnameOverride"][:63].rstrip("-")
    name = values.get("nameOverride") or CHART_NAME
    return (release if name in release else f"{release}-{name}")[:63].rstrip("-")


def render(text: str, values: dict, schema: dict, release: str = RELEASE) -> str:
    """Render the Go-template expressions the values use, as Helm's ``tpl`` would; anything else is an error.

    Supported: ``{{ .Values.a.b }}`` (a value, else the chart's default from its schema),
    ``{{ (index .Values.a.b N).c }}`` and ``{{ include "airflow.fullname" . }}``.
    """

    def expression(match: re.Match) -> str:
        expr = match["expr"]
        if found := VALUES_PATH.match(expr):
            value = _lookup(values, schema, found[1].split(".")[1:])
        elif found := INDEX_FIELD.match(expr):
            items = _lookup(values, schema, found["path"].split(".")[2:])
            if not isinstance(items, list) or len(items) <= int(found["n"]):
                raise TemplateError(f"{expr}: {found['path']} has no item {found['n']}")
            value = _fields(items[int(found["n"])], found["rest"].split(".")[1:], expr)
        elif (found := INCLUDE.match(expr)) and found["name"] == "airflow.fullname":
            value = fullname(values, release)
        else:
            raise TemplateError(f"unsupported template expression {{{{ {expr} }}}}")
        if isinstance(value, (dict, list)) or value is None:
            raise TemplateError(f"{expr} is {value!r}, not a scalar")
        return str(value).lower() if isinstance(value, bool) else str(value)

    return TEMPLATE.sub(expression, text)


# Where the chart renders a value with tpl (values.schema.json "(templated)" and the templates): a template string
# anywhere else reaches Kubernetes as it is written.
TEMPLATED = (
    ("config",),
    ("extraEnv",),
    ("apiServer", "args"),
    ("migrateDatabaseJob", "args"),
    ("createUserJob", "args"),
)


def _is_templated(path: tuple) -> bool:
    return any(path[: len(prefix)] == prefix for prefix in TEMPLATED)


def _template_strings(values: dict) -> list[tuple[tuple, str]]:
    return [(path, value) for path, value in _walk(values) if isinstance(value, str) and "{{" in value]


def test_template_strings_are_only_where_the_chart_renders_them(helm_edge):
    misplaced = [
        ("/".join(map(str, path)), value) for path, value in _template_strings(helm_edge) if not _is_templated(path)
    ]
    assert misplaced == []


def test_every_template_string_renders(base_schema, helm, helm_edge):
    for values in (helm, helm_edge):
        for path, value in _template_strings(values):
            rendered = render(value, values, base_schema)
            assert "{{" not in rendered and "}}" not in rendered, (path, rendered)


def test_the_external_url_is_written_once_and_sets_base_url_and_the_hook_url(base_schema, helm):
    (host,) = [entry["name"] for entry in helm["ingress"]["apiServer"]["hosts"]]
    assert helm["ingress"]["apiServer"]["enabled"] is True
    assert helm["ingress"]["apiServer"]["hosts"][0]["tls"] == {"enabled": True, "secretName": "imrt-airflow-tls"}
    base_url = render(helm["config"]["api"]["base_url"], helm, base_schema)
    assert base_url == f"https://{host}"
    (hook,) = yaml.safe_load(render(helm["extraEnv"], helm, base_schema))
    assert hook == {"name": "AIRFLOW_VAR_IMRT_WEBHOOK_URL", "value": f"{base_url}/webHook"}
    assert "AIRFLOW_VAR_IMRT_WEBHOOK_URL" not in {item["name"] for item in helm["env"]}
    # Behind the ingress's TLS: FAB and uvicorn take scheme and client from X-Forwarded-*.
    assert helm["config"]["fab"]["enable_proxy_fix"] == "True"
    assert "--proxy-headers" in helm["apiServer"]["args"][-1].split()
    moved = copy.deepcopy(helm)
    moved["ingress"]["apiServer"]["hosts"][0]["name"] = "sync.example.net"
    assert render(moved["config"]["api"]["base_url"], moved, base_schema) == "https://sync.example.net"


def test_in_cluster_urls_render_to_the_api_server_service(base_schema, helm, helm_edge):
    service = f"http://{RELEASE}-api-server:8080"
    assert render(helm["config"]["core"]["execution_api_server_url"], helm, base_schema) == f"{service}/execution/"
    assert render(helm_edge["config"]["edge"]["api_url"], helm_edge, base_schema) == f"{service}/edge_worker/v1/rpcapi"
    assert helm_edge["config"]["edge"]["api_enabled"] == "True"


def test_the_renderer(base_schema):
    values = {"images": {"airflow": {"tag": "1.2.3"}}, "hosts": [{"name": "a.example"}]}
    assert render("x{{ .Values.images.airflow.tag }}y", values, base_schema) == "x1.2.3y"
    assert render("{{- .Values.ports.apiServer -}}", values, base_schema) == "8080"  # the chart's default
    assert render("{{ (index .Values.hosts 0).name }}", values, base_schema) == "a.example"
    assert render('{{ include "airflow.fullname" . }}', values, base_schema) == "imrt-airflow"
    assert render('{{ include "airflow.fullname" . }}', values, base_schema, release="imrt") == "imrt-airflow"
    assert render('{{ template "airflow.fullname" . }}', {"fullnameOverride": "x"}, base_schema) == "x"
    for bad in (
        "{{ .Values.nothing.here }}",
        "{{ (index .Values.hosts 1).name }}",
        "{{ (index .Values.hosts 0).host }}",
        '{{ include "airflow_image" . }}',
        "{{ .Values.images.airflow.tag | quote }}",
        "{{ .Values.images }}",
    ):
        with pytest.raises(TemplateError):
            render(bad, values, base_schema)


# ------------------------------------------------------------------------------------------------ images


def _project_image(helm: dict) -> str:
    airflow = helm["images"]["airflow"]
    return f"{airflow['repository']}:{airflow['tag']}"


def test_every_container_runs_the_project_image_from_images_airflow(helm, helm_edge, project_version):
    # The values name no image of their own: every Airflow container and job gets images.airflow through the
    # chart's image helpers, the migration job too (airflow_image_for_migrations, useDefaultImageForMigration off).
    for values in (helm, helm_edge):
        named = ["/".join(map(str, path)) for path, _ in _walk(values) if path and path[-1] == "image"]
        assert named == []
    # Any other image is one of the chart's defaults, published images (statsd exporter, ...).
    assert set(helm["images"]) == {"airflow", "useDefaultImageForMigration"}
    assert helm["images"]["useDefaultImageForMigration"] is False
    assert helm["images"]["airflow"]["tag"] == project_version
    # The project image is what the Dockerfile builds on the pinned Airflow (test_deployment_files checks the FROM).
    assert DOCKERFILE.is_file()
    assert f"docker build -t {_project_image(helm)} ." in HELM_FILE.read_text(encoding="utf-8")
    components = (
        "scheduler",
        "apiServer",
        "dagProcessor",
        "triggerer",
        "workers",
        "migrateDatabaseJob",
        "createUserJob",
    )
    for component in components:
        for key in ("extraInitContainers", "extraContainers"):
            assert not helm.get(component, {}).get(key), f"{component}.{key}: its image would not follow images.airflow"


def test_the_edge_workers_run_the_releases_image(helm, edge_worker):
    (container,) = edge_worker["spec"]["template"]["spec"]["containers"]
    assert container["image"] == _project_image(helm), "bump deploy/helm/edge-worker.yaml with images.airflow.tag"
    assert container["imagePullPolicy"] == helm["images"]["airflow"]["pullPolicy"]
    assert edge_worker["kind"] == "Deployment" and edge_worker["apiVersion"] == "apps/v1"
    selector = edge_worker["spec"]["selector"]["matchLabels"]
    assert selector.items() <= edge_worker["spec"]["template"]["metadata"]["labels"].items()
    volumes = {volume["name"]: volume for volume in edge_worker["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == f"{fullname(helm, RELEASE)}-config", "the release's airflow.cfg"
    assert {m["name"] for m in container["volumeMounts"]} <= volumes.keys()


# ------------------------------------------------------------------------------------------------ commands


def _shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a bash script (continuations joined), leading VAR=value assignments dropped, an
    ``exec`` prefix dropped, command substitutions replaced by a placeholder word."""
    joined = re.sub(r"\\\n\s*", " ", script)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r'"?\$\([^)]*\)"?', "SUBST", line).strip()
        if not line or line.startswith("#") or line.startswith("set "):
            continue
        words = shlex.split(line)
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words.pop(0)
        if words and words[0] == "exec":
            words.pop(0)
        if words:
            commands.append(words)
    return commands


def _container_commands(args: list[str]) -> list[list[str]]:
    if args[:2] == ["bash", "-c"]:
        return _shell_commands(args[2])
    return [args]


def _module_parser(module_name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(module_name)
    for factory in ("build_parser", "_parser"):
        if hasattr(module, factory):
            return getattr(module, factory)()
    raise AssertionError(f"{module_name}: no argument parser found")


def _parses(parser: argparse.ArgumentParser, argv: list[str]) -> bool:
    try:
        parser.parse_args(argv)
    except SystemExit:
        return False
    return True


@pytest.fixture(scope="module")
def airflow_cli() -> argparse.ArgumentParser:
    from airflow.cli import cli_parser

    return cli_parser.get_parser()


def check_command(words: list[str], airflow_cli: argparse.ArgumentParser) -> None:
    """The command exists in the project image and accepts these arguments."""
    if words[:2] == ["python", "-m"]:
        module = words[2]
        assert module.split(".")[0] in SHIPPED_PACKAGES, f"{module}: not one of the packages the image ships"
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, module
        source = Path(spec.origin).read_text(encoding="utf-8")
        assert 'if __name__ == "__main__":' in source, f"{module} cannot run with python -m"
        relative = Path(spec.origin).resolve().relative_to(ROOT / "include")
        assert relative.parts[0] in SHIPPED_PACKAGES, relative
        assert _parses(_module_parser(module), words[3:]), words
    elif words[0] == "airflow":
        assert _parses(airflow_cli, words[1:]), words
    else:
        raise AssertionError(f"unexpected command {words!r}")


def _commands_of(helm: dict, edge_worker: dict) -> dict[str, list[list[str]]]:
    (container,) = edge_worker["spec"]["template"]["spec"]["containers"]
    return {
        "migrateDatabaseJob": _container_commands(helm["migrateDatabaseJob"]["args"]),
        "createUserJob": _container_commands(helm["createUserJob"]["args"]),
        "apiServer": _container_commands(helm["apiServer"]["args"]),
        "edge worker": _container_commands(container["args"]),
    }


def test_every_command_exists_in_the_project_image(helm, edge_worker, airflow_cli):
    commands = _commands_of(helm, edge_worker)
    assert sum(len(found) for found in commands.values()) >= 8
    for found in commands.values():
        for words in found:
            check_command(words, airflow_cli)


def test_the_command_check_catches_mistakes(airflow_cli):
    for words in (
        ["python", "-m", "imrt_compat.migrate", "upgrad"],
        ["python", "-m", "imrt_compat.migrate", "bootstrap_legacy"],
        ["python", "-m", "imrt_compat.roles", "user", "u", "--role", "Admin"],  # no --password-env
        ["python", "-m", "imrt_compat.roles", "users", "u", "--role", "Admin", "--password-env", "X"],
        ["python", "-m", "imrt_compat.nothing", "upgrade"],
        ["python", "-m", "devstack.locks", "runtime"],
        ["airflow", "db", "migrat"],
        ["airflow", "edge", "worker", "--edge-name", "x"],  # (argparse takes unambiguous prefixes)
        ["airflow", "users", "create", "--bogus"],
    ):
        with pytest.raises((AssertionError, ModuleNotFoundError)):
            check_command(words, airflow_cli)


def test_the_migration_job_bootstraps_migrates_then_runs_airflows_migration(helm):
    args = helm["migrateDatabaseJob"]["args"]
    assert args[:2] == ["bash", "-c"] and "set -euo pipefail" in args[2]
    assert _container_commands(args) == [
        ["python", "-m", "imrt_compat.migrate", "bootstrap-legacy"],
        ["python", "-m", "imrt_compat.migrate", "upgrade"],
        ["airflow", "db", "migrate"],
    ]
    assert helm["migrateDatabaseJob"].get("enabled", True) is True
    assert helm["migrateDatabaseJob"].get("useHelmHooks", True) is True, "after every install and upgrade"
    assert helm["migrateDatabaseJob"].get("applyCustomEnv", True) is True, "it needs env and the secrets backend"


def test_the_user_job_makes_the_role_then_the_users(helm):
    commands = _container_commands(helm["createUserJob"]["args"])
    assert commands[0] == ["python", "-m", "imrt_compat.roles", "role"]
    users = {words[words.index("--role") + 1]: words for words in commands[1:]}
    assert set(users) == {"Admin", AUTOMATION_ROLE}
    for words in users.values():
        assert words[:4] == ["python", "-m", "imrt_compat.roles", "user"]
        assert words[4] == "SUBST", "the user name is read from the mounted Secret"
        assert "--password-env" in words
        assert not {"-p", "--password"} & set(words), "no password on a command line"
    script = helm["createUserJob"]["args"][2]
    assert "airflow users" not in script
    for name in ("admin", "automation"):
        for key in ("username", "password"):
            assert f'"$users/{name}/{key}"' in script
    assert f"users={USERS_SECRETS_DIR}" in script
    assert helm["createUserJob"].get("useHelmHooks", True) is True


def test_the_edge_workers_get_the_variables_the_chart_gives_its_containers(base_schema, helm, edge_worker):
    (container,) = edge_worker["spec"]["template"]["spec"]["containers"]
    worker_env = {item["name"]: item.get("value") for item in container["env"]}
    chart_env = {item["name"]: item["value"] for item in helm["env"]}
    extra = yaml.safe_load(render(helm["extraEnv"], helm, base_schema))
    chart_env.update({item["name"]: item["value"] for item in extra})
    variables = {name: value for name, value in chart_env.items() if name.startswith("AIRFLOW_VAR_")}
    assert variables.keys() == {"AIRFLOW_VAR_IMRT_GITLAB_GROUP", "AIRFLOW_VAR_IMRT_WEBHOOK_URL"}
    for name, value in variables.items():
        assert worker_env.get(name) == value, f"deploy/helm/edge-worker.yaml: {name} differs from helm-values.yaml"


def test_the_edge_worker_command(edge_worker):
    (container,) = edge_worker["spec"]["template"]["spec"]["containers"]
    (words,) = _container_commands(container["args"])
    assert words[:3] == ["airflow", "edge", "worker"]
    assert words[words.index("--edge-hostname") + 1] == "$POD_NAME"
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", "a unique hostname per worker"
    assert env["CONNECTION_CHECK_MAX_COUNT"]["value"] == "0", "no metadata database to wait for"


# ------------------------------------------------------------------------------------------------ secrets


def _looks_like_secret(text: str) -> bool:
    for run in KEY_RUN.findall(text):
        if sum(bool(re.search(p, run)) for p in ("[a-z]", "[A-Z]", "[0-9]")) >= 2:
            return True
    return bool(URL_PASSWORD.search(text))


def _mounted_files(volumes: list[dict], mounts: list[dict]) -> dict[str, str]:
    """Path in the container -> "<Secret>/<key>", for the Secret volumes mounted."""
    by_name = {volume["name"]: volume for volume in volumes}
    files = {}
    for mount in mounts:
        volume = by_name[mount["name"]]
        whole = volume.get("secret")
        sources = volume.get("projected", {}).get("sources") or [{"secret": {**whole, "name": whole["secretName"]}}]
        for source in sources:
            secret = source["secret"]
            for item in secret.get("items") or []:
                files[f"{mount['mountPath']}/{item['path']}"] = f"{secret['name']}/{item['key']}"
            if not secret.get("items"):
                files[f"{mount['mountPath']}/*"] = f"{secret['name']}/*"
    return files


def helm_secret_problems(helm: dict) -> list[str]:
    """Why the values would put a secret into a value, a command line or an environment variable."""
    problems = []
    for key in ("jwtSecret", "apiSecretKey", "fernetKey", "webserverSecretKey"):
        if helm.get(key) is not None:
            problems.append(f"{key} is set inline: name a Kubernetes Secret with the matching *Name value instead")
    if "metadataConnection" in helm.get("data", {}):
        problems.append("data.metadataConnection is inline: use data.metadataSecretName")
    if helm.get("secret"):
        problems.append("`secret:` puts Secrets into every container's environment: mount them as files")
    for name, enabled in helm.get("enableBuiltInSecretEnvVars", {}).items():
        if enabled and name != "AIRFLOW__WEBSERVER__SECRET_KEY":
            problems.append(f"enableBuiltInSecretEnvVars.{name} puts a Secret into the environment")
    for name in (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW_CONN_AIRFLOW_DB",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__SQL_ALCHEMY_CONN",
    ):
        if helm.get("enableBuiltInSecretEnvVars", {}).get(name, True):
            problems.append(f"enableBuiltInSecretEnvVars.{name} is on (the chart's default)")
    env_items = list(helm.get("env", [])) + list(yaml.safe_load(helm.get("extraEnv") or "[]") or [])
    for component in ("createUserJob", "migrateDatabaseJob", "apiServer", "scheduler", "workers"):
        env_items += helm.get(component, {}).get("env", [])
    for item in env_items:
        name = item.get("name", "")
        if "valueFrom" in item:
            problems.append(f"env {name} is read from a Secret into the environment: mount it as a file")
        elif SENSITIVE_KEY.search(name) and not (
            name.endswith("_CMD")
            and re.fullmatch(r"cat /opt/airflow/secrets/\S+", str(item.get("value", "")))
            or name.endswith("_FILE")
            and re.fullmatch(r"/opt/airflow/secrets/\S+", str(item.get("value", "")))
        ):
            problems.append(f"env {name}: a secret-like variable that is not a `_CMD` or `_FILE` naming a mounted file")
    for path, value in _walk(helm):
        where = "/".join(map(str, path))
        if isinstance(value, str) and _looks_like_secret(value):
            problems.append(f"{where}: looks like a literal secret: {value!r}")
        if (
            path
            and isinstance(path[-1], str)
            and SENSITIVE_KEY.search(path[-1])
            and isinstance(value, str)
            and not re.search(r"(secretName|SecretName|secretKey|_conn_id)$", path[-1])
        ):
            problems.append(f"{where}: a string under a secret-like key: {value!r}")
    return problems


def test_no_secret_is_a_value_or_an_environment_variable(helm, helm_edge):
    assert helm_secret_problems(helm) == []
    assert helm_secret_problems(helm_edge) == []


def test_a_secret_file_variable_must_name_a_mounted_file(helm_oidc):
    bad = copy.deepcopy(helm_oidc)
    bad["apiServer"]["env"].append({"name": "IMRT_OIDC_CLIENT_SECRET_FILE", "value": "/tmp/client_secret"})
    assert "IMRT_OIDC_CLIENT_SECRET_FILE" in "\n".join(helm_secret_problems(bad))


def test_the_secret_check_catches_mistakes(helm):
    cases = [
        (lambda v: v.__setitem__("jwtSecret", "x"), "jwtSecret"),
        (lambda v: v.__setitem__("secret", [{"envName": "AIRFLOW_CONN_X", "secretName": "s"}]), "`secret:`"),
        (lambda v: v["enableBuiltInSecretEnvVars"].__setitem__("AIRFLOW__CORE__FERNET_KEY", True), "FERNET_KEY"),
        (lambda v: v["enableBuiltInSecretEnvVars"].pop("AIRFLOW__API_AUTH__JWT_SECRET"), "JWT_SECRET"),
        (lambda v: v["env"].append({"name": "AIRFLOW_CONN_X", "value": "postgresql://i:pw@db/i"}), "AIRFLOW_CONN_X"),
        (lambda v: v["env"].append({"name": "AIRFLOW__CORE__FERNET_KEY_CMD", "value": "echo x"}), "FERNET_KEY_CMD"),
        (lambda v: v["env"].append({"name": "X", "value": "aB3dE5gH7jK9mN1pQ3sT5vW7"}), "literal secret"),
        (lambda v: v["createUserJob"].__setitem__("env", [{"name": "PW", "valueFrom": {"secretKeyRef": {}}}]), "PW"),
        (lambda v: v["config"].__setitem__("api_auth", {"jwt_secret": "not-a-reference"}), "jwt_secret"),
    ]
    for mutate, expected in cases:
        bad = copy.deepcopy(helm)
        mutate(bad)
        assert expected in "\n".join(helm_secret_problems(bad)), expected


def test_airflows_secrets_are_files_read_by_cmd_options(helm):
    files = _mounted_files(helm["volumes"], helm["volumeMounts"])
    expected = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": (helm["data"]["metadataSecretName"], "connection"),
        "AIRFLOW__CORE__FERNET_KEY_CMD": (helm["fernetKeySecretName"], "fernet-key"),
        "AIRFLOW__API__SECRET_KEY_CMD": (helm["apiSecretKeySecretName"], "api-secret-key"),
        "AIRFLOW__API_AUTH__JWT_SECRET_CMD": (helm["jwtSecretName"], "jwt-secret"),
    }
    env = {item["name"]: item["value"] for item in helm["env"]}
    from airflow.configuration import conf

    for name, (secret, key) in expected.items():
        path = env[name].removeprefix("cat ")
        assert path.startswith(f"{AIRFLOW_SECRETS_DIR}/"), name
        assert files[path] == f"{secret}/{key}", name
        section, option = name.removeprefix("AIRFLOW__").removesuffix("_CMD").lower().split("__")
        assert (section, option) in conf.sensitive_config_values, f"Airflow takes no _CMD for [{section}] {option}"
    for volume in helm["volumes"]:
        mode = volume.get("projected", volume.get("secret", {})).get("defaultMode")
        assert mode == 0o440, volume["name"]
    assert all(mount.get("readOnly") for mount in helm["volumeMounts"])


def test_connections_and_variables_come_from_the_mounted_secret(helm, tmp_path):
    from airflow.secrets.local_filesystem import LocalFilesystemBackend

    secrets = helm["config"]["secrets"]
    assert secrets["backend"] == f"{LocalFilesystemBackend.__module__}.{LocalFilesystemBackend.__name__}"
    kwargs = json.loads(secrets["backend_kwargs"])
    assert kwargs == {
        "connections_file_path": f"{IMRT_SECRETS_DIR}/connections.json",
        "variables_file_path": f"{IMRT_SECRETS_DIR}/variables.json",
    }
    files = _mounted_files(helm["volumes"], helm["volumeMounts"])
    assert files[f"{IMRT_SECRETS_DIR}/*"] == "imrt-airflow-connections/*"
    # The file layout documented in helm-values.yaml and docs/deployment.md, read by Airflow's backend.
    connections = {
        "gitlab_default": {
            "conn_type": "http",
            "host": "https://gitlab.example.org",
            "password": "t",
            "extra": {"timeout": 60},
        },
        "imrt_default": {
            "conn_type": "postgres",
            "host": "db",
            "port": 5432,
            "login": "u",
            "password": "p",
            "schema": "imrt",
        },
        "smtp_default": {
            "conn_type": "smtp",
            "host": "smtp",
            "port": 587,
            "login": "u",
            "password": "p",
            "extra": {"from_email": "imrt-sync@example.org"},
        },
    }
    (tmp_path / "connections.json").write_text(json.dumps(connections), encoding="utf-8")
    (tmp_path / "variables.json").write_text(json.dumps({"imrt_webhook_secret": "s"}), encoding="utf-8")
    backend = LocalFilesystemBackend(
        connections_file_path=str(tmp_path / "connections.json"), variables_file_path=str(tmp_path / "variables.json")
    )
    assert backend.get_connection("imrt_default").schema == "imrt"
    assert backend.get_connection("gitlab_default").extra_dejson == {"timeout": 60}
    assert backend.get_connection("smtp_default").extra_dejson["from_email"] == "imrt-sync@example.org"
    assert backend.get_variable("imrt_webhook_secret") == "s"
    # Every connection and variable the DAG reads by default is there or is a plain setting.
    from imrt_compat.settings import DEFAULTS

    assert {DEFAULTS["imrt_db_conn_id"], DEFAULTS["imrt_gitlab_conn_id"]} <= connections.keys()
    assert helm["config"]["imrt"]["alert_smtp_conn_id"] in connections


def test_the_user_job_reads_the_users_from_mounted_secrets(helm):
    job = helm["createUserJob"]
    files = _mounted_files(job["extraVolumes"], job["extraVolumeMounts"])
    assert files == {
        f"{USERS_SECRETS_DIR}/admin/username": "imrt-airflow-admin/username",
        f"{USERS_SECRETS_DIR}/admin/password": "imrt-airflow-admin/password",
        f"{USERS_SECRETS_DIR}/automation/username": "imrt-sync-credentials/username",
        f"{USERS_SECRETS_DIR}/automation/password": "imrt-sync-credentials/password",
    }
    assert "env" not in job


def test_the_edge_worker_reads_its_secrets_from_files(helm, edge_worker):
    spec = edge_worker["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    files = _mounted_files(
        [v for v in spec["volumes"] if v["name"] != "config" and v["name"] != "logs"],
        [m for m in container["volumeMounts"] if m["name"] not in ("config", "logs")],
    )
    env = {item["name"]: item for item in container["env"]}
    jwt = env["AIRFLOW__API_AUTH__JWT_SECRET_CMD"]["value"].removeprefix("cat ")
    assert files[jwt] == f"{helm['jwtSecretName']}/jwt-secret"
    assert files[f"{IMRT_SECRETS_DIR}/*"] == "imrt-airflow-connections/*", "the connections the tasks read"
    for item in container["env"]:
        assert "secretKeyRef" not in json.dumps(item), item["name"]
        assert not _looks_like_secret(json.dumps(item)), item["name"]
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD" not in env, "an edge worker has no metadata database"
    assert spec["securityContext"]["runAsUser"] == 50000 and spec["securityContext"]["runAsGroup"] == 0


# ------------------------------------------------------------------------------------------------ alerts, executor


def test_alerts_are_configured_from_the_values(helm):
    imrt = helm["config"]["imrt"]
    assert imrt["alert_email_to"]
    assert imrt["alert_smtp_conn_id"] == "smtp_default"
    assert helm["config"]["api"]["base_url"], "the link in the alert"


def test_the_executors_are_in_the_image(helm, helm_edge):
    from airflow.providers.cncf.kubernetes.executors.kubernetes_executor import KubernetesExecutor
    from airflow.providers.edge3.executors import EdgeExecutor

    assert helm["executor"] == KubernetesExecutor.__name__
    assert helm_edge["executor"] == f"{EdgeExecutor.__module__.rsplit('.', 1)[0]}.{EdgeExecutor.__name__}"
    lock = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    requested = (ROOT / "requirements.in").read_text(encoding="utf-8")
    for provider in ("apache-airflow-providers-cncf-kubernetes", "apache-airflow-providers-edge3"):
        assert re.search(rf"^{provider}==[^\s\\]+", lock, flags=re.MULTILINE), provider
        assert re.search(rf"^{provider}==\S+$", requested, flags=re.MULTILINE), provider
