"""poisonbench: a plugin-based benchmark harness for data-poisoning attacks and defences.

What a plugin author or a notebook needs is importable from here::

    from poisonbench import hookimpl, PoisonBatch, Scenario

The host's modules (``poisonbench.campaign``, ``poisonbench.trial``, …) import from each other
directly, never from this package root, so that importing any one of them is cycle-free.
"""

from poisonbench.attack import Attack, PoisonBatch, Scenario
from poisonbench.capabilities import CapabilityError, LinearModelLearner, UnrolledLearner, require
from poisonbench.dataset import Dataset, FeasibleSet, Subpopulation
from poisonbench.defence import Defence, DefendedFit, NoDefence
from poisonbench.hookspecs import hookimpl
from poisonbench.host import PluginHost, load_host
from poisonbench.learner import Learner, Model, Predictor
from poisonbench.params import Param
from poisonbench.version import __version__

__all__ = [
    "Attack",
    "CapabilityError",
    "Dataset",
    "Defence",
    "DefendedFit",
    "FeasibleSet",
    "Learner",
    "LinearModelLearner",
    "Model",
    "NoDefence",
    "Param",
    "PluginHost",
    "PoisonBatch",
    "Predictor",
    "Scenario",
    "Subpopulation",
    "UnrolledLearner",
    "__version__",
    "hookimpl",
    "load_host",
    "require",
]
