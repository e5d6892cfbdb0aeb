"""Test plugin: one component of each kind, to exercise every register hook."""

from poisonbench import hookimpl
from poisonbench.defence import NoDefence
from poisonbench.testing import toy_dataset


def toy(seed: int = 0, n: int = 40):
    """A toy two-blob dataset."""
    return toy_dataset(n=n, seed=seed)


def toy_svm(C_R: float = 0.5):
    """The built-in SVM under another name."""
    from poisonbench.plugins.learners.linear import LinearSVM

    return LinearSVM(C_R=C_R)


class NoOpAttack:
    """An attack that adds nothing."""

    name = "noop"
    needs_budget = False

    def poison(self, scenario):
        return iter(())


class ToyDefence(NoDefence):
    """No defence, under another name."""

    name = "toy-none"


@hookimpl
def register_datasets(register):
    register(toy, name="toy")


@hookimpl
def register_learners(register):
    register(toy_svm, name="toy-svm")


@hookimpl
def register_attacks(register):
    register(NoOpAttack)


@hookimpl
def register_defences(register):
    register(ToyDefence)
