"""Fixtures of the end-to-end modules: the repository's DAG for ``dag.test()`` runs, and the real stack of a module,
built once per module from the module's ``STACK`` (a ``stack_fixtures.RealStack``).

A module that needs more than the spec says overrides a fixture by name and takes the one here as its argument
(``def stack(stack): ...``).
"""

from __future__ import annotations

import pytest
from e2e_helpers import load_dag
from stack_fixtures import RealStack, imrt_database, served_item_bank, started_stack

from devstack.browser import chromium


@pytest.fixture(scope="module")
def dag():
    """The repository's DAG, parsed once per module, for ``dag.test()`` runs."""
    return load_dag()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium under playwright (devstack.browser), for the modules that use the UI as a person does. No
    browser download is possible here: a missing chromium fails the test (BrowserMissing)."""
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def stack_spec(request) -> RealStack:
    spec = getattr(request.module, "STACK", None)
    assert isinstance(spec, RealStack), f"{request.module.__name__} uses the real stack but declares no STACK"
    return spec


@pytest.fixture(scope="module")
def item_bank(stack_spec, tmp_path_factory):
    """The module's generated item bank, served: ``ServedBank(bank, projects, server)``."""
    with served_item_bank(
        tmp_path_factory.mktemp("bank"),
        stack_spec.group,
        stack_spec.token,
        count=stack_spec.bank_size,
        seed=stack_spec.seed,
        group_visibility=stack_spec.group_visibility,
    ) as served:
        yield served


@pytest.fixture(scope="module")
def imrt(stack_spec, pg_admin_url):
    """An engine on the module's imrt database (the stack prepares its schema when it starts)."""
    with imrt_database(pg_admin_url, f"imrt_{stack_spec.name}") as engine:
        yield engine


@pytest.fixture(scope="module")
def stack_root(tmp_path_factory):
    """The stack's Airflow home (``home/``) and item git cache (``git-cache/``)."""
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="module")
def stack(stack_spec, pg_admin_url, stack_root, item_bank, imrt):
    """The module's started Airflow stack, stopped after the module's last test."""
    with started_stack(stack_spec, pg_admin_url, stack_root, item_bank, imrt.url) as airflow:
        yield airflow
