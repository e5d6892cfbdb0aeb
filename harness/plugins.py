"""The plugin manager: loads built-in and third-party plugins and builds the registry.

Order of loading (as simonw/llm): third-party entry points of the group ``poisonbench``
(filtered by ``POISONBENCH_LOAD_PLUGINS``), modules named with ``--plugin``, then the built-in
modules under ``plugins/`` (registered like any other plugin). A third-party plugin that fails
to import is a warning naming it; duplicate names and hook implementations without a spec are
errors (:class:`PluginError`).

``POISONBENCH_LOAD_PLUGINS``: unset = every installed plugin; empty = none; otherwise a
comma-separated allow-list of entry-point or distribution names.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import pkgutil
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Iterable

import pluggy

from harness import hookspecs
from harness.registry import KINDS, Component, DuplicateNameError, Registry, describe

ENTRY_POINT_GROUP = "poisonbench"
LOAD_PLUGINS_ENV = "POISONBENCH_LOAD_PLUGINS"
BUILTIN_PACKAGES = ("plugins.datasets", "plugins.learners", "plugins.defences", "plugins.attacks")


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


def builtin_modules() -> list[str]:
    """Module names of the built-in plugins (the public modules under the ``plugins`` packages;
    ``_private`` modules are solvers and helpers, never plugins)."""
    names: list[str] = []
    for package_name in BUILTIN_PACKAGES:
        package = importlib.import_module(package_name)
        public = (m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
        names += sorted(f"{package_name}.{name}" for name in public)
    return names


def load_host(extra_modules: Iterable[str] = (), load_external: bool = True) -> PluginHost:
    """Build a plugin manager with every plugin loaded and a validated registry."""
    from harness import __version__

    pm = pluggy.PluginManager("poisonbench")
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    if load_external:
        infos += _load_entry_points(pm)
    for module_name in extra_modules:
        module = _import_explicit(module_name)
        _register(pm, module, module_name)
        infos.append(PluginInfo(module_name, _module_version(module), "--plugin"))
    for module_name in builtin_modules():
        module = importlib.import_module(module_name)
        if any(hasattr(module, hook) for hook in _hook_names()):
            _register(pm, module, module_name)
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


def _import_explicit(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(f"--plugin {module_name}: cannot import it ({type(exc).__name__}: {exc})") from None


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

            def register(factory: Any, name: str | None = None, description: str | None = None) -> None:
                comp_name = name or getattr(factory, "name", None) or getattr(factory, "__name__", None)
                if not isinstance(comp_name, str) or not comp_name:
                    raise PluginError(f"plugin {plugin_name!r} registered a {kind[:-1]} without a name")
                if not callable(factory):
                    raise PluginError(f"plugin {plugin_name!r}: {kind[:-1]} {comp_name!r} is not callable")
                component = Component(
                    kind, comp_name, factory, plugin_name, versions.get(plugin_name, "unknown"),
                    description if description is not None else describe(factory),
                )
                try:
                    registry.add(component)
                except DuplicateNameError as exc:
                    raise PluginError(str(exc)) from None

            impl.function(register=register)
    return registry
