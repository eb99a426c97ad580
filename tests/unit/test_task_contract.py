"""The contract between the DAG's tasks (imrt_compat.task_contract): the DAG's wiring passes every data edge named
there, each XCom key holds one payload type, an input a failed task did not publish reaches its reader as None
(imrt_compat.optional_xcom, pinned here to the installed Airflow), and summary judges a run whose list_ids failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from airflow.sdk.definitions._internal.types import NOTSET
from airflow.sdk.definitions.xcom_arg import PlainXComArg, XComArg, serialize_xcom_arg
from airflow.sdk.exceptions import AirflowFailException, XComNotFound
from airflow.sdk.execution_time.lazy_sequence import LazyXComSequence

from imrt_compat import dag_tasks
from imrt_compat.optional_xcom import OptionalXComArg
from imrt_compat.task_contract import (
    DISPATCH_WEBHOOKS,
    HOOKS_OUTCOME,
    JOB_EXECUTION_ID,
    LIST_IDS,
    LISTING_FAILURE,
    PLAN,
    SUMMARY,
    SYNC,
    TASK_IDS,
    UNIT_OUTCOME,
    UNITS,
    VERDICT,
    XComSlot,
)
from imrt_sync import pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]
SLOTS = [UNITS, PLAN, JOB_EXECUTION_ID, LISTING_FAILURE, UNIT_OUTCOME, HOOKS_OUTCOME, VERDICT]


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["item_synchronization"]


def reads(task) -> dict[str, tuple[str, str]]:
    """What a task's arguments read: (task id, XCom key) by argument name."""
    return {name: (arg.operator.task_id, arg.key) for name, arg in task.op_kwargs.items() if isinstance(arg, XComArg)}


class TaskInstance:
    """What an XCom argument resolves against: a task instance whose run holds ``pushed`` {(task id, key): value}."""

    dag_id = "item_synchronization"

    def __init__(self, pushed: dict[tuple[str, str], object]) -> None:
        self.pushed = pushed

    def xcom_pull(self, task_ids, key, default=None, map_indexes=None):
        return self.pushed.get((task_ids, key), default)


# --------------------------------------------------------------------------- the contract and the DAG's wiring


def test_the_dag_has_the_contracts_tasks(dag):
    assert sorted(task.task_id for task in dag.tasks) == sorted(TASK_IDS)
    assert TASK_IDS == ("list_ids", "sync", "dispatch_webhooks", "summary")


def test_each_xcom_key_holds_one_payload_type_and_keeps_its_public_name():
    assert len({slot.key for slot in SLOTS}) == len(SLOTS)
    assert {(slot.task_id, slot.key) for slot in (UNITS, PLAN, JOB_EXECUTION_ID, VERDICT)} == {
        ("list_ids", "return_value"),
        ("list_ids", "plan"),
        ("list_ids", "jobExecutionId"),
        ("summary", "outcome"),
    }  # read through the REST API by the tests and the documentation


def test_the_wiring_passes_every_data_edge(dag):
    tasks = dag.task_dict
    assert tasks[SYNC].op_kwargs_expand_input.value["unit"].operator.task_id == LIST_IDS
    assert reads(tasks[DISPATCH_WEBHOOKS]) == {"plan": (LIST_IDS, PLAN.key)}
    assert reads(tasks[SUMMARY]) == {
        "plan": (LIST_IDS, PLAN.key),
        "units": (LIST_IDS, UNITS.key),
        "listing_failure": (LIST_IDS, LISTING_FAILURE.key),
        "unit_outcomes": (SYNC, UNIT_OUTCOME.key),
        "hooks": (DISPATCH_WEBHOOKS, HOOKS_OUTCOME.key),
    }
    assert tasks[DISPATCH_WEBHOOKS].upstream_task_ids == {LIST_IDS, SYNC}  # the hooks once the items are in
    assert tasks[SUMMARY].upstream_task_ids == {LIST_IDS, SYNC, DISPATCH_WEBHOOKS}
    assert {tasks[t].trigger_rule for t in (DISPATCH_WEBHOOKS, SUMMARY)} == {"all_done"}


def test_the_inputs_of_the_tasks_that_run_after_a_failure_are_optional(dag):
    for task_id in (DISPATCH_WEBHOOKS, SUMMARY):
        for name, arg in dag.task_dict[task_id].op_kwargs.items():
            if isinstance(arg, XComArg) and arg.key != UNITS.key:  # a missing return value is None in Airflow
                assert isinstance(arg, OptionalXComArg), (task_id, name)


def test_a_slot_is_an_argument_only_from_the_task_that_pushes_it(dag):
    listed = PlainXComArg(operator=dag.task_dict[LIST_IDS])
    assert PLAN.arg(listed) == OptionalXComArg(operator=dag.task_dict[LIST_IDS], key="plan")
    with pytest.raises(ValueError, match="XCom 'outcome' is pushed by task 'summary', not 'list_ids'"):
        VERDICT.arg(listed)


def test_tools_outside_the_run_read_a_slot_through_the_rest_api():
    run_id = "manual__2026-01-01T09:00:00+00:00"
    assert VERDICT.rest_path(run_id) == (
        "/api/v2/dags/item_synchronization/dagRuns/manual__2026-01-01T09%3A00%3A00%2B00%3A00"
        "/taskInstances/summary/xcomEntries/outcome"
    )
    assert PLAN.rest_value({"value": '{"total_ids": 3}'}) == {"total_ids": 3}
    assert PLAN.rest_value({"value": {"total_ids": 3}}) == {"total_ids": 3}


def test_the_contract_imports_no_airflow():
    """The dev tools import it in processes that run no Airflow (importing Airflow sets up an Airflow home)."""
    code = (
        "import sys, imrt_compat.task_contract; print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))"
    )
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"


def test_push_and_pull_use_the_slots_task_and_key():
    pushed = {}

    class Ti:
        def xcom_push(self, key, value):
            pushed[key] = value

        def xcom_pull(self, task_ids, key, map_indexes):
            return {"task_ids": task_ids, "key": key, "map_indexes": map_indexes}

    XComSlot("list_ids", "plan").push(Ti(), {"total_ids": 0})
    assert pushed == {"plan": {"total_ids": 0}}
    assert VERDICT.pull(Ti()) == {"task_ids": "summary", "key": "outcome", "map_indexes": -1}


# --------------------------------------------------------------------------- what Airflow resolves (pinned)


def test_airflow_fails_an_argument_whose_xcom_is_missing_and_the_optional_one_is_none(dag):
    """The reason for OptionalXComArg: a plain argument from a key the upstream did not push fails the task before
    its body runs (Airflow retries it); the optional one is None, and the pushed value when there is one."""
    list_ids = dag.task_dict[LIST_IDS]
    nothing = {"ti": TaskInstance({})}
    with pytest.raises(XComNotFound):
        PlainXComArg(operator=list_ids, key="plan").resolve(nothing)
    assert PlainXComArg(operator=list_ids).resolve(nothing) is None  # a missing return value is None already
    assert OptionalXComArg(operator=list_ids, key="plan").resolve(nothing) is None
    planned = {"ti": TaskInstance({(LIST_IDS, "plan"): {"total_ids": 2}})}
    assert OptionalXComArg(operator=list_ids, key="plan").resolve(planned) == {"total_ids": 2}
    assert TaskInstance({}).xcom_pull(LIST_IDS, "plan", default=NOTSET) is NOTSET


def test_from_a_mapped_task_the_optional_argument_is_the_lazy_sequence_of_its_instances_xcoms(dag):
    summary_reads = dag.task_dict[SUMMARY].op_kwargs["unit_outcomes"]
    assert isinstance(summary_reads.resolve({"ti": TaskInstance({})}), LazyXComSequence)


def test_the_optional_argument_is_serialized_as_a_plain_xcom_reference(dag):
    """The scheduler and the UI read the serialized DAG: they see the same reference and dependency."""
    list_ids = dag.task_dict[LIST_IDS]
    optional = OptionalXComArg(operator=list_ids, key="plan")
    assert serialize_xcom_arg(optional) == serialize_xcom_arg(PlainXComArg(operator=list_ids, key="plan"))
    assert str(optional) == str(PlainXComArg(operator=list_ids, key="plan"))
    assert list(optional.iter_references()) == [(list_ids, "plan")]


# --------------------------------------------------------------------------- a run whose list_ids failed


def test_without_a_plan_dispatch_webhooks_fails_at_once():
    with pytest.raises(AirflowFailException, match="list_ids did not produce a plan: nothing to do"):
        dag_tasks.required_plan(None)
    assert dag_tasks.required_plan({"missing_webhook": []}) == {"missing_webhook": []}


def test_summary_says_why_listing_failed_from_what_list_ids_published():
    results = dag_tasks.run_results(None, None, {"error": "GitLab GET /groups/x answered 503"}, [], None)
    assert (results.plan, results.units, results.unit_outcomes, results.hooks) == (None, [], [], None)
    verdict = pipeline.summarize(results)
    assert (verdict["status"], verdict["message"]) == (
        "FAILED",
        "Listing the item bank failed: GitLab GET /groups/x answered 503",
    )
    silent = pipeline.summarize(dag_tasks.run_results(None, None, None, None, None))
    assert silent["message"] == "Listing the item bank failed: list_ids did not report why (see its task log)"
