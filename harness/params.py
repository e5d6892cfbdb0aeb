"""Declared parameters of a plugin factory, in the spirit of scikit-learn's ``_parameter_constraints``.

A factory (class or function) declares each parameter once with :func:`declare`::

    @declare({"batch_size": Param(int, "poisons per batch", low=1)})
    class LabelFlip:
        def __init__(self, batch_size: int = 100): ...

Names and defaults come from the signature; type, range, choices and documentation from the
declaration, stored as the factory's ``parameters`` and checked on every call (so direct use
from Python is checked as well as a campaign). The registry, ``poisonbench list``, the campaign loader and ``run --dry-run`` all
read it, so a bad value is one line before any trial runs. A custom ``check`` callable covers
what a range cannot say (a target spec, a digit pair) and raises ``ValueError`` with the problem.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a table",
}


@dataclass(frozen=True)
class Param:
    """One parameter: accepted types, an optional closed/open range, choices, a check and its doc.

    ``types``: a TOML value's Python type(s); ``int`` is accepted where ``float`` is, ``bool`` never
    counts as a number. ``object`` accepts anything (the check, if any, decides). ``optional``:
    ``None`` (an absent TOML key's default) is also valid. ``path``: the value names a file or
    folder, read relative to the campaign file, whose bytes enter the trial id
    (:mod:`poisonbench.data_identity`)."""

    types: type | tuple[type, ...]
    doc: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    optional: bool = False
    check: Callable[[Any], Any] | None = None
    path: bool = False

    @property
    def _types(self) -> tuple[type, ...]:
        types = self.types if isinstance(self.types, tuple) else (self.types,)
        return (*types, int) if float in types and int not in types else types

    def describe(self) -> str:
        """What the value must be, e.g. ``an integer >= 1`` or ``one of 'test', 'train' (or None)``."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            shown = [t for t in self._types if not (t is int and float in self._types)]
            text = " or ".join(_TYPE_NAMES.get(t, "any value" if t is object else t.__name__) for t in shown)
            lo = None if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
            hi = None if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
            bounds = " and ".join(b for b in (lo, hi) if b)
            text += f" {bounds}" if bounds else ""
        return text + (" (or None)" if self.optional else "")

    def validate(self, name: str, value: Any) -> None:
        """Raise ``ValueError('<name>: expected …, got …')`` unless ``value`` satisfies the declaration."""
        if value is None and self.optional:
            return
        if not self._type_ok(value):
            raise ValueError(f"{name}: expected {self.describe()}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{name}: expected {self.describe()}, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not self._in_range(value):
            raise ValueError(f"{name}: expected {self.describe()}, got {value!r}")
        if self.check is not None:
            try:
                self.check(value)
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(f"{name}: {_message(exc)}") from None

    def _type_ok(self, value: Any) -> bool:
        if object in self._types:
            return True
        if isinstance(value, bool):
            return bool in self._types
        return isinstance(value, self._types)

    def _in_range(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))


def declare(parameters: dict[str, Param]) -> Callable[[F], F]:
    """Attach ``parameters`` to a factory (class or function) and check every argument given to
    it (``__init__`` for a class) against them: ``ValueError('<name>: expected …, got …')``.
    Declared names must be parameters of the signature."""

    def decorate(factory: F) -> F:
        target = factory.__init__ if inspect.isclass(factory) else factory
        signature = inspect.signature(target)
        unknown = sorted(set(parameters) - set(signature.parameters))
        if unknown:
            raise TypeError(f"{factory.__qualname__}: declared parameter(s) {unknown} are not in its signature")

        @functools.wraps(target)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            for name, value in bound.arguments.items():
                if name in parameters:
                    parameters[name].validate(name, value)
            return target(*args, **kwargs)

        if inspect.isclass(factory):
            factory.__init__ = checked  # type: ignore[method-assign]
            factory.parameters = dict(parameters)  # type: ignore[attr-defined]
            return factory
        checked.parameters = dict(parameters)  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return decorate


def declared(factory: Any) -> dict[str, Param]:
    """The factory's ``parameters`` declaration (empty for a factory that declares none)."""
    table = getattr(factory, "parameters", None)
    return dict(table) if isinstance(table, dict) else {}


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args else type(exc).__name__
