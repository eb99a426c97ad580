"""Fixtures: a bank in a temporary directory, a running server on a free port, a REST client."""

from __future__ import annotations

from pathlib import Path

import pytest
from itembank_helpers import TOKEN, Api

from itembank_server import ItemBank, ItemBankServer


@pytest.fixture
def bank(tmp_path: Path):
    item_bank = ItemBank(tmp_path / "bank")
    yield item_bank
    item_bank.close()


@pytest.fixture
def server(bank: ItemBank):
    with ItemBankServer(bank, tokens={TOKEN}) as running:
        yield running


@pytest.fixture
def api(server: ItemBankServer):
    client = Api(server)
    yield client
    client.session.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path
