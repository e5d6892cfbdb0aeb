"""Built-in defence ``none``: plain ERM, the undefended model builder."""

from poisonbench import hookimpl
from poisonbench.defence import NoDefence


@hookimpl
def register_defences(register):
    register(NoDefence, description="No defence: fit the learner on all training data as given.")
