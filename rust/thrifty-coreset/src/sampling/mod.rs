//! Exact weighted sampling with and without replacement, and the RS2 permutation stream.
