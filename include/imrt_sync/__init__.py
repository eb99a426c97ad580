"""IMRT item synchronization: the domain library (item.json -> rows, GitLab and git access, planning, the run
protocol, the Spring Batch mirror). It imports nothing from the workflow scheduler; ``imrt_compat`` adapts it."""

DAG_ID = "item_synchronization"
"""The workflow's id: the DAG's, the Spring Batch mirror's run links', the legacy API's and the deployment's."""

EVENTS_DAG_ID = "item_synchronization_events"
"""The DAG of the runs the GitLab hook receiver starts (``webhook__<time>``): each syncs the items of the pending hook
events. Its own DAG, so that a push is synced while a bank-wide run of ``DAG_ID`` is in progress; items are kept
consistent by the store's item lock (:meth:`imrt_sync.store.ItemStore.item_lock`)."""
