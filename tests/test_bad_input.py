"""Every bad input gets one clear line and exit code 2: a table of probes, as a careless or
hostile user would try them (campaign files, names, parameters, stores, paths, options).

Each probe is ``(id, setup, argv, expected)``: ``setup(tmp)`` writes what the probe needs
and returns the substitutions of ``argv``; the run must exit with 2, print exactly one
``Error:`` line on stderr that contains ``expected`` and no traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from poisonbench.cli.main import main
from poisonbench.results import SCHEMA

PLUGIN_ARGS = ["--plugin", "plugins_for_tests.toy"]
GOOD = (
    'name = "probe"\nseeds = [0]\nbudgets = [0, 2]\n'
    '[[datasets]]\nname = "tiny"\n[[learners]]\nname = "toy-ridge"\n[[attacks]]\nname = "toy-flip"\n'
)


def toml(text: str, replace: tuple[str, str] | None = None) -> Callable[[Path], dict[str, str]]:
    """A campaign file: ``text`` (or GOOD with ``replace = (old, new)`` applied)."""

    def setup(tmp: Path) -> dict[str, str]:
        body = GOOD.replace(*replace) if replace else text
        assert replace is None or replace[0] in GOOD, replace
        path = tmp / "c.toml"
        path.write_text(body, encoding="utf-8")
        return {"c": str(path)}

    return setup


def raw(data: bytes) -> Callable[[Path], dict[str, str]]:
    def setup(tmp: Path) -> dict[str, str]:
        (tmp / "c.toml").write_bytes(data)
        return {"c": str(tmp / "c.toml")}

    return setup


def store_with(make: Callable[[Path], None]) -> Callable[[Path], dict[str, str]]:
    """A good campaign file and a store prepared by ``make(store)``."""

    def setup(tmp: Path) -> dict[str, str]:
        out = toml(GOOD)(tmp)
        store = tmp / "store"
        store.mkdir()
        make(store)
        return {**out, "s": str(store)}

    return setup


def zero_row_trial_file(store: Path) -> None:
    folder = store / "probe"
    folder.mkdir()
    meta = {b"poisonbench.schema_version": b"2"}
    pq.write_table(SCHEMA.with_metadata(meta).empty_table(), folder / "trial-0000000000000001.parquet")


def campaign_dir_is_a_file(store: Path) -> None:
    (store / "probe").write_text("not a folder")


def campaign_json_is_a_folder(store: Path) -> None:
    (store / "probe" / "_campaign.json").mkdir(parents=True)


def plugin_file(text: str) -> Callable[[Path], dict[str, str]]:
    def setup(tmp: Path) -> dict[str, str]:
        (tmp / "my_plugin.py").write_text(text)
        return {"p": str(tmp / "my_plugin.py")}

    return setup


def nothing(tmp: Path) -> dict[str, str]:
    (tmp / "afile").write_text("x")
    return {"f": str(tmp / "afile"), "d": str(tmp)}


PROBES: list[tuple[str, Callable[[Path], dict[str, str]], list[str], str]] = [
    # the campaign file itself
    ("missing file", nothing, ["run", "{d}/nope.toml"], "campaign file not found"),
    ("a folder", nothing, ["run", "{d}"], "is a directory"),
    ("binary bytes", raw(bytes(range(256)) * 4), ["run", "{c}"], "not UTF-8 text"),
    ("NUL bytes", raw(b'name = "x\x00y"\n'), ["run", "{c}"], "not valid TOML"),
    ("empty file", raw(b""), ["run", "{c}"], "budgets: missing"),
    ("UTF-16", raw(GOOD.encode("utf-16")), ["run", "{c}"], "not UTF-8 text"),
    ("bad TOML", toml("name = [\n"), ["run", "{c}"], "not valid TOML"),
    (
        "TOML date value",
        toml("", ("budgets = [0, 2]", "budgets = [0, 2]\ndescription = 2024-01-01")),
        ["run", "{c}"],
        "description: expected a string",
    ),
    # names
    ("name with a slash", toml("", ('name = "probe"', 'name = "a/b"')), ["run", "{c}"], "not a usable campaign name"),
    (
        "name starting with a dot",
        toml("", ('name = "probe"', 'name = ".hidden"')),
        ["run", "{c}"],
        "not a usable campaign name",
    ),
    (
        "name of 300 characters",
        toml("", ('name = "probe"', f'name = "{"n" * 300}"')),
        ["run", "{c}", "--store", "{d}/s"],
        "too long",
    ),
    ("name not a string", toml("", ('name = "probe"', "name = 3")), ["run", "{c}"], "name: expected a string"),
    (
        "name with NUL escape",
        toml("", ('name = "probe"', 'name = "a\\u0000b"')),
        ["run", "{c}", "--store", "{d}/s"],
        "null",
    ),
    # budgets and seeds
    ("negative budget", toml("", ("budgets = [0, 2]", "budgets = [-1]")), ["run", "{c}"], "non-negative"),
    ("fraction above 1", toml("", ("budgets = [0, 2]", "budgets = [1.5]")), ["run", "{c}"], "0 < b <= 1"),
    ("duplicate budgets", toml("", ("budgets = [0, 2]", "budgets = [2, 2]")), ["run", "{c}"], "duplicate"),
    ("budget as string", toml("", ("budgets = [0, 2]", 'budgets = ["10"]')), ["run", "{c}"], "expected an integer"),
    ("budgets empty", toml("", ("budgets = [0, 2]", "budgets = []")), ["run", "{c}"], "non-empty list"),
    ("budget as boolean", toml("", ("budgets = [0, 2]", "budgets = [true]")), ["run", "{c}"], "expected an integer"),
    ("negative seed", toml("", ("seeds = [0]", "seeds = [-1]")), ["run", "{c}"], "seeds[0]: expected an integer >= 0"),
    ("seeds empty", toml("", ("seeds = [0]", "seeds = []")), ["run", "{c}"], "non-empty list"),
    ("seeds not a list", toml("", ("seeds = [0]", "seeds = 3")), ["run", "{c}"], "non-empty list"),
    ("duplicate seeds", toml("", ("seeds = [0]", "seeds = [1, 1]")), ["run", "{c}"], "duplicate"),
    # top-level keys
    ("unknown key", toml("", ("seeds = [0]", "seeds = [0]\nbugdets = 3")), ["run", "{c}"], "did you mean 'budgets'"),
    ("timeout zero", toml("", ("seeds = [0]", "seeds = [0]\ntimeout = 0")), ["run", "{c}"], "number > 0"),
    (
        "timeout as string",
        toml("", ("seeds = [0]", 'seeds = [0]\ntimeout = "1h"')),
        ["run", "{c}"],
        "expected a finite number",
    ),
    (
        "timeout without isolation",
        toml("", ("seeds = [0]", 'seeds = [0]\ntimeout = 5\nisolation = "none"')),
        ["run", "{c}"],
        "needs isolation = 'process'",
    ),
    (
        "bad isolation",
        toml("", ("seeds = [0]", 'seeds = [0]\nisolation = "thread"')),
        ["run", "{c}"],
        "expected one of 'process', 'none'",
    ),
    (
        "bad feasibility",
        toml("", ("seeds = [0]", 'seeds = [0]\nfeasibility = "loose"')),
        ["run", "{c}"],
        "expected one of 'exact', 'box'",
    ),
    (
        "memory limit below 1 MB",
        toml("", ("seeds = [0]", "seeds = [0]\nmemory_limit_mb = 0")),
        ["run", "{c}"],
        "number >= 1",
    ),
    (
        "negative feasibility_tol",
        toml("", ("seeds = [0]", "seeds = [0]\nfeasibility_tol = -1.0")),
        ["run", "{c}"],
        "number >= 0",
    ),
    (
        "NaN record_every",
        toml("", ("seeds = [0]", "seeds = [0]\nrecord_every = nan")),
        ["run", "{c}"],
        "expected an integer",
    ),
    (
        "negative max_retries",
        toml("", ("seeds = [0]", "seeds = [0]\nmax_retries = -1")),
        ["run", "{c}"],
        "integer >= 0",
    ),
    (
        "resources not a table",
        toml("", ("seeds = [0]", "seeds = [0]\nresources = 4")),
        ["run", "{c}"],
        "expected a table [resources]",
    ),
    (
        "unknown resource",
        toml(GOOD.replace("[[datasets]]", "[resources]\nmemory = 4\n[[datasets]]")),
        ["run", "{c}"],
        "unknown key",
    ),
    (
        "zero CPUs",
        toml(GOOD.replace("[[datasets]]", "[resources]\nnum_cpus = 0\n[[datasets]]")),
        ["run", "{c}"],
        "number > 0",
    ),
    (
        "grid past the limit",
        toml("", ("seeds = [0]", f"seeds = {list(range(100_001))}")),
        ["run", "{c}", "--dry-run"],
        "100,001 trials, more than the limit of 100,000",
    ),
    # components
    ("no attacks", toml(GOOD.split("[[attacks]]")[0]), ["run", "{c}"], "attacks: missing"),
    (
        "attacks not tables",
        toml('attacks = ["toy-flip"]\n' + GOOD.split("[[attacks]]")[0]),
        ["run", "{c}"],
        "expected one or more [[attacks]] tables",
    ),
    (
        "component without name",
        toml("", ('[[attacks]]\nname = "toy-flip"', "[[attacks]]\nlabel = 'x'")),
        ["run", "{c}"],
        "missing key 'name'",
    ),
    ("unknown attack", toml("", ('name = "toy-flip"', 'name = "toy-flp"')), ["run", "{c}"], "Did you mean: toy-flip"),
    ("unknown dataset", toml("", ('name = "tiny"', 'name = "tyni"')), ["run", "{c}"], "unknown dataset 'tyni'"),
    (
        "unknown parameter",
        toml("", ('name = "toy-flip"', 'name = "toy-flip"\nparams = { copis = 2 }')),
        ["run", "{c}"],
        "params.copis",
    ),
    (
        "parameter of the wrong type",
        toml("", ('name = "toy-flip"', 'name = "label-flip"\nparams = { batch_size = "two" }')),
        ["run", "{c}"],
        "params.batch_size",
    ),
    (
        "dataset seed in params",
        toml("", ('name = "tiny"', 'name = "tiny"\nparams = { seed = 3 }')),
        ["run", "{c}"],
        "set seeds with the top-level 'seeds' key",
    ),
    (
        "empty grid",
        toml("", ('name = "toy-flip"', 'name = "toy-flip"\ngrid = { copies = [] }')),
        ["run", "{c}"],
        "non-empty list of values",
    ),
    (
        "grid not a list",
        toml("", ('name = "toy-flip"', 'name = "toy-flip"\ngrid = { copies = 2 }')),
        ["run", "{c}"],
        "non-empty list of values",
    ),
    (
        "grid and params",
        toml("", ('name = "toy-flip"', 'name = "toy-flip"\nparams = { copies = 1 }\ngrid = { copies = [2] }')),
        ["run", "{c}"],
        "also set in params",
    ),
    ("duplicate labels", toml(GOOD + '[[attacks]]\nname = "toy-flip"\n'), ["run", "{c}"], "distinct 'label'"),
    (
        "subpopulations not names",
        toml("", ('name = "tiny"', 'name = "tiny"\nsubpopulations = [1]')),
        ["run", "{c}"],
        "non-empty list of names",
    ),
    (
        "params not a table",
        toml("", ('name = "toy-flip"', 'name = "toy-flip"\nparams = 3')),
        ["run", "{c}"],
        "expected a table of parameter = value",
    ),
    (
        "missing data file",
        toml("", ('name = "tiny"', 'name = "file"\nparams = { path = "nope.csv", label = "y" }')),
        ["run", "{c}"],
        "no such file",
    ),
    # options and executors
    ("bad executor", toml(GOOD), ["run", "{c}", "--executor", "spark"], "Invalid value for '--executor'"),
    ("zero --num-cpus", toml(GOOD), ["run", "{c}", "--num-cpus", "0"], "Invalid value for '--num-cpus'"),
    ("--address with local", toml(GOOD), ["run", "{c}", "--address", "127.0.0.1:1"], "only the ray executor"),
    (
        "unreachable cluster",
        toml(GOOD),
        ["run", "{c}", "--executor", "ray", "--address", "127.0.0.1:1"],
        "cannot reach a Ray cluster there",
    ),
    ("no campaign argument", nothing, ["run"], "Missing argument"),
    ("unknown command", nothing, ["frobnicate"], "No such command"),
    ("unknown list topic", nothing, ["list", "atacks"], "Did you mean: attacks"),
    ("missing plugin module", nothing, ["--plugin", "no_such_plugin_module", "list"], "cannot import it"),
    ("plugin file with a syntax error", plugin_file("def broken(:\n"), ["--plugin", "{p}", "list"], "SyntaxError"),
    ("plugin file that raises", plugin_file("raise RuntimeError('nope')\n"), ["--plugin", "{p}", "list"], "nope"),
    # stores and output paths
    ("store is a file", toml(GOOD), ["run", "{c}", "--store", "{c}"], "store"),
    ("store under a file", toml(GOOD), ["run", "{c}", "--store", "{c}/inner"], "Not a directory"),
    ("campaign folder is a file", store_with(campaign_dir_is_a_file), ["run", "{c}", "--store", "{s}"], "File exists"),
    (
        "_campaign.json is a folder",
        store_with(campaign_json_is_a_folder),
        ["run", "{c}", "--store", "{s}"],
        "Is a directory",
    ),
    ("show on an empty store", nothing, ["leaderboard", "show", "--store", "{d}/empty"], "no results in the store"),
    (
        "show on a store of one 0-row file",
        store_with(zero_row_trial_file),
        ["leaderboard", "show", "--store", "{s}"],
        "no results in the store",
    ),
    (
        "show an unknown campaign",
        store_with(zero_row_trial_file),
        ["leaderboard", "show", "--store", "{s}", "--campaign", "other"],
        "has no results",
    ),
    (
        "show a bad budget",
        store_with(zero_row_trial_file),
        ["leaderboard", "show", "--store", "{s}", "--budget", "lots"],
        "no results in the store",
    ),
    (
        "compare both ways",
        nothing,
        ["leaderboard", "compare", "--attacks", "--campaigns", "c", "d"],
        "one of --attacks or --campaigns, not both",
    ),
    ("compare without a pair", nothing, ["leaderboard", "compare", "--attacks", "a"], "at least two names"),
    ("export without a format", nothing, ["leaderboard", "export"], "Missing option '--format'"),
    (
        "export to a folder",
        store_with(zero_row_trial_file),
        ["leaderboard", "export", "--format", "csv", "--store", "{s}", "-o", "{s}"],
        "is a directory",
    ),
    ("plot of an unknown kind", nothing, ["leaderboard", "plot", "pie", "-o", "x.png"], "'pie' is not one of"),
    (
        "compact an unknown campaign",
        nothing,
        ["leaderboard", "compact", "--store", "{d}", "--campaign", "nope"],
        "has no results",
    ),
]


@pytest.mark.parametrize(("probe", "setup", "argv", "expected"), PROBES, ids=[p[0] for p in PROBES])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, probe, setup, argv, expected):
    monkeypatch.chdir(tmp_path)
    values = setup(tmp_path)
    values.setdefault("d", str(tmp_path))
    args = [a.format(**values) if "{" in a else a for a in argv]
    try:
        main([*PLUGIN_ARGS, *args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 2, (probe, code, err)
    assert len(errors) == 1 and expected in errors[0], (probe, err)
    assert "Traceback" not in err
    assert not [line for line in err.splitlines() if line and not line.startswith(("Error:", "Warning:", "["))], err


def test_probe_ids_are_distinct():
    assert len({p[0] for p in PROBES}) == len(PROBES)
