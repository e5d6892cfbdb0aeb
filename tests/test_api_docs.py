"""The examples of docs/api.md run as written (doctests), so the Python API guide cannot rot."""

from __future__ import annotations

import doctest
import tempfile
from pathlib import Path

API_GUIDE = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def test_api_guide_examples_run(tmp_path, monkeypatch):
    """Every ``>>>`` example of the guide gives the output written under it (ELLIPSIS and
    NORMALIZE_WHITESPACE); its temporary folders and caches land in ``tmp_path``."""
    monkeypatch.setenv("POISONBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = doctest.testfile(
        str(API_GUIDE),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        raise_on_error=False,
        verbose=False,
        encoding="utf-8",
    )
    assert result.attempted > 0, "docs/api.md has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in docs/api.md failed (output above)"
