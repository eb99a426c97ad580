"""The run protocol: the steps of a synchronization run, as plain functions over the values of
:mod:`imrt_sync.contracts`.

    planned = open_run(run, engine, read_settings)            # start (claim events / Spring Batch), list, plan
    outcome = sync_unit(services, unit, params)               # once per work unit, in parallel
    hooks = dispatch_webhooks(services, planned["plan"], params)
    verdict = close_run(services, run, RunResults(...))       # summarise, record the end (mirror / events)

The workflow's tasks call one function each; the benchmark's direct mode calls the same functions in one process.
Each phase is a module of its own (docs/how-a-run-works.md, "The four tasks and their legacy counterparts"):

- :mod:`.lifecycle`: the run's start and end, ``open_run`` and ``close_run`` (the hook events a run claims and closes,
  the Spring Batch mirror);
- :mod:`.listing`: ``list_ids``, the listing and the plan (``RunRefused``, ``describe_listing_failure``);
- :mod:`.items`: ``sync_unit``, each item of a work unit synced or deleted;
- :mod:`.hooks`: ``dispatch_webhooks``, the project hooks repaired;
- :mod:`.verdict`: ``summarize``, the run's verdict and the items it failed;
- :mod:`.services`: ``Services``, what every step works with.

This module only gathers their public names; ``webhook_backlog`` (the summary's metrics) is the hook-event log's,
:mod:`imrt_sync.webhook_events`.
"""

from ..webhook_events import webhook_backlog
from .items import sync_unit
from .lifecycle import LEGACY_COMPLETE, LEGACY_START, SettingsReader, claim_events, close_events, close_run, open_run
from .listing import LISTING_ERROR_LIMIT, RunRefused, describe_listing_failure, list_ids
from .services import Services
from .verdict import failed_items, summarize, unsynced_items
from .webhooks import dispatch_webhooks

__all__ = [
    "LEGACY_COMPLETE",
    "LEGACY_START",
    "LISTING_ERROR_LIMIT",
    "RunRefused",
    "Services",
    "SettingsReader",
    "claim_events",
    "close_events",
    "close_run",
    "describe_listing_failure",
    "dispatch_webhooks",
    "failed_items",
    "list_ids",
    "open_run",
    "summarize",
    "sync_unit",
    "unsynced_items",
    "webhook_backlog",
]
