"""``python -m imrt_compat.roles``: the FAB role of the cron/automation account, and FAB users, made idempotently.

Run by the compose init service and the Helm chart's create-user job after ``airflow db migrate``
(docs/authentication.md), on every deployment:

* ``python -m imrt_compat.roles role`` makes the role ``IMRT Sync Automation`` hold exactly
  :func:`automation_permissions` (missing ones added, any other removed), so the role is what this file says even
  after someone edited it in the UI;
* ``python -m imrt_compat.roles user USERNAME --role ROLE --password-env VAR`` creates the user, or gives an existing
  one exactly that role and the password found in the environment variable ``VAR`` (never on a command line), so a
  password changed in the deployment's secret takes effect on the next run.

What the role allows, under ``imrt_compat.fab_auth.ImrtFabAuthManager`` (whose docstring has FAB's mapping):

======================================================  ============================================================
request                                                 decided by
======================================================  ============================================================
``GET`` the DAGs, their runs, task instances and logs   ``can_read`` on ``DAG:item_synchronization``,
                                                        ``DAG:item_synchronization_events`` (the pushes' runs) and
                                                        on ``DAG Runs``, ``Task Instances``, ``Task Logs`` (FAB
                                                        checks these together with read access to that DAG, so no
                                                        other DAG becomes readable)
``POST /sync``, ``POST /sync/{projectId}``,             ``can_create`` on ``DAG Run:item_synchronization`` plus
``GET /sync/{id}``, ``POST .../dagRuns`` (trigger)      read access to the DAG (``ImrtFabAuthManager``)
``PATCH``/``DELETE`` the DAG, ``PATCH``/``DELETE``/     refused: they need ``can_edit``/``can_delete`` on the DAG
clear a run, ``PUT /abandon/{id}``                      and ``can_edit``/``can_delete`` on runs, which the role
                                                        does not have
anything else (connections, variables, pools, users)    refused: no permission on those resources
======================================================  ============================================================
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Set
from typing import Any

from airflow.providers.fab.www.security.permissions import (
    ACTION_CAN_READ,
    RESOURCE_DAG,
    RESOURCE_DAG_RUN,
    RESOURCE_TASK_INSTANCE,
    RESOURCE_TASK_LOG,
    resource_name,
)

from imrt_sync import DAG_ID, EVENTS_DAG_ID

from .fab_auth import trigger_permission

AUTOMATION_ROLE = "IMRT Sync Automation"


def automation_permissions(dag_id: str = DAG_ID) -> frozenset[tuple[str, str]]:
    """(action, resource) pairs of the automation role: trigger and read ``dag_id``, read the hook events' DAG,
    nothing else."""
    return frozenset(
        {
            (ACTION_CAN_READ, resource_name(dag_id, RESOURCE_DAG)),
            (ACTION_CAN_READ, resource_name(EVENTS_DAG_ID, RESOURCE_DAG)),
            trigger_permission(dag_id),
            (ACTION_CAN_READ, RESOURCE_DAG_RUN),
            (ACTION_CAN_READ, RESOURCE_TASK_INSTANCE),
            (ACTION_CAN_READ, RESOURCE_TASK_LOG),
        }
    )


def converge_role(security_manager: Any, name: str, wanted: Set[tuple[str, str]]) -> tuple[set, set]:
    """Make role ``name`` (created if missing) hold exactly ``wanted``; return the (added, removed) permissions."""
    role = security_manager.find_role(name) or security_manager.add_role(name)
    current = {(permission.action.name, permission.resource.name) for permission in role.permissions}
    added, removed = set(wanted) - current, current - set(wanted)
    for action, resource in sorted(added):
        security_manager.add_permission_to_role(role, security_manager.create_permission(action, resource))
    for action, resource in sorted(removed):
        security_manager.remove_permission_from_role(role, security_manager.get_permission(action, resource))
    return added, removed


def ensure_user(security_manager: Any, username: str, role_name: str, password: str, email: str) -> bool:
    """Create ``username`` with role ``role_name``, or give the existing user exactly that role and ``password``.
    Return whether the user was created."""
    if not password:
        raise SystemExit(f"no password given for FAB user {username!r}")
    role = security_manager.find_role(role_name)
    if role is None:
        raise SystemExit(f"FAB role {role_name!r} does not exist (run `python -m imrt_compat.roles role` first?)")
    user = security_manager.find_user(username=username)
    if user is None:
        security_manager.add_user(username, username, "IMRT", email, role, password)
        return True
    user.roles = [role]
    if not security_manager.update_user(user) or not security_manager.reset_password(user.id, password):
        raise SystemExit(f"could not update FAB user {username!r}")
    return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imrt_compat.roles", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("role", help=f"make the role {AUTOMATION_ROLE!r} hold exactly its permissions")
    user = commands.add_parser("user", help="create or update a FAB user (role and password)")
    user.add_argument("username")
    user.add_argument("--role", required=True, help="FAB role, e.g. Admin, Viewer or " + repr(AUTOMATION_ROLE))
    user.add_argument("--password-env", required=True, metavar="VAR", help="environment variable with the password")
    user.add_argument("--email", help="default: <username>@imrt.invalid")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # FAB's own CLI (airflow users/roles) builds its security manager this way.
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as appbuilder:
        if args.command == "role":
            added, removed = converge_role(appbuilder.sm, AUTOMATION_ROLE, automation_permissions())
            print(f"role {AUTOMATION_ROLE!r}: {len(added)} permission(s) added, {len(removed)} removed")
        else:
            email = args.email or f"{args.username}@imrt.invalid"
            created = ensure_user(appbuilder.sm, args.username, args.role, os.environ.get(args.password_env, ""), email)
            print(f"user {args.username!r} {'created' if created else 'updated'} with role {args.role!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
