"""A GitLab-compatible item bank server for development and tests.

One GitLab project per test item (``item.json`` at the root of the default branch), served through the
documented REST v4 subset the product uses and git smart HTTP, with request counters and injectable faults.
"""

from .bank_repos import CommitSpec
from .bank_store import ItemBank, NotFoundError, ProjectExistsError, ProjectSpec
from .faults import FAULT_KINDS, Counters, Fault, Faults
from .generator import generate_bank, generate_items
from .item_documents import make_item_document
from .item_histories import GeneratedItem
from .server import ItemBankServer

__all__ = [
    "FAULT_KINDS",
    "CommitSpec",
    "Counters",
    "Fault",
    "Faults",
    "GeneratedItem",
    "ItemBank",
    "ItemBankServer",
    "NotFoundError",
    "ProjectExistsError",
    "ProjectSpec",
    "generate_bank",
    "generate_items",
    "make_item_document",
]
