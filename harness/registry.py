"""The registry: every dataset, learner, attack and defence that plugins registered.

A component is a *factory* (a class or function) called with the ``params`` of a campaign
entry; its parameters and defaults are read from its signature, its one-line description
from its docstring. Names are unique per kind; unknown names raise :class:`UnknownNameError`
with close matches.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

KINDS = ("datasets", "learners", "attacks", "defences")


class UnknownNameError(LookupError):
    """A name that no plugin registered; the message lists close matches and valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        close = difflib.get_close_matches(name, self.valid, n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        singular = kind[:-1] if kind.endswith("s") else kind
        super().__init__(f"unknown {singular} {name!r}.{hint} Valid: {', '.join(self.valid) or '(none)'}")

    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateNameError(ValueError):
    """Two plugins registered the same name for one kind."""


@dataclass(frozen=True)
class Component:
    """A registered factory with the metadata ``poisonbench list`` shows."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    version: str
    description: str

    @property
    def parameters(self) -> dict[str, Any]:
        """Parameter name -> default (``None`` shown for required parameters as ``"<required>"``)."""
        out: dict[str, Any] = {}
        for p in _signature(self.factory).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out[p.name] = "<required>" if p.default is p.empty else p.default
        return out

    def create(self, **params: Any) -> Any:
        """Call the factory with ``params``; unknown parameter names raise ``TypeError`` naming them."""
        known = self.parameters
        accepts_any = any(p.kind == p.VAR_KEYWORD for p in _signature(self.factory).parameters.values())
        unknown = sorted(set(params) - set(known))
        if unknown and not accepts_any:
            raise TypeError(
                f"{self.kind[:-1]} {self.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                f"valid: {', '.join(known) or '(none)'}"
            )
        missing = sorted(k for k, v in known.items() if v == "<required>" and k not in params)
        if missing:
            raise TypeError(f"{self.kind[:-1]} {self.name!r}: missing required parameter(s) {', '.join(missing)}")
        return self.factory(**params)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind[:-1],
            "plugin": self.plugin,
            "version": self.version,
            "description": self.description,
            "parameters": {k: _jsonable(v) for k, v in self.parameters.items()},
        }


class Registry:
    """Components by kind and name."""

    def __init__(self) -> None:
        self._by_kind: dict[str, dict[str, Component]] = {k: {} for k in KINDS}

    def add(self, component: Component) -> None:
        table = self._by_kind[component.kind]
        if component.name in table:
            other = table[component.name]
            raise DuplicateNameError(
                f"duplicate {component.kind[:-1]} name {component.name!r}: registered by plugin "
                f"{other.plugin!r} and by plugin {component.plugin!r}"
            )
        table[component.name] = component

    def get(self, kind: str, name: str) -> Component:
        if kind not in self._by_kind:
            raise UnknownNameError("kinds", kind, list(KINDS))
        try:
            return self._by_kind[kind][name]
        except KeyError:
            raise UnknownNameError(kind, name, list(self._by_kind[kind])) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def components(self, kind: str | None = None) -> list[Component]:
        kinds = KINDS if kind is None else (kind,)
        return [c for k in kinds for _, c in sorted(self._by_kind[k].items())]


def _signature(factory: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(factory.__init__ if inspect.isclass(factory) else factory)


def describe(factory: Callable[..., Any]) -> str:
    """First line of the factory's docstring."""
    doc = inspect.getdoc(factory) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)
