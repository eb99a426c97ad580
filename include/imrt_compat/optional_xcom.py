"""A TaskFlow argument taken from another task's XCom that resolves to None when that task pushed none.

Airflow 3.3 resolves a task's arguments before its body runs (``PlainXComArg.resolve`` in the Task SDK,
``airflow.sdk.definitions.xcom_arg``). A missing ``return_value``, or a missing key of a ``multiple_outputs`` task,
resolves to None; any other missing key raises ``XComNotFound``, which fails the task and is retried like any failure
(apache/airflow#24338, #32027). So after a failed ``list_ids`` (no ``plan``), ``dispatch_webhooks`` and ``summary``
(trigger rule ``all_done``) would fail three times before ``summary`` could say why the run failed. An argument of
this class resolves to None there instead, as a missing return value does; the task decides what None means.

In every other respect it is Airflow's plain XCom argument: the same upstream dependency, the same serialized form
(the scheduler and the UI see a plain XCom reference; a worker re-parses the DAG file and resolves with this class),
and a mapped task's XCom is still the lazy sequence of what its instances pushed. PlainXComArg is not part of the
Task SDK's public names: ``tests/unit/test_task_contract.py`` pins what this relies on to the installed Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk.definitions.xcom_arg import PlainXComArg
from airflow.sdk.exceptions import XComNotFound


class OptionalXComArg(PlainXComArg):
    """``PlainXComArg(operator, key)`` that resolves to None when the XCom does not exist."""

    __slots__ = ()

    def resolve(self, context: Mapping[str, Any]) -> Any:
        try:
            return super().resolve(context)
        except XComNotFound:
            return None
