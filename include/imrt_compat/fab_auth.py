"""The auth manager of the deployments: FAB's, with one change so that a role may trigger a DAG without editing it.

Why a subclass. ``FabAuthManager.is_authorized_dag`` (apache-airflow-providers-fab 3.10.2,
``airflow/providers/fab/auth_manager/fab_auth_manager.py``) maps a request on a DAG's sub-entity as follows:

* the sub-entity: ``_MAP_DAG_ACCESS_ENTITY_TO_FAB_RESOURCE_TYPE`` (``DagAccessEntity.RUN`` -> ``DAG Runs``,
  ``TASK_INSTANCE`` -> ``DAG Runs`` and ``Task Instances``, ``TASK_LOGS`` -> ``Task Logs``), with the action of
  ``get_fab_action_from_method_map()`` (GET ``can_read``, POST ``can_create``, PUT ``can_edit``, DELETE
  ``can_delete``); for ``RUN`` the per-DAG resource ``DAG Run:<dag_id>`` is accepted instead of ``DAG Runs``;
* and then the DAG itself ("Scenario 3"): ``can_read`` on ``DAGs`` or ``DAG:<dag_id>`` for GET, **``can_edit`` for
  every other method**.

So triggering (``POST /api/v2/dags/{dag_id}/dagRuns`` and the legacy ``POST /sync``, both
``requires_access_dag(method="POST", access_entity=DagAccessEntity.RUN)``) needs ``can_create`` on DAG runs *and*
``can_edit`` on the DAG. But ``can_edit`` on the DAG is exactly what ``PATCH /api/v2/dags/{dag_id}`` (pause and
unpause, ``requires_access_dag(method="PUT")``) checks: with stock FAB, an account that may trigger a DAG may also
pause it. The cron account must not.

The change: a trigger (POST on ``DagAccessEntity.RUN`` of one DAG) is also allowed to a user who has ``can_create``
on that DAG's own run resource ``DAG Run:<dag_id>`` and may read the DAG, without ``can_edit`` on it. Nothing else
differs: every other request is FAB's decision, and a user who passes FAB's check still passes. The role
``IMRT Sync Automation`` (``imrt_compat.roles``) is made of exactly such permissions. Airflow asks the same question
(POST, ``RUN``, that DAG) before creating a backfill of the DAG (``requires_access_backfill``), so such a user may
also backfill it, as FAB's own trigger permission would allow; pausing, deleting and changing runs stay refused.
Checked under stock ``FabAuthManager``: the same role gets 403 on the trigger and on ``POST /sync``.

``[core] auth_manager = imrt_compat.fab_auth.ImrtFabAuthManager`` (docker-compose.yaml, helm-values.yaml). Its users,
roles, ``airflow users``/``airflow roles`` commands, ``/auth/token`` and database tables are FAB's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager
from airflow.providers.fab.www.security.permissions import ACTION_CAN_CREATE, RESOURCE_DAG_RUN, resource_name

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod
    from airflow.providers.fab.auth_manager.models import User


def trigger_permission(dag_id: str) -> tuple[str, str]:
    """The FAB permission (action, resource) that lets a reader of ``dag_id`` trigger it: ``can_create`` on
    ``DAG Run:<dag_id>``."""
    return ACTION_CAN_CREATE, resource_name(dag_id, RESOURCE_DAG_RUN)


class ImrtFabAuthManager(FabAuthManager):
    """``FabAuthManager`` where ``can_create`` on ``DAG Run:<dag_id>`` plus read access to the DAG allows a trigger."""

    def is_authorized_dag(
        self,
        *,
        method: ResourceMethod,
        user: User,
        access_entity: DagAccessEntity | None = None,
        details: DagDetails | None = None,
    ) -> bool:
        if (
            method == "POST"
            and access_entity == DagAccessEntity.RUN
            and details is not None
            and details.id
            and self._may_trigger(user, details.id, details)
        ):
            return True
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)

    def _may_trigger(self, user: User, dag_id: str, details: DagDetails) -> bool:
        """May ``user`` trigger ``dag_id`` (``details.id``) without ``can_edit`` on it."""
        permissions = getattr(user, "perms", None) or set()  # FAB's User.perms: {(action, resource)}
        return trigger_permission(dag_id) in permissions and super().is_authorized_dag(
            method="GET", user=user, details=details
        )
