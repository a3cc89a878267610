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

/// The least total size over level vectors with summed error <= `budget`, or None.
fn best_size(errors: &[f64], sizes: &[f64], candidates: usize, budget: f64) -> Option<f64> {
    brute_force(errors, sizes, candidates, budget).map(|levels| {
        levels
            .iter()
            .enumerate()
            .map(|(l, &c)| sizes[l * candidates + c as usize])
            .sum()
    })
}

proptest! {
    #[test]
    fn bucketed_dp_is_feasible_and_near_optimal(
        layers in 1usize..5,
        candidates in 1usize..4,
        seed in proptest::collection::vec((0.0f64..1.0, 0u8..8), 16),
        budget in 0.5f64..3.0,
        buckets in 1usize..50,
    ) {
        let cells = layers * candidates;
        let errors: Vec<f64> = seed[..cells].iter().map(|p| p.0).collect();
        let sizes: Vec<f64> = seed[..cells].iter().map(|p| f64::from(p.1)).collect();
        let got = lgreco(&errors, &sizes, layers, candidates, budget, Rounding::Buckets(buckets));
        // Any choice within the budget less one unit per layer survives the rounding.
        let slack = budget - layers as f64 * budget / buckets as f64;
        match got {
            Ok(levels) => {
                let error: f64 = levels.iter().enumerate().map(|(l, &c)| errors[l * candidates + c as usize]).sum();
                let size: f64 = levels.iter().enumerate().map(|(l, &c)| sizes[l * candidates + c as usize]).sum();
                prop_assert!(error <= budget * (1.0 + 1e-12));
                prop_assert!(size >= best_size(&errors, &sizes, candidates, budget).unwrap());
                if let Some(bound) = best_size(&errors, &sizes, candidates, slack) {
                    prop_assert!(size <= bound);
                }
            }
            Err(error) => {
                prop_assert_eq!(error.argument(), Some("budget"));
                prop_assert!(best_size(&errors, &sizes, candidates, slack).is_none());
            }
        }
    }
}
