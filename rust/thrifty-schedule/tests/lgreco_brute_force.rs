//! The DP against enumeration of every level vector on small integer tables.

use proptest::prelude::*;
use thrifty_schedule::lgreco::{lgreco, Rounding};

/// The least (size, error, levels) over all feasible level vectors, or None.
fn brute_force(errors: &[f64], sizes: &[f64], candidates: usize, budget: f64) -> Option<Vec<i64>> {
    let layers = errors.len() / candidates;
    let mut best: Option<(f64, f64, Vec<i64>)> = None;
    for code in 0..candidates.pow(layers as u32) {
        let levels: Vec<i64> = (0..layers)
            .map(|l| ((code / candidates.pow((layers - 1 - l) as u32)) % candidates) as i64)
            .collect();
        let error: f64 = (0..layers)
            .map(|l| errors[l * candidates + levels[l] as usize])
            .sum();
        let size: f64 = (0..layers)
            .map(|l| sizes[l * candidates + levels[l] as usize])
            .sum();
        if error > budget {
            continue;
        }
        let better = match &best {
            None => true,
            Some((s, e, v)) => {
                (size, error) < (*s, *e) || ((size, error) == (*s, *e) && levels < *v)
            }
        };
        if better {
            best = Some((size, error, levels));
        }
    }
    best.map(|(_, _, v)| v)
}

proptest! {
    #[test]
    fn integer_dp_is_brute_force(
        layers in 1usize..5,
        candidates in 1usize..4,
        seed in proptest::collection::vec((0u8..6, 0u8..8), 16),
        budget in 0u8..20,
    ) {
        let cells = layers * candidates;
        let errors: Vec<f64> = seed[..cells].iter().map(|p| f64::from(p.0)).collect();
        let sizes: Vec<f64> = seed[..cells].iter().map(|p| f64::from(p.1)).collect();
        let budget = f64::from(budget);
        let expected = brute_force(&errors, &sizes, candidates, budget);
        let got = lgreco(&errors, &sizes, layers, candidates, budget, Rounding::Integer).ok();
        prop_assert_eq!(got, expected);
    }
}
