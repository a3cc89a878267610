//! The jump-error kernel against a naive reference, on both element types and both metrics.

use proptest::prelude::*;
use thrifty_steps::{accumulate_jump_errors, Float, Jumps, Metric};

/// The definition, written as plainly as possible: for every i < j and sample b, the norm of
/// `s_i[b] + (t_j - t_i) v_i[b] - x_j[b]`, all in f64.
fn jump_errors_reference<T: Float>(jumps: &Jumps<'_, T>, metric: Metric) -> Vec<f64> {
    let Jumps {
        starts,
        velocities,
        targets,
        times,
        n_nodes,
        batch,
        dim,
    } = *jumps;
    let at = |node: usize, b: usize, d: usize| (node * batch + b) * dim + d;
    let mut out = vec![0.0; n_nodes * n_nodes];
    for i in 0..n_nodes {
        for j in i + 1..n_nodes {
            let dt = times[j] - times[i];
            for b in 0..batch {
                let residual = (0..dim).map(|d| {
                    starts[at(i, b, d)].to_f64() + dt * velocities[at(i, b, d)].to_f64()
                        - targets[at(j, b, d)].to_f64()
                });
                out[i * n_nodes + j] += match metric {
                    Metric::L2 => residual.map(|r| r * r).sum::<f64>().sqrt(),
                    Metric::L1 => residual.map(f64::abs).sum::<f64>(),
                };
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Case {
    n_nodes: usize,
    batch: usize,
    dim: usize,
    states: Vec<f64>,
    velocities: Vec<f64>,
    times: Vec<f64>,
    /// Starts that are not the teacher's states, as a student-propagated DP has them.
    other_starts: Vec<f64>,
}

fn case(max_nodes: usize, max_batch: usize, max_dim: usize) -> impl Strategy<Value = Case> {
    (2..=max_nodes, 1..=max_batch, 1..=max_dim).prop_flat_map(|(n_nodes, batch, dim)| {
        let values = |len| prop::collection::vec(-10.0f64..10.0, len);
        let gaps = prop::collection::vec(0.01f64..1.0, n_nodes);
        (
            values(n_nodes * batch * dim),
            values((n_nodes - 1) * batch * dim),
            gaps,
            values((n_nodes - 1) * batch * dim),
        )
            .prop_map(move |(states, velocities, gaps, other_starts)| {
                let times = gaps
                    .iter()
                    .scan(-0.5, |t, g| {
                        *t += g;
                        Some(*t)
                    })
                    .collect();
                Case {
                    n_nodes,
                    batch,
                    dim,
                    states,
                    velocities,
                    times,
                    other_starts,
                }
            })
    })
}

/// Runs the kernel on `out` pre-filled with a marker, and checks it against the reference:
/// upper triangle = marker + reference (to a summation-order tolerance), the rest untouched.
/// Both for the teacher's own jumps and for jumps from other starts.
fn check<T: Float>(
    case: &Case,
    convert: impl Fn(f64) -> T,
    metric: Metric,
) -> Result<(), TestCaseError> {
    let convert_all = |values: &[f64]| values.iter().map(|&x| convert(x)).collect::<Vec<T>>();
    let states = convert_all(&case.states);
    let velocities = convert_all(&case.velocities);
    let other_starts = convert_all(&case.other_starts);
    let (n, batch, dim) = (case.n_nodes, case.batch, case.dim);
    let teacher = Jumps::teacher(&states, &velocities, &case.times, batch, dim);
    let student = Jumps {
        starts: &other_starts,
        ..teacher
    };
    for jumps in [teacher, student] {
        let expected = jump_errors_reference(&jumps, metric);
        let marker = 0.25;
        let mut out = vec![marker; n * n];
        accumulate_jump_errors(&jumps, metric, &mut out).unwrap();
        for i in 0..n {
            for j in 0..n {
                let got = out[i * n + j];
                if j <= i {
                    prop_assert_eq!(got, marker, "out[{}][{}] must be left alone", i, j);
                } else {
                    let want = marker + expected[i * n + j];
                    prop_assert!(
                        (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                        "out[{}][{}] = {} but the reference gives {}",
                        i,
                        j,
                        got,
                        want
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    // dim up to 40 covers both the 8-wide chunks and their remainders.
    #[test]
    fn f64_matches_the_reference(case in case(7, 4, 40)) {
        check(&case, |x| x, Metric::L2)?;
        check(&case, |x| x, Metric::L1)?;
    }

    #[test]
    fn f32_matches_the_reference(case in case(7, 4, 40)) {
        check(&case, |x| x as f32, Metric::L2)?;
        check(&case, |x| x as f32, Metric::L1)?;
    }
}

/// A deterministic case of distinct, non-trivial values: no random seed to chase when it
/// fails, and every entry differs from its neighbours.
fn wave_case(
    n_nodes: usize,
    batch: usize,
    dim: usize,
    offsets: [usize; 2],
    time_scale: f64,
) -> Case {
    let wave = |k: usize| ((k * 7919) % 2003) as f64 / 100.0 - 10.0;
    let jumps = (n_nodes - 1) * batch * dim;
    Case {
        n_nodes,
        batch,
        dim,
        states: (0..n_nodes * batch * dim).map(wave).collect(),
        velocities: (0..jumps).map(|k| wave(k + offsets[0])).collect(),
        times: (0..n_nodes).map(|i| (i * i) as f64 / time_scale).collect(),
        other_starts: (0..jumps).map(|k| wave(k + offsets[1])).collect(),
    }
}

fn check_every_metric_and_precision(case: &Case) {
    for metric in [Metric::L2, Metric::L1] {
        check(case, |x| x, metric).unwrap();
        check(case, |x| x as f32, metric).unwrap();
    }
}

#[test]
fn large_inputs_take_the_parallel_path_and_still_match() {
    // 40 nodes x 4 samples x 130 dims is well past the threading threshold.
    check_every_metric_and_precision(&wave_case(40, 4, 130, [17, 5], 50.0));
}

#[test]
fn samples_split_into_tiles_still_match() {
    // 40 nodes x 3300 dims is over 512 KiB of targets per sample even in f32, so every
    // sample is a tile of its own and the sums are carried across tiles.
    check_every_metric_and_precision(&wave_case(40, 3, 3300, [11, 3], 40.0));
}

#[test]
fn a_straight_line_has_no_jump_error() {
    // x(t) = x_0 + t v with dyadic times and small integers: every residual is exactly 0.
    let (n_nodes, batch, dim) = (9, 3, 11);
    let times: Vec<f64> = (0..n_nodes).map(|i| i as f64 / 8.0 - 0.5).collect();
    let start = |b: usize, d: usize| (b * dim + d) as f64 - 7.0;
    let speed = |b: usize, d: usize| ((b + 2 * d) % 5) as f64 - 2.0;
    let mut states = Vec::new();
    let mut velocities = Vec::new();
    for (i, t) in times.iter().enumerate() {
        for b in 0..batch {
            for d in 0..dim {
                states.push(start(b, d) + t * speed(b, d));
                if i + 1 < n_nodes {
                    velocities.push(speed(b, d));
                }
            }
        }
    }
    for metric in [Metric::L2, Metric::L1] {
        let mut out = vec![0.0; n_nodes * n_nodes];
        let jumps = Jumps::teacher(&states, &velocities, &times, batch, dim);
        accumulate_jump_errors(&jumps, metric, &mut out).unwrap();
        assert!(out.iter().all(|&e| e == 0.0), "{metric:?}: {out:?}");

        let states32: Vec<f32> = states.iter().map(|&x| x as f32).collect();
        let velocities32: Vec<f32> = velocities.iter().map(|&x| x as f32).collect();
        let jumps = Jumps::teacher(&states32, &velocities32, &times, batch, dim);
        accumulate_jump_errors(&jumps, metric, &mut out).unwrap();
        assert!(out.iter().all(|&e| e == 0.0), "{metric:?} f32: {out:?}");
    }
}

#[test]
fn a_known_error() {
    // One 2-d sample: from x_0 = (0, 0) with v_0 = (1, 0) the jump to t = 2 lands on (2, 0),
    // but the teacher is at (2, 3); the jump to t = 1 lands on (1, 0), teacher at (1, 4).
    let times = [0.0, 1.0, 2.0];
    let states = [0.0, 0.0, 1.0, 4.0, 2.0, 3.0];
    let velocities = [1.0, 0.0, 1.0, -1.0];
    let jumps = Jumps::teacher(&states, &velocities, &times, 1, 2);
    let mut out = vec![0.0; 9];
    accumulate_jump_errors(&jumps, Metric::L2, &mut out).unwrap();
    // 1 -> 2: (1, 4) + (1, -1) - (2, 3) = (0, 0).
    assert_eq!(out, vec![0.0, 4.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let mut out = vec![0.0; 9];
    accumulate_jump_errors(&jumps, Metric::L1, &mut out).unwrap();
    assert_eq!(out, vec![0.0, 4.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
}

fn error_of(
    (starts, velocities, targets): (&[f64], &[f64], &[f64]),
    times: &[f64],
    (n_nodes, batch, dim): (usize, usize, usize),
    out_len: usize,
) -> (Option<&'static str>, String) {
    let jumps = Jumps {
        starts,
        velocities,
        targets,
        times,
        n_nodes,
        batch,
        dim,
    };
    let mut out = vec![0.0; out_len];
    let error = accumulate_jump_errors(&jumps, Metric::L2, &mut out).unwrap_err();
    assert!(
        out.iter().all(|&e| e == 0.0),
        "a failed call must leave `out` alone"
    );
    (error.argument(), error.to_string())
}

#[test]
fn bad_shapes_are_named() {
    let targets = vec![0.0; 3 * 2 * 2];
    let starts = vec![0.0; 2 * 2 * 2];
    let velocities = vec![0.0; 2 * 2 * 2];
    let times = [0.0, 1.0, 2.0];
    let good = (&starts[..], &velocities[..], &targets[..]);
    let dims = (3, 2, 2);
    let named = |argument: &'static str, message: &str| (Some(argument), message.to_string());

    assert_eq!(
        error_of((&[], &[], &[0.0]), &[0.0], (1, 1, 1), 1),
        named(
            "targets",
            "targets: must hold at least 2 nodes, got n_nodes=1"
        )
    );
    assert_eq!(
        error_of(good, &times, (3, 0, 2), 9),
        named(
            "targets",
            "targets: batch and dim must be >= 1, got batch=0, dim=2"
        )
    );
    assert_eq!(
        error_of(good, &times, (3, 2, 0), 9),
        named(
            "targets",
            "targets: batch and dim must be >= 1, got batch=2, dim=0"
        )
    );
    assert_eq!(
        error_of((&starts, &velocities, &targets[1..]), &times, dims, 9),
        named(
            "targets",
            "targets: must have shape (3, 2, 2) = 12 values, got 11"
        )
    );
    assert_eq!(
        error_of((&targets, &velocities, &targets), &times, dims, 9),
        named(
            "starts",
            "starts: must have shape (2, 2, 2) = 8 values, got 12"
        )
    );
    assert_eq!(
        error_of((&starts, &targets, &targets), &times, dims, 9),
        named(
            "velocities",
            "velocities: must have shape (2, 2, 2) = 8 values, got 12"
        )
    );
    assert_eq!(
        error_of(good, &times[..2], dims, 9),
        named("times", "times: must hold n_nodes=3 values, got 2")
    );
    assert_eq!(
        error_of(good, &times, dims, 8),
        named(
            "out",
            "out: must be n_nodes x n_nodes = 3 x 3, got 8 values"
        )
    );
}

#[test]
fn bad_values_are_located() {
    let targets = vec![0.0; 3 * 2 * 2];
    let starts = vec![0.0; 2 * 2 * 2];
    let velocities = vec![0.0; 2 * 2 * 2];
    let good = (&starts[..], &velocities[..], &targets[..]);
    let dims = (3, 2, 2);
    let named = |argument: &'static str, message: &str| (Some(argument), message.to_string());

    assert_eq!(
        error_of(good, &[0.0, f64::NAN, 2.0], dims, 9),
        named("times", "times: times[1] is NaN")
    );
    assert_eq!(
        error_of(good, &[0.0, 1.0, 1.0], dims, 9),
        named(
            "times",
            "times: must be strictly increasing, got times[2] = 1 <= times[1] = 1"
        )
    );

    let mut bad_targets = targets.clone();
    bad_targets[10] = f64::INFINITY; // node 2, sample 1, coordinate 0
    bad_targets[11] = f64::NAN; // later: not the one reported
    assert_eq!(
        error_of(
            (&starts, &velocities, &bad_targets),
            &[0.0, 1.0, 2.0],
            dims,
            9
        ),
        named("targets", "targets: targets[2][1][0] is inf")
    );
    let mut bad = velocities.clone();
    bad[5] = f64::NAN;
    assert_eq!(
        error_of((&starts, &bad, &targets), &[0.0, 1.0, 2.0], dims, 9),
        named("velocities", "velocities: velocities[1][0][1] is NaN")
    );
    assert_eq!(
        error_of((&bad, &velocities, &targets), &[0.0, 1.0, 2.0], dims, 9),
        named("starts", "starts: starts[1][0][1] is NaN")
    );

    // f32 input is checked the same way.
    let mut states32 = vec![0.0f32; 12];
    states32[3] = f32::NEG_INFINITY;
    let velocities32 = [0.0f32; 8];
    let times = [0.0, 1.0, 2.0];
    let jumps = Jumps::teacher(&states32, &velocities32, &times, 2, 2);
    let mut out = vec![0.0; 9];
    let error = accumulate_jump_errors(&jumps, Metric::L1, &mut out).unwrap_err();
    assert_eq!(error.to_string(), "starts: starts[0][1][1] is -inf");
}
