"""Legacy compatibility for Airflow's API server and scheduler: ``POST /sync``, ``PUT /abandon`` and the
Spring Batch mirror. The Airflow-facing adapter layer; the domain logic is in ``imrt_sync`` (``imrt_sync.batch``)."""

DAG_ID = "item_synchronization"
