//! Eigenvalues of small symmetric matrices by cyclic Jacobi rotations: the certificate's
//! matrices are (players x players), a handful of rows, where Jacobi is exact to rounding
//! and needs no linear-algebra dependency.

/// `floor(log2(x))` for a finite `x > 0`, read off the bits, so that it shifts by exactly
/// `k` when `x` is multiplied by `2^k`.
pub fn binary_exponent(x: f64) -> i32 {
    debug_assert!(x > 0.0 && x.is_finite(), "no binary exponent for {x}");
    let biased = ((x.to_bits() >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal: 2^54 lifts it into the normal range, exactly.
        binary_exponent(x * 2f64.powi(54)) - 54
    } else {
        biased - 1023
    }
}

/// `x * 2^exponent`, exact wherever the result is normal, for any exponent that keeps it
/// finite (the factor alone may not be: 2^1074 is not an f64).
pub fn times_power_of_two(x: f64, exponent: i32) -> f64 {
    let half = exponent / 2;
    x * 2f64.powi(half) * 2f64.powi(exponent - half)
}

/// The eigenvalues of the symmetric row-major `n x n` matrix `a`, ascending.
///
/// Computed on `a` scaled by the power of two that brings its largest entry to `[1, 2)`:
/// the sweep's stopping test squares the entries, which would overflow past 2^512 (and
/// stop before the first rotation, leaving the diagonal as the answer) or vanish below
/// 2^-537. Scaling by a power of two is exact, so the result is too.
pub fn eigenvalues(a: &[f64], n: usize) -> Vec<f64> {
    let largest = a
        .iter()
        .map(|x| x.abs())
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max);
    let exponent = if largest > 0.0 {
        binary_exponent(largest)
    } else {
        0
    };
    let mut m: Vec<f64> = a
        .iter()
        .map(|x| times_power_of_two(*x, -exponent))
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j] * m[i * n + j])
            .sum();
        let scale: f64 = m.iter().map(|x| x * x).sum();
        if off <= 1e-30 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = m[k * n + p];
                    let akq = m[k * n + q];
                    m[k * n + p] = c * akp - s * akq;
                    m[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = m[p * n + k];
                    let aqk = m[q * n + k];
                    m[p * n + k] = c * apk - s * aqk;
                    m[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    let mut values: Vec<f64> = (0..n)
        .map(|i| times_power_of_two(m[i * n + i], exponent))
        .collect();
    values.sort_by(f64::total_cmp);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_by_two() {
        let values = eigenvalues(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((values[0] - 1.0).abs() < 1e-12 && (values[1] - 3.0).abs() < 1e-12);
    }

    #[test]
    fn squares_past_the_f64_range_still_rotate() {
        // [[1, -2], [-2, 1]] has eigenvalues -1 and 3, at any scale.
        for scale in [2f64.powi(-1000), 1.0, 2f64.powi(1000)] {
            let a = [scale, -2.0 * scale, -2.0 * scale, scale];
            let values = eigenvalues(&a, 2);
            assert!((values[0] / scale + 1.0).abs() < 1e-12, "{values:?}");
            assert!((values[1] / scale - 3.0).abs() < 1e-12, "{values:?}");
        }
    }

    #[test]
    fn binary_exponents_of_normal_and_subnormal_numbers() {
        assert_eq!(binary_exponent(1.0), 0);
        assert_eq!(binary_exponent(3.0), 1);
        assert_eq!(binary_exponent(f64::MAX), 1023);
        assert_eq!(binary_exponent(f64::MIN_POSITIVE), -1022);
        assert_eq!(binary_exponent(f64::from_bits(1)), -1074);
        assert_eq!(times_power_of_two(f64::from_bits(1), 1074), 1.0);
        assert_eq!(times_power_of_two(1.0, -1074), f64::from_bits(1));
    }

    #[test]
    fn three_by_three_trace_and_order() {
        let a = [4.0, 1.0, 2.0, 1.0, 3.0, 0.5, 2.0, 0.5, 1.0];
        let values = eigenvalues(&a, 3);
        assert!((values.iter().sum::<f64>() - 8.0).abs() < 1e-10);
        assert!(values[0] <= values[1] && values[1] <= values[2]);
        // det = 4(3 - 0.25) - 1(1 - 1) + 2(0.5 - 6) = 0
        assert!(values[0].abs() < 1e-10);
    }
}
