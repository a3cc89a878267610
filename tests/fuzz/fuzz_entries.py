"""Imports every module of fuzz entries, so that the registry is complete."""

from __future__ import annotations

import fuzz_collective
import fuzz_coreset
import fuzz_diloco
import fuzz_hamming
import fuzz_optim
import fuzz_schedule
import fuzz_steps

MODULES = (
    fuzz_collective,
    fuzz_coreset,
    fuzz_diloco,
    fuzz_hamming,
    fuzz_optim,
    fuzz_schedule,
    fuzz_steps,
)
