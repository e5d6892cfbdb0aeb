"""The example plugin passes poisonbench's plugin contract checks."""

from poisonbench.testing import check_attack
from poisonbench_boundary_flip import BoundaryFlip


def test_boundary_flip_meets_the_attack_contract():
    batches = check_attack(BoundaryFlip(batch_size=4), budget=10)
    assert sum(len(b) for b in batches) == 10
