//! L2-regularised logistic regression fitted by Newton's method (IRLS).
//!
//! Why not a crate: with tens of inputs the Hessian is tiny, so Newton converges in a handful of
//! passes over the data, each pass a deterministic sequential sum. The result is bit-identical run
//! after run and worker after worker, needs no BLAS, and builds in seconds. The objective matches
//! scikit-learn's `LogisticRegression(C = 1 / l2)`: sum of log-losses + l2/2 · ||w||², intercept
//! unpenalised.

use mlops_shared::model::sigmoid;

/// Fitted coefficients.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub intercept: f64,
    pub weights: Vec<f64>,
    pub iterations: u32,
}

/// Hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub l2: f64,
    pub max_iter: u32,
    pub tol: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self { l2: 1.0, max_iter: 50, tol: 1e-8 }
    }
}

/// Fits on `x` (row-major, `d` columns) and 0/1 labels `y`.
pub fn fit(x: &[f64], d: usize, y: &[f64], params: Params) -> Fit {
    let n = y.len();
    debug_assert_eq!(x.len(), n * d);
    let k = d + 1; // intercept first
    let mut beta = vec![0.0; k];
    let mut iterations = 0;
    let mut grad = vec![0.0; k];
    let mut hess = vec![0.0; k * k];
    let mut row = vec![0.0; k];
    for it in 0..params.max_iter {
        iterations = it + 1;
        grad.iter_mut().for_each(|g| *g = 0.0);
        hess.iter_mut().for_each(|h| *h = 0.0);
        for i in 0..n {
            row[0] = 1.0;
            row[1..].copy_from_slice(&x[i * d..(i + 1) * d]);
            let z: f64 = beta.iter().zip(&row).map(|(b, v)| b * v).sum();
            let p = sigmoid(z);
            let r = p - y[i];
            let w = (p * (1.0 - p)).max(1e-12);
            for a in 0..k {
                grad[a] += r * row[a];
                let wa = w * row[a];
                // Upper triangle only; mirrored below.
                for b in a..k {
                    hess[a * k + b] += wa * row[b];
                }
            }
        }
        for a in 1..k {
            grad[a] += params.l2 * beta[a];
            hess[a * k + a] += params.l2;
        }
        for a in 0..k {
            for b in 0..a {
                hess[a * k + b] = hess[b * k + a];
            }
        }
        let Some(step) = solve_spd(&hess, &grad, k) else { break };
        let mut largest: f64 = 0.0;
        for (b, s) in beta.iter_mut().zip(&step) {
            *b -= s;
            largest = largest.max(s.abs());
        }
        if largest < params.tol {
            break;
        }
    }
    Fit { intercept: beta[0], weights: beta[1..].to_vec(), iterations }
}

/// Solves `a · x = b` for a symmetric positive-definite `a` (k×k) by Cholesky; `None` if `a` is
/// not positive definite.
fn solve_spd(a: &[f64], b: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let s: f64 = (0..j).map(|m| l[i * k + m] * l[j * k + m]).sum();
            if i == j {
                let v = a[i * k + i] - s;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * k + j] = v.sqrt();
            } else {
                l[i * k + j] = (a[i * k + j] - s) / l[j * k + j];
            }
        }
    }
    let mut y = vec![0.0; k];
    for i in 0..k {
        let s: f64 = (0..i).map(|m| l[i * k + m] * y[m]).sum();
        y[i] = (b[i] - s) / l[i * k + i];
    }
    let mut x = vec![0.0; k];
    for i in (0..k).rev() {
        let s: f64 = (i + 1..k).map(|m| l[m * k + i] * x[m]).sum();
        x[i] = (y[i] - s) / l[i * k + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn_on_a_small_problem() {
        // scikit-learn 1.x: LogisticRegression(C=1.0, tol=1e-12, max_iter=10000).fit(X, y) gives
        // intercept_ -0.14024355108773812, coef_ 0.753902133236213.
        let x = [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, -3.0, 1.5];
        let y = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0];
        let f = fit(&x, 1, &y, Params::default());
        assert!((f.intercept - -0.140_243_551_087_738_12).abs() < 1e-7, "{f:?}");
        assert!((f.weights[0] - 0.753_902_133_236_213).abs() < 1e-7, "{f:?}");
    }

    #[test]
    fn is_deterministic_and_learns_a_separable_signal() {
        let n = 400;
        let x: Vec<f64> = (0..n * 2).map(|i| ((i * 7919) % 1000) as f64 / 500.0 - 1.0).collect();
        let y: Vec<f64> = (0..n).map(|i| if x[2 * i] + 0.5 * x[2 * i + 1] > 0.0 { 1.0 } else { 0.0 }).collect();
        let a = fit(&x, 2, &y, Params::default());
        let b = fit(&x, 2, &y, Params::default());
        assert_eq!(a, b);
        assert!(a.weights[0] > 0.0 && a.weights[1] > 0.0 && a.weights[0] > a.weights[1], "{a:?}");
    }

    #[test]
    fn cholesky_solves() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let x = solve_spd(&a, &[2.0, 1.0], 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        assert!(solve_spd(&[0.0, 0.0, 0.0, 0.0], &[1.0, 1.0], 2).is_none());
    }
}
