"""Built-in defence ``none``: plain ERM, the undefended model builder."""

from harness import hookimpl
from harness.defence import NoDefence


@hookimpl
def register_defences(register):
    register(NoDefence, description="No defence: fit the learner on all training data as given.")
