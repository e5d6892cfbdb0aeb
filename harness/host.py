"""The plugin manager: loads built-in and third-party plugins and builds the registry.

Order of loading (as simonw/llm): third-party entry points of the group ``poisonbench``
(filtered by ``POISONBENCH_LOAD_PLUGINS``), modules named with ``--plugin``, then the built-in
modules listed in :data:`BUILTIN_PLUGINS` (registered like any other plugin; the host imports
them by name, so it has no import-time dependency on ``poisonbench.plugins``). A third-party plugin that fails
to import is a warning naming it; duplicate names and hook implementations without a spec are
errors (:class:`PluginError`).

``POISONBENCH_LOAD_PLUGINS``: unset = every installed plugin; empty = none; otherwise a
comma-separated allow-list of entry-point or distribution names.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

import poisonbench.hookspecs as hookspecs
from poisonbench.registry import KINDS, Component, DuplicateNameError, Registry, describe

ENTRY_POINT_GROUP = "poisonbench"
LOAD_PLUGINS_ENV = "POISONBENCH_LOAD_PLUGINS"
#: The built-in plugin modules, in load order (as llm's ``DEFAULT_PLUGINS``).
BUILTIN_PLUGINS = (
    "poisonbench.plugins.datasets.adult",
    "poisonbench.plugins.datasets.file",
    "poisonbench.plugins.datasets.gaussians",
    "poisonbench.plugins.datasets.mnist",
    "poisonbench.plugins.learners.linear",
    "poisonbench.plugins.learners.torch_l2",
    "poisonbench.plugins.defences.l2",
    "poisonbench.plugins.defences.knn",
    "poisonbench.plugins.defences.loss_filter",
    "poisonbench.plugins.defences.none",
    "poisonbench.plugins.defences.slab",
    "poisonbench.plugins.defences.sphere",
    "poisonbench.plugins.defences.svd",
    "poisonbench.plugins.defences.trim",
    "poisonbench.plugins.attacks.biggio_svm",
    "poisonbench.plugins.attacks.influence",
    "poisonbench.plugins.attacks.gradient_lr",
    "poisonbench.plugins.attacks.kkt",
    "poisonbench.plugins.attacks.kkt_defence_aware",
    "poisonbench.plugins.attacks.koh_label_flip",
    "poisonbench.plugins.attacks.label_flip",
    "poisonbench.plugins.attacks.minmax",
    "poisonbench.plugins.attacks.mtp",
    "poisonbench.plugins.attacks.mtp_defence_aware",
    "poisonbench.plugins.attacks.replay",
    "poisonbench.plugins.attacks.rmd",
)


class PluginError(RuntimeError):
    """A plugin could not be registered: duplicate name, unknown hook, bad registration."""


class PluginLoadWarning(UserWarning):
    """A third-party plugin failed to import; the others still load."""


@dataclass
class PluginInfo:
    name: str
    version: str
    source: str  # "builtin", "entry point" or "--plugin"
    hooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "source": self.source, "hooks": self.hooks}


@dataclass
class PluginHost:
    """A loaded plugin manager, the registry it produced and what was loaded."""

    pm: pluggy.PluginManager
    registry: Registry
    plugins: list[PluginInfo]

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """Instantiate the component ``name`` of ``kind`` with ``params``."""
        return self.registry.get(kind, name).create(**params)


def load_host(extra_modules: Iterable[str] = (), load_external: bool = True) -> PluginHost:
    """Build a plugin manager with every plugin loaded and a validated registry."""
    from poisonbench.version import __version__

    pm = pluggy.PluginManager("poisonbench")
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    if load_external:
        infos += _load_entry_points(pm)
    for module_name in extra_modules:
        module = _import_explicit(module_name)
        _register(pm, module, module_name)
        infos.append(PluginInfo(module_name, _module_version(module), "--plugin"))
    for module_name in BUILTIN_PLUGINS:
        _register(pm, importlib.import_module(module_name), module_name)
        infos.append(PluginInfo(module_name, __version__, "builtin"))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {pm.get_name(exc.plugin)!r} implements a hook that poisonbench does not define: {exc}. "
            f"Valid hooks: {', '.join(_hook_names())}"
        ) from None
    versions = {info.name: info.version for info in infos}
    registry = _build_registry(pm, versions)
    for info in infos:
        plugin = pm.get_plugin(info.name)
        info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    return PluginHost(pm, registry, infos)


def _hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith(("register_", "trial_")))


def _register(pm: pluggy.PluginManager, module: ModuleType, name: str) -> None:
    if pm.get_plugin(name) is not None:
        raise PluginError(f"plugin {name!r} is loaded twice (entry point and --plugin?)")
    pm.register(module, name=name)


def _import_explicit(spec: str) -> ModuleType:
    """Import a ``--plugin``: a path to a ``.py`` file, or a module name (looked up on
    ``sys.path`` and then in the current directory, so ``--plugin my_attack`` finds
    ``./my_attack.py`` as the README says)."""
    try:
        if spec.endswith(".py") or os.sep in spec:
            return _import_file(Path(spec))
        try:
            return importlib.import_module(spec)
        except ModuleNotFoundError as exc:
            if exc.name != spec.split(".")[0] or not (Path.cwd() / (spec.replace(".", os.sep) + ".py")).is_file():
                raise
            return _import_file(Path.cwd() / (spec.replace(".", os.sep) + ".py"))
    except Exception as exc:
        raise PluginError(f"--plugin {spec}: cannot import it ({type(exc).__name__}: {exc})") from None


def _import_file(path: Path) -> ModuleType:
    """Import the Python file ``path`` as a module named after its stem."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file {str(path)!r}")
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{str(path)!r} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _allowed_external() -> set[str] | None:
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _load_entry_points(pm: pluggy.PluginManager) -> list[PluginInfo]:
    allowed = _allowed_external()
    infos = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist_name = ep.dist.name if ep.dist else ""
        if allowed is not None and ep.name not in allowed and dist_name not in allowed:
            continue
        try:
            module = ep.load()
        except Exception as exc:
            warnings.warn(
                f"poisonbench: plugin {ep.name!r} ({ep.value}) failed to import and was skipped: "
                f"{type(exc).__name__}: {exc}",
                PluginLoadWarning,
                stacklevel=2,
            )
            continue
        _register(pm, module, ep.name)
        infos.append(PluginInfo(ep.name, ep.dist.version if ep.dist else "unknown", "entry point"))
    return infos


def _module_version(module: ModuleType) -> str:
    return str(getattr(module, "__version__", "unknown"))


def _build_registry(pm: pluggy.PluginManager, versions: dict[str, str]) -> Registry:
    registry = Registry()
    for kind in KINDS:
        caller = getattr(pm.hook, f"register_{kind}")
        for impl in reversed(caller.get_hookimpls()):
            plugin_name = impl.plugin_name
            impl.function(register=_registrar(registry, kind, plugin_name, versions.get(plugin_name, "unknown")))
    return registry


def _registrar(registry: Registry, kind: str, plugin_name: str, version: str) -> Callable[..., None]:
    """The ``register`` callback handed to ``plugin_name``'s ``register_<kind>`` hook."""

    def register(factory: Any, name: str | None = None, description: str | None = None) -> None:
        comp_name = name or getattr(factory, "name", None) or getattr(factory, "__name__", None)
        if not isinstance(comp_name, str) or not comp_name:
            raise PluginError(f"plugin {plugin_name!r} registered a {kind[:-1]} without a name")
        if not callable(factory):
            raise PluginError(f"plugin {plugin_name!r}: {kind[:-1]} {comp_name!r} is not callable")
        component = Component(
            kind,
            comp_name,
            factory,
            plugin_name,
            version,
            description if description is not None else describe(factory),
        )
        try:
            registry.add(component)
        except DuplicateNameError as exc:
            raise PluginError(str(exc)) from None

    return register
