"""NoLoCo's seeded groups: which ranks average together at a step."""

from __future__ import annotations

from thrifty import _native
from thrifty._checks import check_int

#: Counts travel to Rust as usize: larger ones are refused here, by name.
USIZE_MAX = 2**63 - 1


def pairing_groups(world_size: int, step: int, group_size: int = 2) -> list[list[int]]:
    """The groups :meth:`Communicator.pair_average` forms at ``step``: ranks, each sorted.

    Examples
    --------
    >>> from thrifty.collective import pairing_groups
    >>> groups = pairing_groups(5, step=3)
    >>> sorted(r for g in groups for r in g), sorted(len(g) for g in groups)
    ([0, 1, 2, 3, 4], [2, 3])
    """
    # The step travels to Rust as u64.
    world_size = check_int(world_size, "world_size", minimum=0, maximum=USIZE_MAX)
    step = check_int(step, "step", minimum=0, maximum=2**64 - 1)
    group_size = check_int(group_size, "group_size", minimum=2, maximum=USIZE_MAX)
    return [list(g) for g in _native.pairing_groups(world_size, step, group_size)]
