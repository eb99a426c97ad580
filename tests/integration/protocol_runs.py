"""One run through the run protocol, as the DAG's tasks and the benchmark make it, for the integration tests:
open_run, one sync_unit per unit, dispatch_webhooks, close_run."""

from __future__ import annotations

import itertools

from imrt_sync import pipeline
from imrt_sync.config import RunParams
from imrt_sync.contracts import PlanView, RunContext, RunResults, Verdict

_RUN_NUMBERS = itertools.count(1)


def run(services: pipeline.Services, run_type: str = "manual", **params) -> tuple[PlanView, Verdict]:
    """Run with ``params`` (RunParams fields) under a fresh run id of ``run_type``; the plan and the verdict."""
    context = RunContext(f"{run_type}__test-{next(_RUN_NUMBERS)}", RunParams(**params))
    planned = pipeline.open_run(context, services.engine, lambda: (services.settings, services.gitlab.settings))
    outcomes = [pipeline.sync_unit(services, unit, context.params) for unit in planned["units"]]
    hooks = pipeline.dispatch_webhooks(services, planned["plan"], context.params)
    results = RunResults(planned["plan"], planned["units"], outcomes, hooks)
    return planned["plan"], pipeline.close_run(services, context, results)
