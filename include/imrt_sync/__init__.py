"""IMRT item synchronization: the domain library (item.json -> rows, GitLab and git access, planning, the run
protocol, the Spring Batch mirror). It imports nothing from the workflow scheduler; ``imrt_compat`` adapts it."""

DAG_ID = "item_synchronization"
"""The workflow's id: the DAG's, the Spring Batch mirror's run links', the legacy API's and the deployment's."""
