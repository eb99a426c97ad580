"""The user IMRT reads the item bank as, in the integration tests: a Maintainer of the group, as in production
(hooks need Maintainer), with a token of its own; lost access is that user taken out of the group with GitLab's
members API (the server's administrator token stays for the tests' own control calls)."""

from __future__ import annotations

from itembank_server import ItemBank
from itembank_server.users import MAINTAINER

SYNC_USERNAME = "imrt-sync"


def add_sync_user(bank: ItemBank, group: str, token: str, access_level: int = MAINTAINER) -> dict:
    user = bank.create_user(SYNC_USERNAME)
    bank.add_token(user["id"], token)
    bank.add_member(group, user["id"], access_level)
    return user


def remove_sync_user(bank: ItemBank, group: str) -> None:
    assert bank.remove_member(group, bank.user(SYNC_USERNAME)["id"]), f"{SYNC_USERNAME} was no member of {group}"


def restore_sync_user(bank: ItemBank, group: str, access_level: int = MAINTAINER) -> None:
    bank.add_member(group, bank.user(SYNC_USERNAME)["id"], access_level)
