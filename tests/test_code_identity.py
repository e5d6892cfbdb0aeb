"""The code hash ignores documentation and layout, and sees every change to what code does."""

from __future__ import annotations

import sys

import pytest

from poisonbench.code_identity import code_hash


@pytest.fixture
def package(tmp_path, monkeypatch):
    root = tmp_path / "thirdparty"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "helper.py").write_text('"""Helper."""\n\ndef scale(x):\n    return 2 * x\n')
    (root / "plugin.py").write_text('"""Plugin."""\nfrom thirdparty.helper import scale\n\nA = 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [m for m in sys.modules if m.startswith("thirdparty")]:
        del sys.modules[name]


def fresh(names):
    code_hash.cache_clear()
    return code_hash(names)


def test_docstrings_comments_and_layout_do_not_count(package):
    before = fresh(("thirdparty.plugin",))
    (package / "helper.py").write_text(
        '"""Another docstring."""\n\n# a comment\ndef scale(x):  # doubled\n    """Twice."""\n    return 2*x\n'
    )
    assert fresh(("thirdparty.plugin",)) == before


def test_a_change_in_an_imported_helper_counts(package):
    before = fresh(("thirdparty.plugin",))
    (package / "helper.py").write_text('"""Helper."""\n\ndef scale(x):\n    return 3 * x\n')
    assert fresh(("thirdparty.plugin",)) != before


def test_builtin_components_hash_differently():
    assert fresh(("poisonbench.plugins.attacks.mtp",)) != fresh(("poisonbench.plugins.attacks.kkt",))


def test_a_component_defined_by_the_host_hashes_its_own_module_only(monkeypatch):
    """``none`` is poisonbench.defence.NoDefence: a change elsewhere in the core is not its code."""
    import poisonbench.code_identity as ci

    seen = []
    real = ci._source_file
    monkeypatch.setattr(ci, "_source_file", lambda name: seen.append(name) or real(name))
    fresh(("poisonbench.defence",))
    assert seen == ["poisonbench.defence"]
