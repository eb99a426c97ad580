"""The Asset the ``item_synchronization`` DAG updates when a run succeeds: schedule downstream DAGs on it
(``schedule=[ITEM_DATA]``). Each event's ``extra`` carries the run's counts and whether it was a dry run."""

from airflow.sdk import Asset

ITEM_DATA = Asset(name="imrt_item_data", uri="imrt://item-data/item")
