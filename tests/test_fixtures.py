"""The tests run the runbook's SQL from a copy kept in tests/fixtures: it must be the operators' runbook itself."""

import os
from pathlib import Path

import pytest

COPY = Path(__file__).parent / "fixtures" / "runbook.md"


def shared_reference_dir() -> Path:
    configured = os.environ.get("IMRT_REFERENCE_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "reference"


def test_the_runbook_copy_is_the_shared_runbook():
    original = shared_reference_dir() / "runbook.md"
    if not original.exists():
        if os.environ.get("IMRT_REFERENCE_DIR"):
            pytest.fail(f"IMRT_REFERENCE_DIR is set but {original} is missing")
        pytest.skip(f"the shared reference folder is not beside this checkout ({original}); set IMRT_REFERENCE_DIR")
    assert COPY.read_text() == original.read_text()
