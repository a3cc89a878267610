//! Dense linear algebra written out plainly, for reference values: a Householder QR and the
//! quadratic forms `a_i^T (B^T B)^{-1} a_i` it gives, and a least-squares solve.

/// The `d x d` upper-triangular `R` (row-major) of the thin QR of the `n x d` row-major `b`,
/// by Householder reflections, column by column.
pub fn householder_r(b: &[f64], n: usize, d: usize) -> Vec<f64> {
    let mut m = b.to_vec();
    for c in 0..d.min(n) {
        let norm = (c..n).map(|i| m[i * d + c].powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let alpha = if m[c * d + c] > 0.0 { -norm } else { norm };
        let mut v: Vec<f64> = (c..n).map(|i| m[i * d + c]).collect();
        v[0] -= alpha;
        let vv: f64 = v.iter().map(|x| x * x).sum();
        if vv == 0.0 {
            continue;
        }
        for j in c..d {
            let dot: f64 = (c..n).map(|i| v[i - c] * m[i * d + j]).sum();
            let factor = 2.0 * dot / vv;
            for i in c..n {
                m[i * d + j] -= factor * v[i - c];
            }
        }
    }
    let mut r = vec![0.0; d * d];
    for i in 0..d.min(n) {
        for j in i..d {
            r[i * d + j] = m[i * d + j];
        }
    }
    r
}

/// `||R^{-T} a_i||^2` for every row `a_i` of the `n x d` row-major `a`.
pub fn quadratic_forms(a: &[f64], n: usize, d: usize, r: &[f64]) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let row = &a[i * d..(i + 1) * d];
            let mut y = vec![0.0; d];
            for j in 0..d {
                let known: f64 = (0..j).map(|k| r[k * d + j] * y[k]).sum();
                y[j] = (row[j] - known) / r[j * d + j];
            }
            y.iter().map(|v| v * v).sum()
        })
        .collect()
}

/// Exact leverage scores of `a`.
pub fn leverage(a: &[f64], n: usize, d: usize) -> Vec<f64> {
    quadratic_forms(a, n, d, &householder_r(a, n, d))
}

/// `argmin_x sum_i v_i (a_i^T x - b_i)^2` from the QR of `diag(sqrt v) [A b]`.
pub fn weighted_least_squares(a: &[f64], b: &[f64], v: &[f64], n: usize, d: usize) -> Vec<f64> {
    let cols = d + 1;
    let stacked: Vec<f64> = (0..n)
        .flat_map(|i| {
            let s = v[i].sqrt();
            (0..cols).map(move |j| if j < d { s * a[i * d + j] } else { s * b[i] })
        })
        .collect();
    let r = householder_r(&stacked, n, cols);
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let tail: f64 = (i + 1..d).map(|j| r[i * cols + j] * x[j]).sum();
        x[i] = (r[i * cols + d] - tail) / r[i * cols + i];
    }
    x
}
