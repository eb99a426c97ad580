"""The DAG's trigger form in a real browser, as an operator uses it: "Item bank ids" takes one id per line.

Debian's chromium (``/usr/bin/chromium``; ``.ci/run`` installs it) driven by playwright logs into the Airflow UI of
the module's real stack, opens the trigger form of ``item_synchronization``, types ids one per line and presses
Trigger. The form sends the lines as strings (Airflow renders an array whose items have no type as a text box of
one value per line); the REST API shows them in the run's conf, and the run syncs exactly those projects, planned
as integer ids. A line that is not an id is refused by the form, naming it, and no run is created.
"""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest
from stack_fixtures import RealStack, unpause_and_finish_scheduled_run

from devstack.browser import VIEWPORT, log_in_with_password
from imrt_sync import DAG_ID

pytestmark = pytest.mark.e2e

STACK = RealStack(name="form", group="iat-form", token="glpat-trigger-form-e2e-token", bank_size=4, seed=31)
RUN_TIMEOUT = 300


@pytest.fixture
def page(browser, stack):
    """A new browser session, logged into the Airflow UI as the operator (admin) on the DAG's page."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        log_in_with_password(page, f"{stack.url}/dags/{DAG_ID}", "admin", stack.password("admin"))
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def synced(stack, item_bank) -> list[dict]:
    """Every item synced by the scheduled run (the DAG unpaused, no run active); then three items changed in GitLab."""
    unpause_and_finish_scheduled_run(stack, timeout=RUN_TIMEOUT)
    bank, projects, _ = item_bank
    for project in projects[:3]:
        document = json.loads(bank.read_file(project["id"], "item.json"))
        document["workflow"] = {"workflowStatusCode": "Approved"}
        bank.push_commit(project["id"], files={"item.json": document}, message="approve", author_name="Form F")
    return projects


def open_trigger_form(page):
    """Press the DAG's Trigger button; return the dialog and its "Item bank ids" field."""
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    field = dialog.locator("#element_item_ids")  # Airflow names each param's field element_<param>
    field.wait_for()
    assert field.evaluate("element => element.tagName") == "TEXTAREA"  # a text box, not the JSON editor
    assert dialog.get_by_text("GitLab project ids to sync, one per line").is_visible()
    return dialog, field


def xcom_value(stack, run_id: str, task_id: str, key: str):
    response = stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
    assert response.status_code == 200, response.text
    value = response.json()["value"]
    return json.loads(value) if isinstance(value, str) else value


def test_ids_typed_one_per_line_trigger_a_run_of_those_items(stack, synced, page, tmp_path):
    typed, changed_not_typed = synced[:2], synced[2]
    dialog, field = open_trigger_form(page)
    field.press_sequentially("".join(f"{p['id']}\n" for p in typed))  # an operator's Enter after each id
    page.screenshot(path=str(tmp_path / "trigger-form.png"))
    dialog.get_by_role("button", name="Trigger").click()
    page.wait_for_url(f"**/dags/{DAG_ID}/runs/**")
    run_id = unquote(page.url.rsplit("/runs/", 1)[1])

    run = stack.dag_run(DAG_ID, run_id)
    assert run["triggered_by"] == "ui" and run["run_type"] == "manual"
    assert run["conf"]["item_ids"] == [str(p["id"]) for p in typed] + [""]  # the form sends its lines
    assert stack.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT) == "success"
    plan = xcom_value(stack, run_id, "list_ids", "plan")
    assert plan["to_sync"] == sorted(p["id"] for p in typed)  # planned as integer project ids
    assert all(type(project_id) is int for project_id in plan["to_sync"])
    labels = {ti["rendered_map_index"] for ti in stack.task_instances(DAG_ID, run_id) if ti["task_id"] == "sync"}
    assert labels == {p["path"] for p in typed}  # the third changed item waits for a run that asks for it
    assert changed_not_typed["path"] not in labels


def test_a_line_that_is_not_an_id_is_refused_by_the_form_naming_it(stack, synced, page, tmp_path):
    runs_before = len(stack.dag_runs(DAG_ID))
    dialog, field = open_trigger_form(page)
    field.press_sequentially(f"{synced[0]['id']}\n2000o5\n")
    dialog.get_by_role("button", name="Trigger").click()
    error = dialog.get_by_text("Invalid input for param item_ids: '2000o5'")
    error.wait_for()
    page.screenshot(path=str(tmp_path / "trigger-form-refused.png"))
    assert "/runs/" not in page.url and dialog.is_visible()  # still on the form: no run page
    assert len(stack.dag_runs(DAG_ID)) == runs_before
