//! Linear models fitted by Newton's method: L2-regularised logistic regression (IRLS), and least
//! squares with an optional ridge penalty, for which one Newton step is the exact solution of the
//! normal equations (a second refines it).
//!
//! Why not a crate: with tens of inputs the Hessian is tiny, so Newton converges in a handful of
//! passes over the data, each pass a deterministic sequential sum. The result is bit-identical run
//! after run and worker after worker, needs no BLAS, and builds in seconds. The objectives match
//! scikit-learn's `LogisticRegression(C = 1 / l2)` (sum of log-losses + l2/2 · ||w||²) and
//! `Ridge(alpha = l2)` (sum of squared errors + l2 · ||w||², here halved throughout), the intercept
//! unpenalised in both.

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

/// The loss a fit minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Log-loss of 0/1 labels: logistic regression.
    Logistic,
    /// Half the squared error: least squares.
    Squared,
}

/// Fits a logistic regression on `x` (row-major, `d` columns) and 0/1 labels `y`. `progress`
/// hears of each finished Newton iteration.
pub fn fit(x: &[f64], d: usize, y: &[f64], params: Params, progress: impl FnMut(u32)) -> Fit {
    fit_loss(x, d, y, params, Loss::Logistic, progress)
}

/// Fits least squares on `x` (row-major, `d` columns) and values `y`, with the ridge penalty
/// `l2`. With `l2` 0 the penalty is a vanishing 1e-9 per row, which keeps the normal equations
/// solvable when inputs are collinear (a categorical feature's one-hot columns sum to one, like
/// the intercept) and then picks the smallest weights, as a minimum-norm least-squares solver would.
pub fn fit_least_squares(x: &[f64], d: usize, y: &[f64], l2: f64, progress: impl FnMut(u32)) -> Fit {
    let l2 = l2.max(1e-9 * y.len() as f64);
    fit_loss(x, d, y, Params { l2, max_iter: 3, tol: 1e-20 }, Loss::Squared, progress)
}

fn fit_loss(x: &[f64], d: usize, y: &[f64], params: Params, loss: Loss, mut progress: impl FnMut(u32)) -> Fit {
    let n = y.len();
    debug_assert_eq!(x.len(), n * d);
    let k = d + 1; // intercept first
    let mut beta = vec![0.0; k];
    let mut iterations = 0;
    let mut grad = vec![0.0; k];
    let mut hess = vec![0.0; k * k];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(8);
    for it in 0..params.max_iter {
        if it > 0 {
            progress(it);
        }
        iterations = it + 1;
        // Rows in fixed blocks, each block's sums added in block order: the result does not depend
        // on how many threads counted the blocks.
        let blocks: Vec<std::ops::Range<usize>> = (0..n).step_by(BLOCK).map(|s| s..(s + BLOCK).min(n)).collect();
        let mut partial: Vec<(Vec<f64>, Vec<f64>)> = Vec::with_capacity(blocks.len());
        for wave in blocks.chunks(threads) {
            let done: Vec<(Vec<f64>, Vec<f64>)> = std::thread::scope(|s| {
                let handles: Vec<_> =
                    wave.iter().map(|r| s.spawn(|| block_sums(x, d, y, &beta, loss, r.clone()))).collect();
                handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
            });
            partial.extend(done);
        }
        grad.iter_mut().for_each(|g| *g = 0.0);
        hess.iter_mut().for_each(|h| *h = 0.0);
        for (g, h) in &partial {
            grad.iter_mut().zip(g).for_each(|(a, b)| *a += b);
            hess.iter_mut().zip(h).for_each(|(a, b)| *a += b);
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
        // Newton converges quadratically near the optimum: once a step is below √tol, the next
        // would be below about tol, so it need not be computed.
        if largest < params.tol.sqrt() {
            break;
        }
    }
    Fit { intercept: beta[0], weights: beta[1..].to_vec(), iterations }
}

/// Rows per block of the gradient and Hessian sums.
const BLOCK: usize = 32 * 1024;

/// The gradient and the Hessian's upper triangle over `rows`. Only a row's non-zero inputs take
/// part (one-hot columns are mostly zero), which adds exactly what the dense sums would.
fn block_sums(
    x: &[f64],
    d: usize,
    y: &[f64],
    beta: &[f64],
    loss: Loss,
    rows: std::ops::Range<usize>,
) -> (Vec<f64>, Vec<f64>) {
    let k = d + 1;
    let mut grad = vec![0.0; k];
    let mut hess = vec![0.0; k * k];
    let mut nz: Vec<(usize, f64)> = Vec::with_capacity(k);
    for i in rows {
        let row = &x[i * d..(i + 1) * d];
        nz.clear();
        nz.push((0, 1.0));
        nz.extend(row.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(j, v)| (j + 1, *v)));
        let z: f64 = nz.iter().map(|&(a, v)| beta[a] * v).sum();
        let (r, w) = match loss {
            Loss::Logistic => {
                let p = sigmoid(z);
                (p - y[i], (p * (1.0 - p)).max(1e-12))
            }
            Loss::Squared => (z - y[i], 1.0),
        };
        for (at, &(a, va)) in nz.iter().enumerate() {
            grad[a] += r * va;
            let wa = w * va;
            // Upper triangle only; mirrored by the caller.
            let line = &mut hess[a * k..(a + 1) * k];
            for &(b, vb) in &nz[at..] {
                line[b] += wa * vb;
            }
        }
    }
    (grad, hess)
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
        let f = fit(&x, 1, &y, Params::default(), |_| {});
        assert!((f.intercept - -0.140_243_551_087_738_12).abs() < 1e-7, "{f:?}");
        assert!((f.weights[0] - 0.753_902_133_236_213).abs() < 1e-7, "{f:?}");
    }

    #[test]
    fn is_deterministic_and_learns_a_separable_signal() {
        let n = 400;
        let x: Vec<f64> = (0..n * 2).map(|i| ((i * 7919) % 1000) as f64 / 500.0 - 1.0).collect();
        let y: Vec<f64> = (0..n).map(|i| if x[2 * i] + 0.5 * x[2 * i + 1] > 0.0 { 1.0 } else { 0.0 }).collect();
        let a = fit(&x, 2, &y, Params::default(), |_| {});
        let b = fit(&x, 2, &y, Params::default(), |_| {});
        assert_eq!(a, b);
        assert!(a.weights[0] > 0.0 && a.weights[1] > 0.0 && a.weights[0] > a.weights[1], "{a:?}");
    }

    #[test]
    fn least_squares_recovers_a_linear_law_and_solves_the_ridge_normal_equations() {
        // Noise-free y = 3 + 2·x0 − x1: least squares finds it.
        let n = 300;
        let x: Vec<f64> = (0..n * 2).map(|i| ((i * 7919) % 1000) as f64 / 250.0 - 2.0).collect();
        let y: Vec<f64> = (0..n).map(|i| 3.0 + 2.0 * x[2 * i] - x[2 * i + 1]).collect();
        let f = fit_least_squares(&x, 2, &y, 0.0, |_| {});
        assert!((f.intercept - 3.0).abs() < 1e-6 && (f.weights[0] - 2.0).abs() < 1e-6, "{f:?}");
        assert!((f.weights[1] + 1.0).abs() < 1e-6, "{f:?}");
        // Ridge: the fitted weights satisfy Xᵀ(y − Xβ) = l2·w (intercept unpenalised, so the
        // residuals sum to zero).
        let noisy: Vec<f64> = y.iter().enumerate().map(|(i, v)| v + ((i * 31) % 7) as f64 - 3.0).collect();
        let l2 = 50.0;
        let r = fit_least_squares(&x, 2, &noisy, l2, |_| {});
        let resid: Vec<f64> =
            (0..n).map(|i| noisy[i] - r.intercept - r.weights[0] * x[2 * i] - r.weights[1] * x[2 * i + 1]).collect();
        assert!(resid.iter().sum::<f64>().abs() < 1e-8);
        for j in 0..2 {
            let g: f64 = (0..n).map(|i| x[2 * i + j] * resid[i]).sum();
            assert!((g - l2 * r.weights[j]).abs() < 1e-8, "{j}: {g} vs {}", l2 * r.weights[j]);
        }
        assert!(r.weights[0] < f.weights[0], "the penalty shrinks");
        // Collinear inputs (a column repeated) still solve, splitting the weight evenly.
        let twice: Vec<f64> = (0..n).flat_map(|i| [x[2 * i], x[2 * i]]).collect();
        let c = fit_least_squares(&twice, 2, &(0..n).map(|i| 2.0 * x[2 * i]).collect::<Vec<_>>(), 0.0, |_| {});
        assert!((c.weights[0] - 1.0).abs() < 1e-6 && (c.weights[1] - 1.0).abs() < 1e-6, "{c:?}");
    }

    #[test]
    fn cholesky_solves() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let x = solve_spd(&a, &[2.0, 1.0], 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        assert!(solve_spd(&[0.0, 0.0, 0.0, 0.0], &[1.0, 1.0], 2).is_none());
    }
}
