"""Shared by the integration modules.

The item bank they talk to: the module declares ``TOKEN`` and ``BANK`` (group path -> the paths of its projects);
``bank`` is built once per module, ``server`` serves it to ``TOKEN`` for one test. A module whose bank or server is
of another kind (generated items, TLS) defines its own fixture of that name.

``at_once``: concurrent callers on one database, as processes that start together.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from itembank_server import ItemBank, ItemBankServer


@pytest.fixture(scope="module")
def bank(request, tmp_path_factory):
    bank = ItemBank(tmp_path_factory.mktemp("bank"))
    try:
        for group, paths in request.module.BANK.items():
            bank.create_group(group)
            for path in paths:
                bank.create_project(group, path)
        yield bank
    finally:
        bank.close()


@pytest.fixture
def server(request, bank):
    with ItemBankServer(bank, tokens={request.module.TOKEN}) as server:
        yield server


@pytest.fixture
def at_once(imrt_db_url):
    """``at_once(count, action)`` calls ``action(engine)`` from ``count`` threads released together, each with an
    engine of its own on the test's database, as ``count`` processes starting at once would; it returns what the
    calls returned (in the order they ended) once all have ended, and fails if any raised."""

    def run(count: int, action):
        engines = [sa.create_engine(imrt_db_url) for _ in range(count)]
        barrier = threading.Barrier(count)
        results, errors = [], []

        def call(engine: sa.Engine) -> None:
            try:
                barrier.wait(timeout=30)
                results.append(action(engine))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(engine,)) for engine in engines]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        finally:
            for engine in engines:
                engine.dispose()
        assert not any(thread.is_alive() for thread in threads), "a call did not end within 60 s"
        assert errors == []
        return results

    return run
