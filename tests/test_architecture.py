"""The architecture holds: one installed namespace, one-way imports, no cycles.

Layers (each may import only the ones below it; imports inside functions count too, since that
is where cycles hide):

    poisonbench.cli                       the command line (the application)
    poisonbench.plugins | .leaderboards   built-in plugins; the store and its queries (independent)
    poisonbench (the host's core)         types, hook specs, registry, campaigns, trials, executors

The graph is read from the source with :mod:`ast` rather than with import-linter: grimp walks the
file system from the top package's folder, and our ``package-dir`` mapping puts
``poisonbench.plugins`` and ``poisonbench.leaderboards`` outside ``harness/``, where it would
never look.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {
    "poisonbench": ROOT / "harness",
    "poisonbench.plugins": ROOT / "plugins",
    "poisonbench.leaderboards": ROOT / "leaderboards",
}
LAYER_OF_PREFIX = (
    ("poisonbench.cli", 3),
    ("poisonbench.__main__", 3),
    ("poisonbench.plugins", 2),
    ("poisonbench.leaderboards", 2),
)


def module_files() -> dict[str, Path]:
    """Every module of the installed package, by dotted name, from the mapped folders."""
    out: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its source)."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets.add(base)
                targets |= {f"{base}.{alias.name}" for alias in node.names}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def layer(module: str) -> int:
    for prefix, level in LAYER_OF_PREFIX:
        if module == prefix or module.startswith(prefix + "."):
            return level
    return 1


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycles():
    assert cycles(import_graph()) == []


def test_cycle_detection_finds_a_planted_cycle():
    graph = import_graph()
    graph["poisonbench.campaign"] = graph["poisonbench.campaign"] | {"poisonbench.trial"}
    assert ["poisonbench.campaign", "poisonbench.trial"] in cycles(graph)


def test_imports_point_down_the_layers_only():
    graph = import_graph()
    upward = sorted(
        (a, b)
        for a, targets in graph.items()
        for b in targets
        if layer(b) > layer(a) or (layer(a) == layer(b) == 2 and a.split(".")[1] != b.split(".")[1])
    )
    assert upward == []


def test_the_core_never_imports_the_package_root():
    """The root re-exports the core; a core module importing it would be a cycle in waiting."""
    graph = import_graph()
    assert sorted(a for a, targets in graph.items() if layer(a) == 1 and "poisonbench" in targets) == []


def test_pyproject_lists_every_package_folder():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {name for name, path in module_files().items() if path.name == "__init__.py"}
    assert listed == found


def test_every_builtin_plugin_module_is_listed_and_nothing_else():
    from poisonbench.host import BUILTIN_PLUGINS

    with_hooks = {
        name
        for name, path in module_files().items()
        if name.startswith("poisonbench.plugins.") and "\ndef register_" in path.read_text(encoding="utf-8")
    }
    assert set(BUILTIN_PLUGINS) == with_hooks


def test_a_wheel_installs_only_the_poisonbench_package(tmp_path):
    """``pip install .`` puts one import package on the path (plus its dist-info), with the data."""
    pytest.importorskip("setuptools")
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout
    source.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / part, source / part)
    for folder in FOLDERS.values():
        shutil.copytree(folder, source / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = tmp_path.glob("poisonbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"poisonbench"}
    assert "poisonbench/plugins/attacks/mtp.py" in names
    assert "poisonbench/leaderboards/store.py" in names
    assert "poisonbench/plugins/datasets/data/mnist_5k.csv.gz" in names
    assert not any(n.endswith(".parquet") for n in names), "committed results must stay out of the package"
