//! A validated, read-only view of a tall row-major matrix.

use thrifty_core::{CoreError, CoreResult};

/// A row-major `n x d` matrix with `n >= d >= 1` and only finite entries, together with the
/// reciprocal column norms every score computation scales by.
#[derive(Debug, Clone)]
pub struct Rows<'a> {
    data: &'a [f64],
    n: usize,
    d: usize,
    column_scale: Vec<f64>,
}

/// `||A e_j||` as `m * ||A e_j / m||` with `m` the column's largest magnitude: no overflow
/// or underflow whatever the entries' scale. Zero for an all-zero column.
fn scaled_column_norm(data: &[f64], d: usize, j: usize) -> f64 {
    let largest = data
        .iter()
        .skip(j)
        .step_by(d)
        .fold(0.0f64, |m, v| m.max(v.abs()));
    if largest == 0.0 {
        return 0.0;
    }
    let sum: f64 = data
        .iter()
        .skip(j)
        .step_by(d)
        .map(|v| (v / largest) * (v / largest))
        .sum();
    largest * sum.sqrt()
}

impl<'a> Rows<'a> {
    /// Check `data` as an `n x d` matrix named `argument` in errors.
    pub fn new(data: &'a [f64], n: usize, d: usize, argument: &'static str) -> CoreResult<Self> {
        if d == 0 {
            return Err(CoreError::shape(
                argument,
                format!("must have at least one column, got shape ({n}, {d})"),
            ));
        }
        if n < d {
            return Err(CoreError::shape(
                argument,
                format!(
                    "must have at least as many rows as columns (n >= d), got shape ({n}, {d})"
                ),
            ));
        }
        let cells = n
            .checked_mul(d)
            .ok_or_else(|| CoreError::shape(argument, format!("{n} x {d} entries do not fit")))?;
        if data.len() != cells {
            return Err(CoreError::shape(
                argument,
                format!("holds {} entries, expected {n} x {d} = {cells}", data.len()),
            ));
        }
        if let Some(position) = data.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::non_finite(
                argument,
                format!(
                    "must be finite, got {} at row {}, column {}",
                    data[position],
                    position / d,
                    position % d
                ),
            ));
        }
        let mut squares = vec![0.0f64; d];
        for row in data.chunks_exact(d) {
            for (s, v) in squares.iter_mut().zip(row) {
                *s += v * v;
            }
        }
        // A sum of squares past the float64 range (entries beyond about 1e154, or below
        // 1e-154) says nothing about the norm; those columns are summed again, scaled.
        let norms: Vec<f64> = squares
            .iter()
            .enumerate()
            .map(|(j, &s)| {
                if s.is_finite() && s >= f64::MIN_POSITIVE {
                    s.sqrt()
                } else {
                    scaled_column_norm(data, d, j)
                }
            })
            .collect();
        if let Some(j) = norms.iter().position(|&norm| norm == 0.0) {
            return Err(CoreError::invalid(
                argument,
                format!("is rank-deficient: column {j} is all zeros"),
            ));
        }
        let column_scale = norms.iter().map(|norm| 1.0 / norm).collect();
        Ok(Self {
            data,
            n,
            d,
            column_scale,
        })
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn d(&self) -> usize {
        self.d
    }

    /// Row `i` as stored.
    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.d..(i + 1) * self.d]
    }

    /// `1 / ||A e_j||`: the column scaling applied before factorising.
    pub fn column_scale(&self) -> &[f64] {
        &self.column_scale
    }

    /// Entry `(i, j)` of `A` with unit-norm columns.
    #[inline]
    pub fn scaled(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.d + j] * self.column_scale[j]
    }
}
