//! Exact rescaling by powers of two, for the computations that are invariant to the scale of
//! their input (k-means sensitivities, the lp regression solution) but whose squares or
//! p-th powers would leave the float64 range: multiplying by a power of two changes no bit
//! of a mantissa, so the scaled problem is the same problem, only within range.

/// The binary exponent `e` of a positive finite `x` (`2^e <= x < 2^(e+1)`), and -1022 for
/// a subnormal `x`.
pub(crate) fn binary_exponent(x: f64) -> i32 {
    let biased = ((x.to_bits() >> 52) & 0x7ff) as i32;
    if biased == 0 {
        -1022
    } else {
        biased - 1023
    }
}

/// `2^e`, exactly, for `e` in `[-1074, 1023]`.
pub(crate) fn power_of_two(e: i32) -> f64 {
    debug_assert!((-1074..=1023).contains(&e));
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074))
    }
}

/// The power of two that brings `largest` (a largest magnitude) into `[1, 2)` (into
/// `[2^-52, 1)` when it is subnormal), and 1 for 0.
pub(crate) fn unit_scale(largest: f64) -> f64 {
    if largest > 0.0 && largest.is_finite() {
        power_of_two(-binary_exponent(largest))
    } else {
        1.0
    }
}

/// `x * 2^exponent`, rounded once as the exact product would be (in steps that are exact
/// while the result stays in range).
pub(crate) fn times_power_of_two(mut x: f64, mut exponent: f64) -> f64 {
    let whole = exponent.floor();
    x *= (exponent - whole).exp2();
    exponent = whole;
    while exponent != 0.0 && x != 0.0 && x.is_finite() {
        let step = exponent.clamp(-1000.0, 1000.0);
        x *= power_of_two(step as i32);
        exponent -= step;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_are_exact_over_the_whole_range() {
        for e in -1074..=1023 {
            let expected = if e >= 0 {
                2f64.powi(e)
            } else {
                0.5f64.powi(-e)
            };
            assert_eq!(power_of_two(e), expected, "2^{e}");
        }
        for x in [
            1.0,
            1.5,
            3.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            1e-310,
            7e300,
        ] {
            let scaled = x * unit_scale(x);
            let subnormal = x < f64::MIN_POSITIVE;
            let range = if subnormal {
                2f64.powi(-52)..1.0
            } else {
                1.0..2.0
            };
            assert!(range.contains(&scaled), "{x:e} scaled to {scaled:e}");
        }
        assert_eq!(unit_scale(0.0), 1.0);
    }

    #[test]
    fn scaling_by_a_power_of_two_saturates_only_past_the_range() {
        assert_eq!(times_power_of_two(3.0, 2000.0), f64::INFINITY);
        assert_eq!(times_power_of_two(3.0, -2000.0), 0.0);
        assert_eq!(
            times_power_of_two(3.0, 1500.0 - 1480.0),
            3.0 * 2f64.powi(20)
        );
        let big = times_power_of_two(2f64.powi(-1500 + 600), 1500.0);
        assert_eq!(big, 2f64.powi(600));
        let half = times_power_of_two(1.0, 0.5);
        assert!((half - std::f64::consts::SQRT_2).abs() < 1e-15);
    }
}
