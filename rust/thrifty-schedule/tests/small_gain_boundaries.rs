//! Small-Gain Nash certificates at the edges of dimension and magnitude, checked against
//! what they claim rather than against the same arithmetic.
//!
//! - Dimension: one player (no coupling at all), two (the first off-diagonal pair), up to 8.
//! - Magnitude: the certificate is homogeneous. Scaling `mu`, `L` and the Lipschitz bounds by
//!   `s` scales the margin and `L_w` by `s` and the steps by `1 / s`, and leaves the weights,
//!   the small gain and the rate alone; for `s` a power of two, where nothing underflows or
//!   overflows, bit for bit. Scales of 2^-1000 and 2^1000 put squares and products of the
//!   inputs outside the f64 range.
//! - The small-gain condition: `rho(D_mu^-1 L) < 1` exactly when `I - D_mu^-1 L` has positive
//!   leading principal minors (it is a Z-matrix), decided here by elimination.
//!
//! Nothing here runs on threads, so no thread count can change it.

use proptest::prelude::*;
use thrifty_schedule::small_gain::{small_gain_certificate, Certificate, Lipschitz};

/// A game of `n` players: curvatures in 1..=4, couplings of density about one half and
/// size `strength` (relative to the curvatures), Lipschitz bounds above both.
fn game(n: usize, strength: f64, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut draw = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mu: Vec<f64> = (0..n).map(|_| 1.0 + 3.0 * draw()).collect();
    let coupling: Vec<f64> = (0..n * n)
        .map(|c| {
            let (i, j) = (c / n, c % n);
            let on = draw() < 0.5;
            let size = strength * mu[i] * draw();
            if i != j && on {
                size
            } else {
                0.0
            }
        })
        .collect();
    let lipschitz: Vec<f64> = mu.iter().map(|m| m * (1.0 + draw())).collect();
    (mu, coupling, lipschitz)
}

/// Whether the symmetric `a - shift I` is positive definite, by Cholesky.
fn positive_definite(a: &[f64], n: usize, shift: f64) -> bool {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i * n + j] - if i == j { shift } else { 0.0 };
            for k in 0..j {
                sum -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if sum <= 0.0 {
                    return false;
                }
                l[i * n + i] = sum.sqrt();
            } else {
                l[i * n + j] = sum / l[j * n + j];
            }
        }
    }
    true
}

/// Whether `rho(D_mu^-1 L) < 1`, from the pivots of `I - D_mu^-1 L` without pivoting (its
/// leading principal minors are their running products): `None` when a pivot is too close
/// to zero to tell.
fn small_gain_holds(mu: &[f64], coupling: &[f64]) -> Option<bool> {
    let n = mu.len();
    let mut m: Vec<f64> = (0..n * n)
        .map(|c| {
            let (i, j) = (c / n, c % n);
            if i == j {
                1.0
            } else {
                -coupling[c] / mu[i]
            }
        })
        .collect();
    for col in 0..n {
        let pivot = m[col * n + col];
        if pivot.abs() < 1e-6 {
            return None;
        }
        if pivot < 0.0 {
            return Some(false);
        }
        for r in col + 1..n {
            let f = m[r * n + col] / pivot;
            for k in col..n {
                m[r * n + k] -= f * m[col * n + k];
            }
        }
    }
    Some(true)
}

/// Everything a certificate claims, checked from its definition.
fn check_claims(
    c: &Certificate,
    mu: &[f64],
    coupling: &[f64],
    lipschitz: &Lipschitz,
) -> Result<(), TestCaseError> {
    let n = mu.len();
    prop_assert_eq!(c.weights.len(), n);
    prop_assert!(
        c.weights.iter().all(|w| *w > 0.0 && *w <= 1.0),
        "{:?}",
        c.weights
    );
    if let Some(holds) = small_gain_holds(mu, coupling) {
        prop_assert_eq!(
            c.certified,
            holds,
            "small gain {}: {}",
            c.small_gain,
            c.reason
        );
        prop_assert_eq!(c.small_gain < 1.0, holds, "small gain {}", c.small_gain);
    }
    if !c.certified {
        prop_assert!(!c.reason.is_empty());
        return Ok(());
    }
    prop_assert!(c.reason.is_empty());
    // The margin is the least eigenvalue of W^-1/2 S(w) W^-1/2.
    let w = &c.weights;
    let scaled: Vec<f64> = (0..n * n)
        .map(|x| {
            let (i, j) = (x / n, x % n);
            if i == j {
                mu[i]
            } else {
                -(w[i] * coupling[i * n + j] + w[j] * coupling[j * n + i])
                    / (2.0 * (w[i] * w[j]).sqrt())
            }
        })
        .collect();
    let scale = mu.iter().copied().fold(0.0, f64::max);
    prop_assert!(
        c.margin > 0.0 && c.margin.is_finite(),
        "margin {}",
        c.margin
    );
    prop_assert!(
        positive_definite(&scaled, n, c.margin - 1e-9 * scale),
        "margin {} too large",
        c.margin
    );
    prop_assert!(
        !positive_definite(&scaled, n, c.margin + 1e-9 * scale),
        "margin {} too small",
        c.margin
    );
    // L_w bounds ||W^1/2 K W^-1/2 x|| / ||x|| from above: at least the Rayleigh quotient of
    // any vector (here the ones and each unit vector), at most the Frobenius norm.
    let own: Vec<f64> = match lipschitz {
        Lipschitz::Global(l) => vec![*l; n],
        Lipschitz::Blocks(l) => l.clone(),
    };
    let b: Vec<f64> = (0..n * n)
        .map(|x| {
            let (i, j) = (x / n, x % n);
            let k = if i == j { own[i] } else { coupling[x] };
            (w[i] / w[j]).sqrt() * k
        })
        .collect();
    let stretch = |v: &[f64]| -> f64 {
        let image: f64 = (0..n)
            .map(|i| (0..n).map(|j| b[i * n + j] * v[j]).sum::<f64>().powi(2))
            .sum();
        (image / v.iter().map(|x| x * x).sum::<f64>()).sqrt()
    };
    let l_w = c.lipschitz_weighted;
    let frobenius = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    prop_assert!(
        l_w <= frobenius * (1.0 + 1e-9),
        "L_w {} above {}",
        l_w,
        frobenius
    );
    // Strong monotonicity with modulus m bounds the Lipschitz constant from below.
    prop_assert!(
        c.margin <= l_w * (1.0 + 1e-9),
        "margin {} above L_w {}",
        c.margin,
        l_w
    );
    match lipschitz {
        Lipschitz::Blocks(_) => {
            let mut probes = vec![vec![1.0; n]];
            probes.extend((0..n).map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect()));
            for v in &probes {
                prop_assert!(
                    stretch(v) <= l_w * (1.0 + 1e-9),
                    "L_w {} below {}",
                    l_w,
                    stretch(v)
                );
            }
        }
        // One Euclidean bound also holds in the w-metric once stretched by the weights'
        // spread; L_w may be that, where it beats the block bound.
        Lipschitz::Global(l) => {
            let spread = w.iter().copied().fold(0.0, f64::max)
                / w.iter().copied().fold(f64::INFINITY, f64::min);
            prop_assert!(
                l_w <= l * spread.sqrt() * (1.0 + 1e-12),
                "L_w {} above the norm bound",
                l_w
            );
        }
    }
    // Steps as documented, relative to margin and L_w.
    let ratio = c.margin / l_w;
    prop_assert!(
        (c.step * l_w * l_w / c.margin - 1.0).abs() < 1e-12,
        "step {}",
        c.step
    );
    prop_assert!((c.max_step_euler / c.step - 2.0).abs() < 1e-12);
    prop_assert!(
        (c.rate - (1.0 - ratio * ratio).sqrt()).abs() < 1e-9,
        "rate {}",
        c.rate
    );
    prop_assert!(c.max_step_rk4 > 0.0 && c.max_step_rk4 <= c.max_step_euler);
    Ok(())
}

/// `2^exponent`, exactly, for exponents from -1022 to 1023.
fn power_of_two(exponent: i32) -> f64 {
    f64::from_bits(((exponent + 1023) as u64) << 52)
}

/// Every field scaled as the homogeneity says, compared bit for bit.
fn assert_scaled(base: &Certificate, scaled: &Certificate, s: f64, context: &str) {
    assert_eq!(
        scaled.certified, base.certified,
        "{context}: {}",
        scaled.reason
    );
    assert_eq!(scaled.weights, base.weights, "{context}");
    assert_eq!(scaled.small_gain, base.small_gain, "{context}");
    assert_eq!(scaled.rate, base.rate, "{context}");
    assert_eq!(scaled.margin, base.margin * s, "{context}");
    if base.certified {
        assert_eq!(
            scaled.lipschitz_weighted,
            base.lipschitz_weighted * s,
            "{context}"
        );
        assert_eq!(scaled.step, base.step / s, "{context}");
        assert_eq!(scaled.max_step_euler, base.max_step_euler / s, "{context}");
        assert_eq!(scaled.max_step_rk4, base.max_step_rk4 / s, "{context}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// From one player to eight, couplings from none to well past the small-gain edge, both
    /// kinds of Lipschitz bound: every claim holds, and the refusals are the right ones.
    #[test]
    fn certificates_hold_what_they_claim(
        n in prop::sample::select(vec![1usize, 2, 3, 4, 5, 8]),
        strength in prop::sample::select(vec![0.0, 0.1, 0.3, 0.6, 1.0, 2.0]),
        seed in any::<u64>(),
        per_block in any::<bool>(),
    ) {
        let (mu, coupling, blocks) = game(n, strength, seed);
        let lipschitz = if per_block {
            Lipschitz::Blocks(blocks)
        } else {
            // One Euclidean bound must also bound every coupling: take the largest row sum.
            let rows = (0..n).map(|i| blocks[i] + coupling[i * n..(i + 1) * n].iter().sum::<f64>());
            Lipschitz::Global(rows.fold(0.0, f64::max))
        };
        let c = small_gain_certificate(&mu, &coupling, &lipschitz).unwrap();
        check_claims(&c, &mu, &coupling, &lipschitz)?;
    }
}

/// Regression: at 2^±1000 the Jacobi sweep's squared entries overflowed (or underflowed to
/// nothing), so it stopped before its first rotation and read the margin off the diagonal,
/// certifying games whose coupling breaks the small-gain condition; the elimination that
/// starts the weights refused pivots below 1e-300 whatever the scale.
#[test]
fn certificates_are_homogeneous_down_to_the_last_bit() {
    for n in [1, 2, 3, 5] {
        for (strength, seed) in [(0.3, 1), (0.8, 2), (2.0, 3)] {
            let (mu, coupling, blocks) = game(n, strength, seed);
            for per_block in [false, true] {
                let bound = |s: f64| {
                    if per_block {
                        Lipschitz::Blocks(blocks.iter().map(|x| x * s).collect())
                    } else {
                        let top = blocks.iter().copied().fold(0.0, f64::max);
                        Lipschitz::Global(top * (1.0 + strength * n as f64) * s)
                    }
                };
                let base = small_gain_certificate(&mu, &coupling, &bound(1.0)).unwrap();
                for exponent in [-1000, -600, -300, 300, 600, 1000] {
                    let s = power_of_two(exponent);
                    let times = |v: &[f64]| v.iter().map(|x| x * s).collect::<Vec<_>>();
                    let scaled =
                        small_gain_certificate(&times(&mu), &times(&coupling), &bound(s)).unwrap();
                    let context = format!("n {n}, strength {strength}, 2^{exponent}");
                    assert_scaled(&base, &scaled, s, &context);
                }
            }
        }
    }
}

/// Regression: a strongly coupled pair (rho = 2) scaled to 10^200 came back certified with
/// the diagonal as its margin.
#[test]
fn a_strong_coupling_is_refused_at_any_scale() {
    for scale in [1e-200, 1.0, 1e200] {
        let mu = [scale, scale];
        let coupling = [0.0, 2.0 * scale, 2.0 * scale, 0.0];
        let c = small_gain_certificate(&mu, &coupling, &Lipschitz::Global(3.0 * scale)).unwrap();
        assert!(!c.certified, "scale {scale}: margin {}", c.margin);
        assert!((c.small_gain - 2.0).abs() < 1e-12, "{}", c.small_gain);
    }
}

/// Curvatures tiny next to the couplings: the ratios `L_ij / mu_i` overflow f64, yet the
/// small gain is still a number (infinite or not), never NaN, and a nilpotent coupling still
/// has none.
#[test]
fn couplings_that_dwarf_the_curvatures() {
    let mu = [1e-300, 1.0];
    let coupling = [0.0, 1e100, 1e100, 0.0];
    let c = small_gain_certificate(&mu, &coupling, &Lipschitz::Global(1e101)).unwrap();
    assert!(!c.certified);
    assert!(
        !c.small_gain.is_nan() && c.small_gain > 1.0,
        "{}",
        c.small_gain
    );
    // One-way: rho = 0, whatever the size of the one coupling.
    let one_way = [0.0, 1e100, 0.0, 0.0];
    let c = small_gain_certificate(&mu, &one_way, &Lipschitz::Blocks(vec![1.0, 1.0])).unwrap();
    assert_eq!(c.small_gain, 0.0);
}

#[test]
fn dimension_and_shape_errors_name_the_argument() {
    let error = small_gain_certificate(&[], &[], &Lipschitz::Global(1.0)).unwrap_err();
    assert_eq!(error.argument(), Some("mu"));
    let error = small_gain_certificate(&[1.0; 3], &[0.0; 8], &Lipschitz::Global(1.0)).unwrap_err();
    assert_eq!(error.argument(), Some("L"));
    let error =
        small_gain_certificate(&[1.0; 2], &[0.0; 4], &Lipschitz::Blocks(vec![1.0])).unwrap_err();
    assert_eq!(error.argument(), Some("lipschitz"));
    // A player with no curvature is refused, not certified, in every dimension.
    for n in [1, 2, 4] {
        let mut mu = vec![1.0; n];
        mu[n - 1] = 0.0;
        let c = small_gain_certificate(&mu, &vec![0.0; n * n], &Lipschitz::Global(1.0)).unwrap();
        assert!(
            !c.certified && c.reason.contains(&format!("mu[{}]", n - 1)),
            "{}",
            c.reason
        );
    }
}
