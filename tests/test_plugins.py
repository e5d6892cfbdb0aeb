"""The plugin host: loading, blocking, broken / duplicate / unknown-hook plugins, every hook."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from poisonbench import hookspecs
from poisonbench import host as host_module
from poisonbench.host import PluginError, PluginLoadWarning, load_host
from poisonbench.registry import UnknownNameError

HOOK_NAMES = sorted(n for n in dir(hookspecs) if n.startswith(("register_", "trial_")))


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_has_a_test(hook):
    """datasette's guard: a hook spec without a ``test_hook_<name>`` test fails here."""
    assert f"test_hook_{hook}" in globals(), f"hook {hook} has no test_hook_{hook} in this module"


def test_hookspecs_are_the_ones_the_host_calls():
    host = load_host(load_external=False)
    assert sorted(n for n in dir(host.pm.hook) if not n.startswith("_")) == HOOK_NAMES


def _toy_host():
    return load_host(["plugins_for_tests.toy_components"], load_external=False)


def test_hook_register_datasets():
    comp = _toy_host().registry.get("datasets", "toy")
    assert comp.plugin == "plugins_for_tests.toy_components"
    assert comp.parameters == {"seed": 0, "n": 40}
    assert comp.create(n=20).n_train == 20


def test_hook_register_learners():
    learner = _toy_host().create("learners", "toy-svm", C_R=0.25)
    assert learner.C_R == 0.25


def test_hook_register_attacks():
    host = _toy_host()
    assert "noop" in host.registry.names("attacks")
    assert host.registry.get("attacks", "noop").description == "An attack that adds nothing."


def test_hook_register_defences():
    assert "toy-none" in _toy_host().registry.names("defences")


class _Observer:
    def __init__(self):
        self.events = []

    @hookspecs.hookimpl
    def trial_started(self, trial):
        self.events.append(("started", trial["trial_id"]))

    @hookspecs.hookimpl
    def trial_finished(self, trial, rows):
        self.events.append(("finished", trial["trial_id"], len(rows)))


def test_hook_trial_started():
    host = load_host(load_external=False)
    observer = _Observer()
    host.pm.register(observer)
    host.pm.hook.trial_started(trial={"trial_id": "abc"})
    assert observer.events == [("started", "abc")]


def test_hook_trial_finished():
    host = load_host(load_external=False)
    observer = _Observer()
    host.pm.register(observer)
    host.pm.hook.trial_finished(trial={"trial_id": "abc"}, rows=[{"status": "ok"}])
    assert observer.events == [("finished", "abc", 1)]


def test_builtins_are_registered_like_any_plugin():
    host = load_host(load_external=False)
    sources = {p.name: p.source for p in host.plugins}
    assert sources["poisonbench.plugins.defences.none"] == "builtin"
    assert host.registry.get("defences", "none").plugin == "poisonbench.plugins.defences.none"


def test_duplicate_names_are_an_error_naming_both_plugins():
    with pytest.raises(PluginError) as err:
        load_host(["plugins_for_tests.duplicate_defence"], load_external=False)
    message = str(err.value)
    assert (
        "'none'" in message
        and "plugins_for_tests.duplicate_defence" in message
        and "poisonbench.plugins.defences.none" in message
    )


def test_hook_without_spec_is_a_clear_error():
    with pytest.raises(PluginError, match="register_atacks.*Valid hooks: register_attacks"):
        load_host(["plugins_for_tests.unknown_hook"], load_external=False)


def test_explicit_plugin_that_cannot_import_is_an_error():
    with pytest.raises(PluginError, match="--plugin plugins_for_tests.broken_import: cannot import"):
        load_host(["plugins_for_tests.broken_import"], load_external=False)


def _fake_entry_points(monkeypatch, *specs):
    eps = [importlib.metadata.EntryPoint(name, value, host_module.ENTRY_POINT_GROUP) for name, value in specs]
    monkeypatch.setattr(
        host_module.importlib.metadata,
        "entry_points",
        lambda group: eps if group == host_module.ENTRY_POINT_GROUP else [],
    )


def test_broken_entry_point_is_a_warning_and_the_rest_load(monkeypatch):
    monkeypatch.delenv(host_module.LOAD_PLUGINS_ENV)
    _fake_entry_points(
        monkeypatch, ("broken", "plugins_for_tests.broken_import"), ("toy", "plugins_for_tests.toy_components")
    )
    with pytest.warns(PluginLoadWarning, match="plugin 'broken'.*failed to import.*not installed"):
        host = load_host()
    assert "noop" in host.registry.names("attacks")
    assert [p.name for p in host.plugins if p.source == "entry point"] == ["toy"]


@pytest.mark.parametrize(("allow", "loaded"), [("", []), ("toy", ["toy"]), ("other, toy", ["toy"]), (None, ["toy"])])
def test_environment_variable_restricts_external_plugins(monkeypatch, allow, loaded):
    if allow is None:
        monkeypatch.delenv(host_module.LOAD_PLUGINS_ENV)
    else:
        monkeypatch.setenv(host_module.LOAD_PLUGINS_ENV, allow)
    _fake_entry_points(monkeypatch, ("toy", "plugins_for_tests.toy_components"))
    host = load_host()
    assert [p.name for p in host.plugins if p.source == "entry point"] == loaded


def test_unknown_component_name_lists_close_matches():
    host = load_host(load_external=False)
    with pytest.raises(UnknownNameError, match=r"unknown defence 'nnoe'\. Did you mean: none\? Valid: .*none"):
        host.registry.get("defences", "nnoe")


def test_unknown_and_missing_parameters_are_named():
    host = _toy_host()
    with pytest.raises(TypeError, match="bogus: unknown parameter of dataset .toy.; valid: seed, n"):
        host.create("datasets", "toy", bogus=1)


def test_component_metadata_is_json_serialisable():
    host = _toy_host()
    json.dumps([c.as_dict() for c in host.registry.components()])
