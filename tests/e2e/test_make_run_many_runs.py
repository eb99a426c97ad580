"""``make run`` on a data directory that has seen more runs than one page of the REST API (50 runs a page).

``make run`` (``python -m devstack run``) posts ``/sync`` and follows the run it started, after any run active ahead of
it. It used to list the DAG's runs oldest first, one page only: past 50 runs the new run was never in the list and
``make run`` died with ``IndexError``. Here the real stack gets 60 past runs, made the cheap way through the REST API
(triggered while the DAG is paused, so none runs, then marked ended with ``PATCH``), and ``make run``'s own functions
(``devstack.__main__``) start and follow runs on it.
"""

from __future__ import annotations

import importlib
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from e2e_helpers import wait_until
from stack_fixtures import RealStack

from imrt_sync import DAG_ID

pytestmark = pytest.mark.e2e

STACK = RealStack(name="manyruns", group="iat-manyruns", token="glpat-manyruns-e2e-token", bank_size=3, seed=23)
PAST_RUNS = 60
API_PAGE = 50  # what GET .../dagRuns answers without a limit
RUN_TIMEOUT = 300
ENDED = re.compile(r"^\[devstack\] run (\S+) \((\w+)\) ended: (\w+)$", re.MULTILINE)

devstack_main = importlib.import_module("devstack.__main__")


def runs_url(run_id: str = "") -> str:
    return f"/api/v2/dags/{DAG_ID}/dagRuns" + (f"/{run_id}" if run_id else "")


@pytest.fixture(scope="module")
def past_runs(stack) -> list[str]:
    """60 ended runs, made while the DAG is paused (a new stack's DAG is): triggered, then marked success or failed."""
    assert stack.wait_for_dag(DAG_ID)["is_paused"]
    made = []
    for number in range(PAST_RUNS):
        run_id = stack.trigger(DAG_ID, conf={"dry_run": True}, run_id=f"past__{number:03d}")
        marked = stack.api("PATCH", runs_url(run_id), json={"state": "failed" if number % 3 == 0 else "success"})
        assert marked.status_code == 200, marked.text
        made.append(run_id)
    first_page = stack.api("GET", runs_url()).json()
    assert first_page["total_entries"] == PAST_RUNS and len(first_page["dag_runs"]) == API_PAGE  # more than a page
    assert not stack.dag_runs(DAG_ID, state=["queued", "running"])
    return made


def ended_lines(output: str) -> list[tuple[str, str, str]]:
    """(run id, run type, state) of each ``run ... ended: ...`` line ``make run`` printed, in order."""
    return ENDED.findall(output)


def test_the_paging_helper_reads_every_page(stack, past_runs):
    newest_first = stack.dag_runs(DAG_ID, order_by="-run_after")
    assert [r["dag_run_id"] for r in newest_first] == past_runs[::-1]
    assert {r["dag_run_id"] for r in stack.dag_runs(DAG_ID, state=["failed"])} == set(past_runs[::3])


def test_make_run_follows_the_runs_ahead_of_its_run_then_its_run(stack, past_runs, capsys):
    """Runs active ahead of the followed run when ``make run`` starts following it (one triggered before it; the
    scheduled run that unpausing starts) are followed until they end, then the run itself.

    ``follow_runs`` starts while the DAG is still paused, so that the runs ahead are active when it begins (once the
    DAG is unpaused a dry run ends within seconds); then the DAG is unpaused, as ``make run`` does.
    """
    ahead = stack.trigger(DAG_ID, conf={"dry_run": True}, run_id="ahead__dry_run")
    followed = stack.trigger(DAG_ID, conf={"dry_run": True}, run_id="followed__dry_run")
    printed = []

    def output() -> str:
        printed.append(capsys.readouterr().out)
        return "".join(printed)

    with ThreadPoolExecutor(max_workers=1) as pool:
        following = pool.submit(devstack_main.follow_runs, stack, followed)
        wait_until(lambda: f"run {ahead}: queued" in output(), 60, "make run following the run ahead, queued")
        stack.unpause(DAG_ID)
        following.result(timeout=3 * RUN_TIMEOUT)

    ended = ended_lines(output())
    assert ended[-1] == (followed, "manual", "success")
    started = datetime.fromisoformat(stack.dag_run(DAG_ID, followed)["start_date"])
    before = []
    for run in stack.dag_runs(DAG_ID, order_by="run_after"):
        if (
            run["end_date"]
            and datetime.fromisoformat(run["end_date"]) <= started
            and run["dag_run_id"] not in past_runs
        ):
            before.append(run["dag_run_id"])
            assert (run["dag_run_id"], run["run_type"], run["state"]) in ended[:-1], ended
    assert ahead in before  # max_active_runs=1 and the older run first: the test saw a run ahead of it followed


def test_make_run_posts_sync_and_follows_its_run(stack, past_runs, capsys):
    """What ``make run`` does once the stack is up, on a data directory with more runs than one page."""
    stack.unpause(DAG_ID)
    assert len(stack.dag_runs(DAG_ID)) > API_PAGE

    run_id = devstack_main.start_sync_as_the_runbook_does(stack)
    devstack_main.follow_runs(stack, run_id)

    assert re.fullmatch(r"legacy__\d+", run_id)
    output = capsys.readouterr().out
    assert ended_lines(output)[-1] == (run_id, "manual", "success")
    assert "[devstack] exit status: COMPLETED" in output
    assert stack.dag_run(DAG_ID, run_id)["state"] == "success"
