"""Shared by the end-to-end tests that run the real Airflow stack."""

from __future__ import annotations

import time

from imrt_sync import DAG_ID


def wait_until(condition, timeout: float, what: str):
    """Poll an observable condition until it holds (returns its truthy value) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --------------------------------------------------------------------------- dag.test() runs (test_faults, test_bad_input)


def load_dag(dag_id: str = DAG_ID):
    """The repository's DAG from a fresh DagBag, after ``airflow db migrate`` of the session's metadata database."""
    import subprocess
    import sys
    from pathlib import Path

    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True, capture_output=True)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def run_dag(dag, **conf):
    """One ``dag.test()`` run with the whole conf; returns the run and its task instances by (task_id, map_index)
    as dicts with ``state``, ``label`` (rendered map index) and ``try_number``."""
    import sqlalchemy as sa
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    dag_run = dag.test(run_conf={"mode": "incremental", "item_ids": None, "dry_run": False, **conf})
    with create_session() as session:
        tis = session.scalars(
            sa.select(TaskInstance).where(TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == dag_run.run_id)
        ).all()
        instances = {
            (ti.task_id, ti.map_index): {"state": ti.state, "label": ti.rendered_map_index, "try_number": ti.try_number}
            for ti in tis
        }
    return dag_run, instances


def xcom(dag_run, task_id: str, key: str, map_index: int = -1):
    """A value a task of the run pushed (None when it pushed none)."""
    import json

    import sqlalchemy as sa
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = session.scalars(
            sa.select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
                XComModel.map_index == map_index,
            )
        ).one_or_none()
    return json.loads(value) if isinstance(value, str) else value


def dag_test_environment(*, gitlab_url: str, token: str, group: str, imrt_url, git_cache_dir, **gitlab_extra) -> dict:
    """The ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*`` variables a ``dag.test()`` run reads (set them with monkeypatch)."""
    import json

    from devstack.postgres import airflow_connection

    return {
        "AIRFLOW_CONN_GITLAB_DEFAULT": json.dumps(
            {
                "conn_type": "http",
                "host": gitlab_url,
                "password": token,
                "extra": {"timeout": 30, "backoff_factor": 0.05, **gitlab_extra},
            }
        ),
        "AIRFLOW_CONN_IMRT_DEFAULT": airflow_connection(imrt_url),
        "AIRFLOW_VAR_IMRT_GITLAB_GROUP": group,
        "AIRFLOW_VAR_IMRT_WEBHOOK_URL": "https://imrt.example.org/webHook",
        "AIRFLOW_VAR_IMRT_WEBHOOK_SECRET": "webhook-e2e-secret",
        "AIRFLOW_VAR_IMRT_GIT_CACHE_DIR": str(git_cache_dir),
        "AIRFLOW_VAR_IMRT_GITLAB_ALLOW_HTTP": "true",  # the item bank server speaks plain http://
    }


def drain_mirror_listener(timeout: float) -> None:
    """Wait, at most ``timeout`` seconds, until the plugin's run listener (in this process under dag.test()) has
    written the events it queued."""
    import threading

    from imrt_compat import listener

    done = threading.Event()
    threading.Thread(target=lambda: (listener._events.join(), done.set()), daemon=True).start()
    done.wait(timeout)


def reset_mirror_listener() -> None:
    """Under dag.test() the plugin's run listener runs in this process with a cached imrt engine: drop it, so the
    listener writes the Spring Batch rows of the next run into the database the environment now names."""
    from imrt_compat import engine

    drain_mirror_listener(30)
    if engine.server_engine.cache_info().currsize:
        engine.server_engine().dispose()
    engine.server_engine.cache_clear()


# --------------------------------------------------------- the plugin's routes (test_plugin_requests, test_security)


class PluginRoute:
    """One route of one FastAPI app of the compatibility plugin, as the API server serves it."""

    def __init__(self, app_name: str, path: str, methods, params) -> None:
        self.app_name = app_name
        self.path = path  # the app's url_prefix + the route's path, e.g. /sync/{project_id}
        self.methods = frozenset(methods)
        self.params = tuple(params)

    def __repr__(self) -> str:
        return f"PluginRoute({self.app_name!r}, {self.path!r}, {sorted(self.methods)})"

    @property
    def is_webhook(self) -> bool:
        """The GitLab hook receiver is authenticated by ``X-Gitlab-Token``, not by Airflow's tokens."""
        return "webhook" in self.app_name.lower()

    def matches(self, path: str) -> bool:
        import re

        return re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", self.path), path) is not None

    def url(self, **values: str) -> str:
        path = self.path
        for name in self.params:
            path = path.replace("{" + name + "}", values[name])
        return path


def plugin_class():
    """``ImrtCompatPlugin``, loaded from plugins/imrt_compat_plugin.py as the API server loads it."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "imrt_compat_plugin_under_test"
    if name not in sys.modules:
        source = Path(__file__).resolve().parents[2] / "plugins" / "imrt_compat_plugin.py"
        spec = importlib.util.spec_from_file_location(name, source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name].ImrtCompatPlugin


def plugin_routes() -> list[PluginRoute]:
    """Every route of every app in ``ImrtCompatPlugin.fastapi_apps``, discovered."""
    from starlette.routing import Mount, Route

    def routes_of(app_name: str, prefix: str, routes) -> list[PluginRoute]:
        found = []
        for route in routes:
            if isinstance(route, Mount):
                found += routes_of(app_name, prefix + route.path, route.routes)
            elif isinstance(route, Route):  # FastAPI's APIRoute too
                found.append(PluginRoute(app_name, prefix + route.path, route.methods or (), route.param_convertors))
            else:
                raise AssertionError(f"a route of an unknown kind in {app_name}: {route!r}")
        return found

    found = []
    for entry in plugin_class().fastapi_apps:
        found += routes_of(entry.get("name", ""), entry["url_prefix"].rstrip("/"), entry["app"].routes)
    return found


def last_item_json_commit(bank, project_id: int) -> str:
    """The last commit of the default branch that changed ``item.json``: what ``item_git`` records."""
    return bank.log(project_id, "item.json")[0]["sha"]
