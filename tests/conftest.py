"""Shared test fixtures: where the real instrument data lives, and a skip when it does not."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CLASSXRF_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_data(*parts):
    """Path under ../shared/data, skipping the test with a clear reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real instrument data not found at {p} (../shared/data is absent in a fresh clone)")
    return p


@pytest.fixture
def data_dir():
    return shared_data()
