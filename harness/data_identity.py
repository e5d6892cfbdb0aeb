"""Data identity: file parameters resolve against the campaign file, and their bytes enter the trial id.

A parameter declared ``Param(..., path=True)`` names a file (or a folder of files). A relative
path is read relative to the folder of the campaign file that names it, never the working
directory, so a campaign runs the same from anywhere. The SHA-256 of the bytes is part of the
trial's configuration (``ComponentSpec.data``), hence of its id: rewriting a data file makes its
trials new, and stored rows of the old data are never reused for it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from poisonbench.params import Param

_CHUNK = 1 << 20


def resolve_path(value: str, base_dir: str | Path | None) -> Path:
    """``value`` with ``~`` expanded, relative to ``base_dir`` (the campaign file's folder) when
    it is relative and a base is known."""
    path = Path(value).expanduser()
    if path.is_absolute() or base_dir is None:
        return path
    return Path(base_dir) / path


def content_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (names and bytes, sorted, not recursive)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.name.encode() + b"\0")
        with open(f, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def path_parameters(declarations: dict[str, Param], params: dict[str, Any]) -> dict[str, str]:
    """The given parameters that are declared as paths (and not None)."""
    return {k: v for k, v in params.items() if k in declarations and declarations[k].path and v is not None}


def resolved(declarations: dict[str, Param], params: dict[str, Any], base_dir: str | Path | None) -> dict[str, Any]:
    """``params`` with every declared path resolved against ``base_dir`` (as a string)."""
    paths = path_parameters(declarations, params)
    return {**params, **{k: str(resolve_path(v, base_dir)) for k, v in paths.items()}}
