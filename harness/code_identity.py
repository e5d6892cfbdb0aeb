"""Code identity: a hash of the plugin code that produced a row.

Each result row stores ``code_hash``, the SHA-256 of the source of its four components' modules
and every module of the same plugin package they import, transitively (for the built-ins: the
modules of ``poisonbench.plugins`` reached from the component's module; for a component the host
defines itself, its module alone). The source is hashed
as its syntax tree without docstrings, so reformatting, comments and documentation do not make
a row stale, while any change to what the code does does. ``tests/test_reproduction.py`` fails
when a committed row's hash differs from the current code's.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path


def _package_root(module: str) -> str:
    """The package whose modules count as the component's code: ``poisonbench.plugins`` for a
    built-in plugin, the top-level package of a third-party one, and the module alone for a
    component the host itself defines (``none`` is ``poisonbench.defence.NoDefence``): the host's
    core is not plugin code, and following its imports would make every row that uses such a
    component stale at any change of the core."""
    if module.startswith("poisonbench.plugins"):
        return "poisonbench.plugins"
    if module == "poisonbench" or module.startswith("poisonbench."):
        return module
    return module.split(".")[0]


def _source_file(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts[: len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}
    return out


def _normalised(tree: ast.Module) -> str:
    """The tree without docstrings, dumped without line numbers."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0].value if body and isinstance(body[0], ast.Expr) else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


@lru_cache(maxsize=64)
def code_hash(modules: tuple[str, ...]) -> str:
    """SHA-256 of the normalised source of ``modules`` and their transitive imports within each
    one's plugin package (16 hex digits)."""
    seen: dict[str, str] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _source_file(name)
        if path is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        root = _package_root(name)
        for target in _imports(tree, name, path.name == "__init__.py"):
            if target != name and (target == root or target.startswith(root + ".")):
                todo.append(target)
        seen[name] = _normalised(tree)
    h = hashlib.sha256()
    for name in sorted(seen):
        h.update(name.encode() + b"\0" + seen[name].encode() + b"\0")
    return h.hexdigest()[:16]
