//! L-GreCo at, just below and just above every size and budget where it changes shape,
//! against brute force and a plain forward DP.
//!
//! Where the code changes shape:
//! - `layers = 0` (nothing to choose), `candidates = 0` (an error unless there are no
//!   layers), one layer, one candidate.
//! - The budget against the summed least errors (below: infeasible), against each layer's
//!   largest admissible error (the table's width is capped at their sum), and beyond any
//!   integer (`usize::MAX`, `f64::MAX`).
//! - Integer errors up to 2^53 are taken as they are, larger ones refused; an error equal to
//!   the floor of the budget is admissible, one more is not.
//! - Buckets: 1, and counts past 2^53, where a unit count no longer has an integer successor
//!   in f64.
//! - `MAX_CELLS = 2^28` table cells: one more is refused. A table at the limit itself would
//!   allocate 1 GiB of choices and 8 GiB of rows, so only the refusal just past it is run.
//!
//! Nothing in L-GreCo runs on threads, so no thread count can change it.

use proptest::prelude::*;
use thrifty_core::CoreError;
use thrifty_schedule::lgreco::{lgreco, Rounding};

/// The least `(size, error, levels)` over every level vector whose summed error is within
/// `budget`, by enumeration.
fn brute_force(
    errors: &[f64],
    sizes: &[f64],
    layers: usize,
    candidates: usize,
    budget: f64,
) -> Option<Vec<i64>> {
    let mut best: Option<(f64, f64, Vec<i64>)> = None;
    let mut levels = vec![0usize; layers];
    loop {
        let pick = |table: &[f64]| -> f64 {
            levels
                .iter()
                .enumerate()
                .map(|(l, &c)| table[l * candidates + c])
                .sum()
        };
        let (size, error) = (pick(sizes), pick(errors));
        let vector: Vec<i64> = levels.iter().map(|&c| c as i64).collect();
        let better = match &best {
            None => true,
            Some(b) => (size, error, &vector) < (b.0, b.1, &b.2),
        };
        if error <= budget && better {
            best = Some((size, error, vector));
        }
        // The next level vector, last layer fastest.
        let Some(l) = (0..layers).rev().find(|&l| levels[l] + 1 < candidates) else {
            return best.map(|b| b.2);
        };
        levels[l] += 1;
        levels[l + 1..].iter_mut().for_each(|c| *c = 0);
    }
}

/// The same optimum by a forward DP over the exact summed error of the layers so far,
/// keeping for each the least `(size, levels)`; exact for integer tables. A prefix that is
/// least among those with its summed error stays least once the same level is appended, so
/// the lexicographic tie rule survives the recursion.
fn forward_dp(
    errors: &[f64],
    sizes: &[f64],
    layers: usize,
    candidates: usize,
    budget: f64,
) -> Option<Vec<i64>> {
    // Spending more than every layer's largest error is never needed.
    let most: f64 = errors
        .chunks_exact(candidates.max(1))
        .map(|r| r.iter().copied().fold(0.0, f64::max))
        .sum();
    let limit = budget.floor().min(most) as usize;
    let mut states: Vec<Option<(f64, Vec<i64>)>> = vec![None; limit + 1];
    states[0] = Some((0.0, Vec::new()));
    for l in 0..layers {
        let mut next: Vec<Option<(f64, Vec<i64>)>> = vec![None; limit + 1];
        for (spent, state) in states.iter().enumerate() {
            let Some((size, prefix)) = state else {
                continue;
            };
            for c in 0..candidates {
                let error = errors[l * candidates + c] as usize;
                if spent + error > limit {
                    continue;
                }
                let mut vector = prefix.clone();
                vector.push(c as i64);
                let candidate = (size + sizes[l * candidates + c], vector);
                let slot = &mut next[spent + error];
                let better = match slot {
                    None => true,
                    Some(s) => (candidate.0, &candidate.1) < (s.0, &s.1),
                };
                if better {
                    *slot = Some(candidate);
                }
            }
        }
        states = next;
    }
    states
        .into_iter()
        .enumerate()
        .filter_map(|(spent, s)| s.map(|(size, levels)| (size, spent, levels)))
        .min_by(|a, b| (a.0, a.1, &a.2).partial_cmp(&(b.0, b.1, &b.2)).unwrap())
        .map(|best| best.2)
}

/// Integer tables of the given shape from a seed: errors 0..=max_error, sizes 0..=50.
fn tables(layers: usize, candidates: usize, max_error: u64, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut draw = move |bound: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % (bound + 1)) as f64
    };
    let cells = layers * candidates;
    let errors = (0..cells).map(|_| draw(max_error)).collect();
    let sizes = (0..cells).map(|_| draw(50)).collect();
    (errors, sizes)
}

/// Budgets at the edges for these errors: nothing, one below, at and one above the summed
/// least errors, the summed largest errors and one below, and past every integer.
fn edge_budgets(errors: &[f64], candidates: usize) -> Vec<f64> {
    let rows = || errors.chunks_exact(candidates);
    let least: f64 = rows()
        .map(|r| r.iter().copied().fold(f64::INFINITY, f64::min))
        .sum();
    let most: f64 = rows().map(|r| r.iter().copied().fold(0.0, f64::max)).sum();
    vec![
        0.0,
        (least - 1.0).max(0.0),
        least,
        least + 0.5,
        least + 1.0,
        (most - 1.0).max(0.0),
        most,
        1e300,
        f64::MAX,
    ]
}

/// What `lgreco` must return against the expected levels: the levels, or, where there are
/// none, an error naming `budget`.
fn expect(got: Result<Vec<i64>, CoreError>, expected: Option<Vec<i64>>, context: &str) {
    match expected {
        Some(levels) => assert_eq!(got, Ok(levels), "{context}"),
        None => {
            let error = got.unwrap_err();
            assert_eq!(error.argument(), Some("budget"), "{context}: {error}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Up to 4^5 level vectors, every edge budget, against enumeration.
    #[test]
    fn small_tables_at_every_edge_budget_match_enumeration(
        layers in 0usize..=5,
        candidates in 1usize..=4,
        max_error in prop::sample::select(vec![0u64, 1, 3, 9]),
        seed in any::<u64>(),
    ) {
        let (errors, sizes) = tables(layers, candidates, max_error, seed);
        for budget in edge_budgets(&errors, candidates) {
            let got = lgreco(&errors, &sizes, layers, candidates, budget, Rounding::Integer);
            let expected = brute_force(&errors, &sizes, layers, candidates, budget);
            expect(got, expected, &format!("budget {budget}"));
        }
    }

    /// Layer and candidate counts around powers of two, against the forward DP.
    #[test]
    fn larger_tables_match_the_forward_dp(
        layers in prop::sample::select(vec![1usize, 2, 7, 8, 9, 31, 32, 33, 64]),
        candidates in prop::sample::select(vec![1usize, 2, 3, 7, 8, 9]),
        seed in any::<u64>(),
        fraction in 0.0f64..=1.0,
    ) {
        let (errors, sizes) = tables(layers, candidates, 20, seed);
        let mut budgets = edge_budgets(&errors, candidates);
        let (least, most) = (budgets[2], budgets[6]);
        budgets.push((least + fraction * (most - least)).floor());
        for budget in budgets {
            let got = lgreco(&errors, &sizes, layers, candidates, budget, Rounding::Integer);
            let expected = forward_dp(&errors, &sizes, layers, candidates, budget);
            expect(got, expected, &format!("budget {budget}"));
        }
    }

    /// Float errors with bucket counts at the edges: every answer is within the budget, no
    /// larger than the best of the budget less one unit per layer, and a refusal names
    /// `budget` only where that smaller budget has no answer either.
    #[test]
    fn bucket_counts_at_the_edges_stay_feasible(
        layers in prop::sample::select(vec![1usize, 2, 3, 4]),
        candidates in 1usize..=3,
        seed in any::<u64>(),
        budget in prop::sample::select(vec![0.0, 1e-300, 0.5, 1.0, 2.5, 1e300]),
        buckets in prop::sample::select(vec![1usize, 2, 3, 4, 5, 10_000, 1 << 53, 1 << 60, usize::MAX]),
    ) {
        let (errors, sizes) = tables(layers, candidates, 8, seed);
        // Errors spread over the budget's scale: eighths of it, up to once the budget.
        let errors: Vec<f64> = errors.iter().map(|e| e / 8.0 * budget).collect();
        let got = lgreco(&errors, &sizes, layers, candidates, budget, Rounding::Buckets(buckets));
        let unit = budget / buckets as f64;
        let slack = budget - layers as f64 * unit;
        let best = |b: f64| brute_force(&errors, &sizes, layers, candidates, b);
        let size_of = |levels: &[i64]| -> f64 {
            levels.iter().enumerate().map(|(l, &c)| sizes[l * candidates + c as usize]).sum()
        };
        match got {
            Ok(levels) => {
                let error: f64 = levels
                    .iter()
                    .enumerate()
                    .map(|(l, &c)| errors[l * candidates + c as usize])
                    .sum();
                prop_assert!(error <= budget * (1.0 + 1e-12), "error {} > budget {}", error, budget);
                if let Some(bound) = best(slack) {
                    prop_assert!(size_of(&levels) <= size_of(&bound));
                }
            }
            Err(error) => {
                prop_assert_eq!(error.argument(), Some("budget"), "{}", error);
                let table_too_large = error.to_string().contains("DP table");
                prop_assert!(table_too_large || best(slack).is_none(), "{}", error);
            }
        }
    }
}

#[test]
fn no_layers_and_no_candidates() {
    assert_eq!(lgreco(&[], &[], 0, 0, 0.0, Rounding::Integer), Ok(vec![]));
    assert_eq!(
        lgreco(&[], &[], 0, 5, 1.0, Rounding::Buckets(3)),
        Ok(vec![])
    );
    let error = lgreco(&[], &[], 3, 0, 1.0, Rounding::Integer).unwrap_err();
    assert_eq!(error.argument(), Some("errors"));
    let error = lgreco(&[], &[], usize::MAX, 2, 1.0, Rounding::Integer).unwrap_err();
    assert_eq!(error.argument(), Some("errors"));
}

#[test]
fn integer_errors_at_the_edge_of_exact_floats_and_of_the_budget() {
    // 2^53 is an integer f64 can hold with its neighbours; 2^53 + 2 is past that edge.
    let exact = 2f64.powi(53);
    let got = lgreco(&[exact, 0.0], &[1.0, 2.0], 1, 2, 1.0, Rounding::Integer);
    assert_eq!(got, Ok(vec![1]));
    let error = lgreco(
        &[exact + 2.0, 0.0],
        &[1.0, 2.0],
        1,
        2,
        1.0,
        Rounding::Integer,
    );
    assert_eq!(error.unwrap_err().argument(), Some("errors"));
    // An error equal to the budget's floor fits; one more does not.
    let pick = |budget| lgreco(&[5.0, 0.0], &[1.0, 2.0], 1, 2, budget, Rounding::Integer);
    assert_eq!(pick(5.0), Ok(vec![0]));
    assert_eq!(pick(5.9), Ok(vec![0]));
    assert_eq!(pick(4.9), Ok(vec![1]));
}

#[test]
fn a_table_one_cell_past_the_limit_is_refused() {
    // One layer with an error of 2^28 needs budget units 0..=2^28: one cell past 2^28.
    let past = (1u64 << 28) as f64;
    let error = lgreco(&[past, 0.0], &[0.0, 1.0], 1, 2, past, Rounding::Integer).unwrap_err();
    assert_eq!(error.argument(), Some("budget"));
    assert!(error.to_string().contains("DP table"), "{error}");
    // Two layers of half that: the same width, twice the rows.
    let half = past / 2.0;
    let errors = [half, 0.0, half, 0.0];
    let error = lgreco(
        &errors,
        &[0.0, 1.0, 0.0, 1.0],
        2,
        2,
        past,
        Rounding::Integer,
    )
    .unwrap_err();
    assert!(error.to_string().contains("DP table"), "{error}");
}

/// Regression: a budget past `usize::MAX` with errors whose per-layer maxima sum past it
/// made the table width `usize::MAX + 1` (a panic on overflow; a zero width and an index
/// out of bounds without overflow checks).
#[test]
fn a_budget_past_every_integer_is_refused_not_overflowed() {
    let layers = 2100;
    let errors: Vec<f64> = (0..layers).flat_map(|_| [0.0, 9e15]).collect();
    let sizes: Vec<f64> = (0..layers).flat_map(|_| [2.0, 1.0]).collect();
    for budget in [1e20, f64::MAX] {
        let error = lgreco(&errors, &sizes, layers, 2, budget, Rounding::Integer).unwrap_err();
        assert_eq!(error.argument(), Some("budget"));
        assert!(error.to_string().contains("DP table"), "{error}");
    }
}

/// Regression: past 2^53 buckets, a unit count plus one is the same float, so the loop that
/// raises the count until it covers the error never ended where the first count fell short.
#[test]
fn bucket_counts_past_exact_integers_end() {
    // Each first count times the unit falls short of the error (found by search).
    for (error, budget, buckets) in [
        (0.206, 1.0, 100_000_000_000_000_000usize),
        (0.02625, 2.5, 1 << 60),
        (0.0135, 3.0, usize::MAX),
    ] {
        let unit = budget / buckets as f64;
        assert!((error / unit).ceil() * unit < error);
        let got = lgreco(
            &[error, 0.0],
            &[1.0, 2.0],
            1,
            2,
            budget,
            Rounding::Buckets(buckets),
        );
        let refusal = got.unwrap_err();
        assert_eq!(refusal.argument(), Some("budget"));
        assert!(refusal.to_string().contains("DP table"), "{refusal}");
    }
}

/// Budgets and errors at the small end: a unit below the smallest subnormal, subnormal
/// errors, and a budget of exactly nothing.
#[test]
fn tiny_budgets_and_units() {
    let tiny = f64::from_bits(1);
    // budget / 3 rounds to 0: no error above 0 can be weighed, only the lossless level fits.
    assert_eq!(
        lgreco(&[tiny, 0.0], &[1.0, 2.0], 1, 2, tiny, Rounding::Buckets(3)),
        Ok(vec![1])
    );
    assert_eq!(
        lgreco(&[tiny, 0.0], &[1.0, 2.0], 1, 2, tiny, Rounding::Buckets(1)),
        Ok(vec![0])
    );
    assert_eq!(
        lgreco(&[0.0, 0.0], &[1.0, 2.0], 1, 2, 0.0, Rounding::Buckets(7)),
        Ok(vec![0])
    );
    let error = lgreco(&[tiny, tiny], &[1.0, 2.0], 1, 2, 0.0, Rounding::Buckets(7)).unwrap_err();
    assert_eq!(error.argument(), Some("budget"));
}
