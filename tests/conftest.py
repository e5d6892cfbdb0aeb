"""Shared fixtures: test plugin modules importable, third-party plugins off unless a test opts in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
SHARED = TESTS_DIR.parent.parent / "shared"

if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture(autouse=True)
def _no_external_plugins(monkeypatch):
    """Tests see only built-ins and what they load explicitly (installed plugins stay out)."""
    monkeypatch.setenv("POISONBENCH_LOAD_PLUGINS", "")


@pytest.fixture
def shared_dir() -> Path:
    """The ../shared folder beside the checkout (papers, raw data); skip where it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not beside this checkout")
    return SHARED
