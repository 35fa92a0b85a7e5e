//! Least squares on relative errors, with coefficients kept non-negative: the solver of both
//! fits (the Edge TPU's times and the CPU estimate).

/// Median of a non-empty slice (mean of the two middle values for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// [`weighted_least_squares`] with every coefficient kept non-negative: a column whose
/// coefficient comes out negative is dropped (coefficient 0), the most negative first, and
/// the rest solved again.
pub fn non_negative_least_squares<const N: usize>(
    rows: &[([f64; N], f64, f64)],
    mut active: [bool; N],
) -> [f64; N] {
    loop {
        let solution = weighted_least_squares(rows, &active);
        let most_negative = (0..N)
            .filter(|&c| active[c] && solution[c] < 0.0)
            .min_by(|&p, &q| solution[p].total_cmp(&solution[q]));
        match most_negative {
            Some(c) => active[c] = false,
            None => return solution,
        }
    }
}

/// Minimises Σ ((x·a − y) / t)² over the active columns, for rows `(x, y, t)`: `y` the
/// part of the measured time `t` left to the active columns. Inactive coefficients are 0.
/// Columns are scaled to unit size first so that seconds and MACs mix well.
fn weighted_least_squares<const N: usize>(
    rows: &[([f64; N], f64, f64)],
    active: &[bool; N],
) -> [f64; N] {
    let columns: Vec<usize> = (0..N).filter(|&c| active[c]).collect();
    let n = columns.len();
    let scale: Vec<f64> = columns
        .iter()
        .map(|&c| {
            let m = rows.iter().map(|(x, _, _)| x[c].abs()).fold(0.0, f64::max);
            if m > 0.0 { m } else { 1.0 }
        })
        .collect();
    // Normal equations A a = b with rows x/t and targets y/t.
    let mut a = vec![vec![0.0; n]; n];
    let mut b = vec![0.0; n];
    for (x, y, t) in rows {
        let z: Vec<f64> = columns
            .iter()
            .zip(&scale)
            .map(|(&c, s)| x[c] / s / t)
            .collect();
        for i in 0..n {
            b[i] += z[i] * y / t;
            for j in 0..n {
                a[i][j] += z[i] * z[j];
            }
        }
    }
    let solved = solve(a, b);
    let mut out = [0.0; N];
    for ((&c, s), v) in columns.iter().zip(&scale).zip(solved) {
        out[c] = v / s;
    }
    out
}

/// Gaussian elimination with partial pivoting; a singular direction gets 0.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        let p = a[col][col];
        if p.abs() < 1e-12 {
            continue;
        }
        let pivot_row = a[col].clone();
        let pivot_b = b[col];
        for (row, (r, rb)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
            let f = r[col] / p;
            if row != col && f != 0.0 {
                for (x, y) in r[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= f * y;
                }
                *rb -= f * pivot_b;
            }
        }
    }
    (0..n)
        .map(|i| {
            if a[i][i].abs() < 1e-12 {
                0.0
            } else {
                b[i] / a[i][i]
            }
        })
        .collect()
}
