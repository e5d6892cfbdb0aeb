"""The command line: list, --version, --plugin, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from poisonbench import __version__
from poisonbench.cli.main import main

EXAMPLE_PLUGIN = Path(__file__).parent.parent / "examples" / "poisonbench-boundary-flip"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"poisonbench, version {__version__}"


def test_list_json_has_metadata_for_every_component(capsys):
    code, out, _ = run_cli(capsys, "--plugin", "plugins_for_tests.toy_components", "list", "--json")
    rows = json.loads(out)
    assert code == 0
    toy = next(r for r in rows if r["name"] == "toy")
    assert toy == {
        "name": "toy",
        "kind": "dataset",
        "plugin": "plugins_for_tests.toy_components",
        "version": "unknown",
        "description": "A toy two-blob dataset.",
        "parameters": {"seed": 0, "n": 40},
        "parameter_docs": {"seed": {"expected": None, "doc": ""}, "n": {"expected": None, "doc": ""}},
    }
    assert {r["kind"] for r in rows} == {"dataset", "learner", "attack", "defence"}


def test_list_one_kind_in_text(capsys):
    code, out, _ = run_cli(capsys, "--plugin", "plugins_for_tests.toy_components", "list", "datasets")
    assert code == 0
    assert "toy" in out and "    params.n = 40\n" in out and "noop" not in out


def _entry(out: str, name: str) -> list[str]:
    """The lines ``list`` printed for component ``name`` (its header up to the next header)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[1:2] == [name])
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return lines[start:end]


def test_list_shows_parameters_as_campaign_toml_with_their_docs(capsys):
    """Parameters are shown as they are written in a campaign file (``params.<name> = …`` under
    the component's table), never as ``--name`` options, each with its documentation."""
    code, out, _ = run_cli(capsys, "list", "attacks")
    assert code == 0
    assert "--target" not in out and not any(line.lstrip().startswith("--") for line in out.splitlines())
    kkt = _entry(out, "kkt")
    assert kkt[2:4] == ["    [[attacks]]", '    name = "kkt"']
    target = next(line for line in kkt if "params.target" in line)
    assert target.split("#")[0].split() == ["params.target", "=", "<required>"]
    assert "target model spec (as mtp's) or a fitted Model" in target
    mtp = "\n".join(_entry(out, "mtp"))
    assert 'params.target = "subpop"' in mtp and "params.epsilon = <unset>" in mtp
    assert "copies of each chosen point per iteration; an integer >= 1" in mtp


@pytest.mark.parametrize("kind", ["datasets", "learners", "attacks", "defences"])
def test_listed_defaults_are_valid_toml_for_the_component(capsys, kind):
    """Every line with a default, pasted under the component's table, parses back to it."""
    from poisonbench.host import load_host

    code, out, _ = run_cli(capsys, "list", kind)
    assert code == 0
    registry = load_host().registry
    for component in registry.components(kind):
        lines = _entry(out, component.name)
        text = "\n".join(line.split("  #")[0].strip() for line in lines[2:] if "= <" not in line)
        table = tomllib.loads(text)[kind][0]
        assert table["name"] == component.name
        expected = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in component.parameters.items()
            if v is not None and v != "<required>" and not (kind == "datasets" and k == "seed")
        }
        assert table.get("params", {}) == expected, component.name


def test_dataset_seed_is_shown_as_set_by_the_campaign(capsys):
    code, out, _ = run_cli(capsys, "list", "datasets")
    gaussians = _entry(out, "gaussians")
    assert code == 0 and not any("params.seed" in line for line in gaussians)
    assert any(line.startswith("    # seed: set by the campaign (top-level 'seeds'): Trial seed") for line in gaussians)


def test_list_json_documents_every_parameter(capsys):
    code, out, _ = run_cli(capsys, "list", "datasets", "--json")
    file_row = next(r for r in json.loads(out) if r["name"] == "file")
    assert code == 0 and set(file_row["parameter_docs"]) == set(file_row["parameters"])
    assert file_row["parameter_docs"]["label"] == {"expected": "a string", "doc": "the label column"}
    # undeclared: documented from the docstring's numpydoc Parameters section
    assert file_row["parameter_docs"]["seed"]["expected"] is None
    assert file_row["parameter_docs"]["seed"]["doc"].startswith("Trial seed: seeds the random split")


def test_parameter_docs_fall_back_to_the_numpydoc_section():
    from poisonbench.registry import Component

    class Documented:
        """An attack documented in numpydoc style.

        Parameters
        ----------
        rate : float
            Share of the budget
            spent per batch.
        lo, hi
            Bounds.

        Notes
        -----
        rate : not a parameter entry
        """

        def __init__(self, rate: float = 0.5, lo: int = 0, hi: int = 1, other: int = 2): ...

    component = Component("attacks", "documented", Documented, "test", "0", "")
    assert component.parameter_docs == {
        "rate": "Share of the budget spent per batch.",
        "lo": "Bounds.",
        "hi": "Bounds.",
        "other": "",
    }


README_PLUGIN = re.compile(r"```python\n(# my_attack\.py\n.*?)```", re.S)


@pytest.mark.parametrize("spec", ["my_attack", "./my_attack.py"])
def test_readme_local_plugin_loads_from_the_current_directory(capsys, tmp_path, monkeypatch, spec):
    """The README's ``poisonbench --plugin my_attack list attacks`` (a module in the current
    directory, not on sys.path) and ``--plugin ./my_attack.py`` (a file path) both work."""
    code_block = README_PLUGIN.search((Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8"))
    assert code_block is not None, "README.md lost its my_attack.py example"
    (tmp_path / "my_attack.py").write_text(code_block.group(1), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_attack", raising=False)
    try:
        code, out, err = run_cli(capsys, "--plugin", spec, "list", "attacks")
    finally:
        sys.modules.pop("my_attack", None)
    assert code == 0, err
    assert "flip-all" in out and "params.share = 1.0" in out


def test_list_plugins(capsys):
    code, out, _ = run_cli(capsys, "list", "plugins", "--json")
    rows = json.loads(out)
    assert code == 0
    assert {
        "name": "poisonbench.plugins.defences.none",
        "version": __version__,
        "source": "builtin",
        "hooks": ["register_defences"],
    } in rows


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("list", "atacks"),
            "Error: unknown topic 'atacks'. Did you mean: attacks? Valid: attacks, datasets, defences, learners, plugins",
        ),
        (
            ("--plugin", "no_such_module", "list"),
            "Error: --plugin no_such_module: cannot import it (ModuleNotFoundError: No module named 'no_such_module')",
        ),
        (
            ("--plugin", "plugins_for_tests.duplicate_defence", "list"),
            "Error: duplicate defence name 'none': registered by plugin 'poisonbench.plugins.defences.none' and by plugin 'plugins_for_tests.duplicate_defence'",
        ),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(capsys, args, message):
    code, _out, err = run_cli(capsys, *args)
    assert code == 2
    assert err.strip() == message
    assert "Traceback" not in err


def test_example_plugin_appears_through_its_entry_point(tmp_path):
    """The example plugin package, installed in a throwaway target, shows up in `list attacks`."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE_PLUGIN),
        ],
        check=True,
        capture_output=True,
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), *sys.path]),
        "POISONBENCH_LOAD_PLUGINS": "boundary_flip",
    }
    done = subprocess.run(
        [sys.executable, "-m", "poisonbench", "list", "attacks", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    row = next(r for r in json.loads(done.stdout) if r["name"] == "boundary-flip")
    assert row["plugin"] == "boundary_flip" and row["version"] == "0.1.0"
    assert row["parameters"] == {"batch_size": 10}
