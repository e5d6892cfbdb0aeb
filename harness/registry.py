"""The registry: every dataset, learner, attack and defence that plugins registered.

A component is a *factory* (a class or function) called with the ``params`` of a campaign
entry; its parameter names and defaults are read from its signature, their types, ranges and
documentation from its ``parameters`` declaration (:mod:`poisonbench.params`; an undeclared
parameter's documentation from the docstring's numpydoc ``Parameters`` section), its one-line
description from its docstring. :meth:`Component.check_params` is the one place parameter
values are checked: before a factory is called and at ``run --dry-run``. Names are unique per kind; unknown names raise :class:`UnknownNameError`
with close matches.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from poisonbench.params import Param, declared

KINDS = ("datasets", "learners", "attacks", "defences")
#: Parameters the harness passes itself, per kind (a campaign may not set them in ``params``):
#: a dataset's ``seed`` comes from the campaign's top-level ``seeds``.
RESERVED_PARAMETERS: dict[str, tuple[str, ...]] = {"datasets": ("seed",)}


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


class _ParameterProblem:
    """A bad parameter: ``what`` (the component), ``key`` and ``problem``; one line."""

    def __init__(self, what: str, key: str, problem: str):
        self.what, self.key, self.problem = what, key, problem
        super().__init__(f"{what}: {key}: {problem}")  # type: ignore[call-arg]


class ParameterNameError(_ParameterProblem, TypeError):
    """An unknown parameter name, or a required one missing."""


class ParameterValueError(_ParameterProblem, ValueError):
    """A declared parameter's value is not what the declaration accepts."""


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

    @property
    def declarations(self) -> dict[str, Param]:
        """The factory's declared parameters (:func:`poisonbench.params.declared`)."""
        return declared(self.factory)

    @property
    def parameter_docs(self) -> dict[str, str]:
        """Parameter name -> one line of documentation: the declaration's ``doc``, else the
        entry of the docstring's numpydoc ``Parameters`` section (:func:`docstring_parameters`),
        else ``""``."""
        from_docstring = docstring_parameters(self.factory)
        declarations = self.declarations
        return {
            name: (declarations[name].doc if name in declarations else "") or from_docstring.get(name, "")
            for name in self.parameters
        }

    def check_params(self, params: dict[str, Any], reserved: tuple[str, ...] = ()) -> None:
        """Raise :class:`ParameterNameError` (a ``TypeError``) for an unknown or missing name and
        :class:`ParameterValueError` (a ``ValueError``) for a declared parameter's bad value; each
        names the component and the parameter in one line. ``reserved``: names the harness passes
        itself (a dataset's ``seed``)."""
        known = self.parameters
        what = f"{self.kind[:-1]} {self.name!r}"
        accepts_any = any(p.kind == p.VAR_KEYWORD for p in _signature(self.factory).parameters.values())
        unknown = sorted(set(params) - set(known))
        if unknown and not accepts_any:
            valid = ", ".join(k for k in known if k not in reserved)
            raise ParameterNameError(what, unknown[0], f"unknown parameter of {what}; valid: {valid or '(none)'}")
        missing = sorted(k for k, v in known.items() if v == "<required>" and k not in params and k not in reserved)
        if missing:
            raise ParameterNameError(what, missing[0], f"missing required parameter(s) {', '.join(missing)}")
        for name, decl in self.declarations.items():
            if name in params:
                try:
                    decl.validate(name, params[name])
                except ValueError as exc:
                    problem = str(exc)[len(name) + 2 :] if str(exc).startswith(f"{name}: ") else str(exc)
                    raise ParameterValueError(what, name, problem) from None

    def create(self, **params: Any) -> Any:
        """Check ``params`` (:meth:`check_params`), then call the factory with them."""
        self.check_params(params)
        return self.factory(**params)

    def as_dict(self) -> dict[str, Any]:
        """The metadata ``poisonbench list --json`` prints: every parameter's default, and its
        ``expected`` values (from the declaration; None when undeclared) and ``doc``."""
        declarations = self.declarations
        return {
            "name": self.name,
            "kind": self.kind[:-1],
            "plugin": self.plugin,
            "version": self.version,
            "description": self.description,
            "parameters": {k: _jsonable(v) for k, v in self.parameters.items()},
            "parameter_docs": {
                k: {"expected": declarations[k].describe() if k in declarations else None, "doc": doc}
                for k, doc in self.parameter_docs.items()
            },
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


def docstring_parameters(factory: Callable[..., Any]) -> dict[str, str]:
    """Parameter name -> its description, one line, from the numpydoc ``Parameters`` section of
    the factory's docstring (a class's, else its ``__init__``'s)::

        Parameters
        ----------
        n_train, n_test
            Split sizes.
        bound : float
            Feasible box ``[−bound, bound]^d``.

    An entry line names one or more parameters (comma-separated, an optional ``: type``); the
    indented lines below it are their description. ``{}`` without such a section."""
    docs = [inspect.getdoc(factory) or ""]
    if inspect.isclass(factory):
        docs.append(inspect.getdoc(factory.__init__) or "")
    for doc in docs:
        found = _numpydoc_section(doc.splitlines(), "Parameters")
        if found:
            return found
    return {}


def _numpydoc_section(lines: list[str], title: str) -> dict[str, str]:
    """The entries of the numpydoc section ``title`` (a title line underlined with dashes)."""
    for i in range(len(lines) - 1):
        underline = lines[i + 1].strip()
        if lines[i].strip() == title and underline and set(underline) == {"-"}:
            break
    else:
        return {}
    base = _indent(lines[i])
    body = lines[i + 2 :]
    out: dict[str, str] = {}
    names: list[str] = []
    for j, line in enumerate(body):
        text = line.strip()
        if not text:
            continue
        if _indent(line) < base:
            break
        if _indent(line) == base:
            following = body[j + 1].strip() if j + 1 < len(body) else ""
            if following and set(following) == {"-"}:  # the next section's title
                break
            names = [n.strip() for n in text.split(":")[0].split(",") if n.strip()]
            out.update(dict.fromkeys(names, ""))
        else:
            for name in names:
                out[name] = f"{out[name]} {text}".strip()
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)
