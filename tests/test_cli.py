"""The command line: list, --version, --plugin, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
        "parameter_docs": {},
    }
    assert {r["kind"] for r in rows} == {"dataset", "learner", "attack", "defence"}


def test_list_one_kind_in_text(capsys):
    code, out, _ = run_cli(capsys, "--plugin", "plugins_for_tests.toy_components", "list", "datasets")
    assert code == 0
    assert "toy" in out and "--n = 40" in out and "noop" not in out


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
