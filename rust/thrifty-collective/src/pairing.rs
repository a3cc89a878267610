//! NoLoCo's random groups: a permutation of the ranks seeded by the step, the same on every
//! peer, cut into groups of `group_size` (leftovers join the last group, so nobody idles).

use thrifty_core::{CoreError, CoreResult};

/// SplitMix64: tiny, and identical on every platform, which is all the pairing needs.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (Lemire's multiply-shift; the tiny bias is irrelevant here).
    fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next()) * bound as u128) >> 64) as usize
    }
}

/// The largest world [`groups`] accepts: far past any world a coordinator serves, and small
/// enough that the permutation is an allocation that succeeds.
pub const MAX_WORLD: usize = 1 << 20;

/// The groups of step `step` over ranks `0..world`, each sorted by rank.
pub fn groups(world: usize, step: u64, group_size: usize) -> CoreResult<Vec<Vec<usize>>> {
    if world > MAX_WORLD {
        return Err(CoreError::invalid(
            "world_size",
            format!("must be at most {MAX_WORLD}, got {world}"),
        ));
    }
    let mut order: Vec<usize> = (0..world).collect();
    let mut rng = SplitMix64(step ^ 0x6E6F_6C6F_636F_2D31);
    for i in (1..world).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let size = group_size.max(2);
    let mut groups: Vec<Vec<usize>> = order.chunks(size).map(<[usize]>::to_vec).collect();
    if groups.len() > 1 && groups.last().is_some_and(|g| g.len() < size) {
        let tail = groups.pop().unwrap_or_default();
        if let Some(last) = groups.last_mut() {
            last.extend(tail);
        }
    }
    for group in &mut groups {
        group.sort_unstable();
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rank_in_exactly_one_group() {
        for world in 1..12 {
            for step in 0..20 {
                for size in 2..5 {
                    let groups = groups(world, step, size).unwrap();
                    let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
                    seen.sort_unstable();
                    assert_eq!(seen, (0..world).collect::<Vec<_>>());
                    if world >= size {
                        assert!(groups.iter().all(|g| g.len() >= size && g.len() < 2 * size));
                    }
                }
            }
        }
    }

    #[test]
    fn pairs_change_with_the_step() {
        let distinct: std::collections::HashSet<_> =
            (0..10).map(|s| groups(8, s, 2).unwrap()).collect();
        assert!(distinct.len() > 5);
        assert_eq!(groups(8, 3, 2), groups(8, 3, 2));
    }

    #[test]
    fn a_world_past_the_limit_is_an_error_not_an_allocation() {
        let error = groups(MAX_WORLD + 1, 0, 2).unwrap_err();
        assert!(matches!(
            error,
            CoreError::InvalidValue {
                argument: "world_size",
                ..
            }
        ));
        assert!(groups(usize::MAX, 0, 2).is_err());
    }
}
