//! The logistic-regression fit: minimises
//! `Σᵢ sᵢ · (−log P(yᵢ | xᵢ)) + α/2 ‖W‖²` (intercepts unpenalised; two classes: one logit, the
//! log-odds of class 1; more: one logit per class under a softmax) with argmin's L-BFGS (memory
//! 10) and a More–Thuente line search from zero weights, stopping when the gradient norm falls
//! below the tolerance, the cost stops moving, or the iterations run out.
//!
//! That is the solver, the settings and the objective linfa-logistic 0.8 uses (a unit test
//! holds the two to the same weights); it is run here because linfa-logistic takes no sample
//! weights (scikit-learn's `class_weight`, `sᵢ` above) and returns nothing of the solver's state,
//! so that counting the iterations used to cost several refits. Here one fit reports them.
//!
//! With every `sᵢ = 1` and `α = 1/C` this is scikit-learn's `LogisticRegression(C)` objective
//! (scikit-learn divides both terms by `Σ sᵢ`, which moves no optimum); with `sᵢ` the balanced
//! class weight of `yᵢ` it is `class_weight="balanced"`.

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use std::cell::RefCell;

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis};

/// L-BFGS history length, as linfa-logistic.
const MEMORY: usize = 10;

/// Rows per block of the objective's matrix products.
const BLOCK: usize = 4096;

/// Rows whose `1 + e^−|z|` factors are multiplied before one logarithm (each factor is at most
/// 2, so the product stays below 2^512).
const PRODUCT_ROWS: usize = 512;

/// What to fit: rows `x`, their class indices `y` (`0..classes`), optional per-row weights.
#[derive(Debug, Clone)]
pub struct Problem<'a> {
    x: ArrayView2<'a, f64>,
    /// One-hot columns after `x`'s, held as which one each row sets (a row of a table with
    /// text columns sets a few of many): the products cost one add per set indicator, not a
    /// multiply per indicator.
    indicators: Option<Indicators<'a>>,
    y: &'a [usize],
    weights: Option<&'a [f64]>,
    classes: usize,
    alpha: f64,
    /// The last point evaluated.
    last: RefCell<Option<Evaluated>>,
}

/// Indicator (0/1) columns, `groups` per row of which each sets at most one.
#[derive(Debug, Clone, Copy)]
pub struct Indicators<'a> {
    /// Row-major, `groups` per row: the index (among all `width` indicators) of the one the
    /// row sets in each group, or [`Indicators::NONE`].
    pub set: &'a [u32],
    pub groups: usize,
    /// How many indicator columns there are.
    pub width: usize,
}

impl Indicators<'_> {
    /// No indicator of the group is set.
    pub const NONE: u32 = u32::MAX;
}

/// A point of the objective: where, the cost, the gradient.
type Evaluated = (Array1<f64>, f64, Array1<f64>);

/// Fitted weights (per logit: coefficients and intercept) and what the solver did.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// One row per logit: one for two classes (class 1's log-odds), else one per class.
    pub coefficients: Vec<Vec<f64>>,
    pub intercepts: Vec<f64>,
    /// L-BFGS iterations the solver ran.
    pub iterations: u64,
    /// The objective's gradient norm at the returned weights.
    pub gradient_norm: f64,
    /// Whether the solver stopped on its own (gradient small or cost still) rather than at the
    /// iteration cap, or reached the gradient tolerance on the last allowed iteration.
    pub converged: bool,
}

/// Why a fit failed.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("{0}")]
    Shape(String),
    #[error("the L-BFGS solver stopped with an error: {0}")]
    Solver(String),
}

impl<'a> Problem<'a> {
    /// `x` rows with class indices `y` in `0..classes` (`classes` ≥ 2), L2 strength `alpha`,
    /// and optional per-row `weights` (finite, ≥ 0).
    pub fn new(
        x: ArrayView2<'a, f64>,
        y: &'a [usize],
        classes: usize,
        alpha: f64,
        weights: Option<&'a [f64]>,
    ) -> Result<Self, FitError> {
        if x.nrows() != y.len() {
            return Err(FitError::Shape(format!(
                "{} rows of features but {} labels",
                x.nrows(),
                y.len()
            )));
        }
        if classes < 2 || y.iter().any(|&c| c >= classes) {
            return Err(FitError::Shape(format!(
                "labels must be class indices below {classes} (at least 2 classes)"
            )));
        }
        if let Some(w) = weights {
            if w.len() != y.len() || w.iter().any(|s| !s.is_finite() || *s < 0.0) {
                return Err(FitError::Shape(format!(
                    "{} sample weights for {} rows, each finite and ≥ 0",
                    w.len(),
                    y.len()
                )));
            }
        }
        Ok(Problem {
            x,
            indicators: None,
            y,
            weights,
            classes,
            alpha,
            last: RefCell::new(None),
        })
    }

    /// The same problem with indicator columns after `x`'s (their coefficients follow `x`'s in
    /// each logit's parameters).
    pub fn with_indicators(mut self, indicators: Indicators<'a>) -> Result<Self, FitError> {
        let fits = indicators.groups > 0
            && indicators.set.len() == self.y.len() * indicators.groups
            && indicators
                .set
                .iter()
                .all(|&j| j == Indicators::NONE || (j as usize) < indicators.width);
        if !fits {
            return Err(FitError::Shape(format!(
                "{} indicator entries for {} rows of {} groups, each below {}",
                indicators.set.len(),
                self.y.len(),
                indicators.groups,
                indicators.width
            )));
        }
        self.indicators = Some(indicators);
        Ok(self)
    }

    /// Coefficients per logit: `x`'s columns, then the indicators.
    fn columns(&self) -> usize {
        self.x.ncols() + self.indicators.map_or(0, |i| i.width)
    }

    fn logits(&self) -> usize {
        if self.classes == 2 {
            1
        } else {
            self.classes
        }
    }

    /// Parameters per logit: the coefficients, then the intercept.
    fn stride(&self) -> usize {
        self.columns() + 1
    }

    /// The objective and its gradient at `param`, in one pass over the rows. The rows go in
    /// blocks of [`BLOCK`], so the products run as matrix operations (as linfa-logistic's do)
    /// with no temporary the size of the table.
    fn evaluate(&self, param: &Array1<f64>) -> (f64, Array1<f64>) {
        let (n_logits, stride, n_features) = (self.logits(), self.stride(), self.columns());
        let dense = self.x.ncols();
        let flat = param.as_slice().unwrap_or(&[]);
        if let (1, Some(xs)) = (n_logits, self.x.as_slice()) {
            return self.evaluate_binary(flat, xs);
        }
        // Per logit k: coefficients w[.., k] and intercept b[k].
        let mut w = Array2::<f64>::zeros((n_features, n_logits));
        let mut b = Array1::<f64>::zeros(n_logits);
        for k in 0..n_logits {
            let p = &flat[k * stride..(k + 1) * stride];
            w.column_mut(k).assign(&ArrayView1::from(&p[..n_features]));
            b[k] = p[n_features];
        }
        let mut grad_w = Array2::<f64>::zeros((n_features, n_logits));
        let mut grad_b = Array1::<f64>::zeros(n_logits);
        let mut cost = 0.0;
        let n = self.x.nrows();
        for start in (0..n).step_by(BLOCK) {
            let end = (start + BLOCK).min(n);
            let xb = self.x.slice(s![start..end, ..]);
            let mut z = xb.dot(&w.slice(s![..dense, ..]));
            z += &b;
            // Plain slices from here: per-row ndarray views cost more than the arithmetic.
            // `z` is built row-major and `w` was, so both are one slice.
            let (Some(zs), Some(ws)) = (z.as_slice_mut(), w.as_slice()) else {
                unreachable!("z and w are built in standard layout");
            };
            if let Some(ind) = &self.indicators {
                let set = &ind.set[start * ind.groups..end * ind.groups];
                for (zr, row) in zs
                    .chunks_exact_mut(n_logits)
                    .zip(set.chunks_exact(ind.groups))
                {
                    for &j in row.iter().filter(|&&j| j != Indicators::NONE) {
                        let at = (dense + j as usize) * n_logits;
                        for (z, w) in zr.iter_mut().zip(&ws[at..at + n_logits]) {
                            *z += w;
                        }
                    }
                }
            }
            // Loss and s·d(loss)/dz in place of z: binary softplus(z) − [y = 1]·z, σ(z) − [y = 1];
            // multinomial logsumexp(z) − z_y, softmax(z) − onehot(y).
            for (r, zr) in zs.chunks_exact_mut(n_logits).enumerate() {
                let i = start + r;
                let class = self.y[i];
                let s = self.weights.map_or(1.0, |w| w[i]);
                if n_logits == 1 {
                    let (zi, target) = (zr[0], f64::from(u8::from(class == 1)));
                    // One exp serves both: e = exp(−|z|), softplus(z) = max(z, 0) + ln(1 + e),
                    // σ(z) = 1 / (1 + e) for z ≥ 0, else e / (1 + e).
                    let e = (-zi.abs()).exp();
                    let softplus = zi.max(0.0) + (1.0 + e).ln();
                    let sigmoid = if zi >= 0.0 {
                        1.0 / (1.0 + e)
                    } else {
                        e / (1.0 + e)
                    };
                    cost += s * (softplus - target * zi);
                    zr[0] = s * (sigmoid - target);
                } else {
                    let max = zr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let z_class = zr[class];
                    let mut sum = 0.0;
                    for zk in zr.iter_mut() {
                        *zk = (*zk - max).exp();
                        sum += *zk;
                    }
                    cost += s * (max + sum.ln() - z_class);
                    for (k, zk) in zr.iter_mut().enumerate() {
                        *zk = s * (*zk / sum - f64::from(u8::from(k == class)));
                    }
                }
            }
            general_mat_mul(
                1.0,
                &xb.t(),
                &z,
                1.0,
                &mut grad_w.slice_mut(s![..dense, ..]),
            );
            if let (Some(ind), Some(gs), Some(zs)) =
                (&self.indicators, grad_w.as_slice_mut(), z.as_slice())
            {
                let set = &ind.set[start * ind.groups..end * ind.groups];
                for (zr, row) in zs.chunks_exact(n_logits).zip(set.chunks_exact(ind.groups)) {
                    for &j in row.iter().filter(|&&j| j != Indicators::NONE) {
                        let at = (dense + j as usize) * n_logits;
                        for (g, z) in gs[at..at + n_logits].iter_mut().zip(zr) {
                            *g += z;
                        }
                    }
                }
            }
            grad_b += &z.sum_axis(Axis(0));
        }
        cost += 0.5 * self.alpha * w.iter().map(|v| v * v).sum::<f64>();
        grad_w.scaled_add(self.alpha, &w);
        let mut grad = Array1::zeros(n_logits * stride);
        for k in 0..n_logits {
            for j in 0..n_features {
                grad[k * stride + j] = grad_w[[j, k]];
            }
            grad[k * stride + n_features] = grad_b[k];
        }
        (cost, grad)
    }

    /// [`Problem::evaluate`] for one logit, row by row in one pass with no temporaries: a row
    /// costs a few multiply-adds, one `exp`, and (unweighted) a multiply into a running product
    /// of `1 + e^−|z|` whose logarithm is taken once per [`PRODUCT_ROWS`] rows, not once a row
    /// (the logarithm was a third of a fit's time; the product of at most 512 factors in (1, 2]
    /// cannot overflow, and rounds to a relative 1e-13 of the loss at most).
    fn evaluate_binary(&self, p: &[f64], xs: &[f64]) -> (f64, Array1<f64>) {
        let dense = self.x.ncols();
        let n_features = self.columns();
        let (w, b) = (&p[..n_features], p[n_features]);
        let groups = self.indicators.map_or(0, |i| i.groups);
        let mut grad = vec![0.0; n_features + 1];
        let mut cost = 0.0;
        let (mut product, mut factors) = (1.0f64, 0);
        for (i, &class) in self.y.iter().enumerate() {
            let row = &xs[i * dense..(i + 1) * dense];
            let set = self
                .indicators
                .map_or(&[][..], |ind| &ind.set[i * groups..(i + 1) * groups]);
            let mut z = b + row.iter().zip(&w[..dense]).map(|(x, w)| x * w).sum::<f64>();
            for &j in set.iter().filter(|&&j| j != Indicators::NONE) {
                z += w[dense + j as usize];
            }
            let target = f64::from(u8::from(class == 1));
            let s = self.weights.map_or(1.0, |w| w[i]);
            // e = exp(−|z|): softplus(z) = max(z, 0) + ln(1 + e), σ(z) = 1 / (1 + e) for z ≥ 0,
            // else e / (1 + e).
            let e = (-z.abs()).exp();
            cost += s * (z.max(0.0) - target * z);
            if self.weights.is_some() {
                cost += s * (1.0 + e).ln();
            } else {
                product *= 1.0 + e;
                factors += 1;
                if factors == PRODUCT_ROWS {
                    cost += product.ln();
                    (product, factors) = (1.0, 0);
                }
            }
            let sigmoid = if z >= 0.0 {
                1.0 / (1.0 + e)
            } else {
                e / (1.0 + e)
            };
            let r = s * (sigmoid - target);
            for (g, x) in grad[..dense].iter_mut().zip(row) {
                *g += r * x;
            }
            for &j in set.iter().filter(|&&j| j != Indicators::NONE) {
                grad[dense + j as usize] += r;
            }
            grad[n_features] += r;
        }
        cost += product.ln();
        cost += 0.5 * self.alpha * w.iter().map(|v| v * v).sum::<f64>();
        for (g, w) in grad[..n_features].iter_mut().zip(w) {
            *g += self.alpha * w;
        }
        (cost, Array1::from(grad))
    }

    /// [`Problem::evaluate`], remembered for the last `param`: the solver asks for the cost and
    /// then the gradient at the same point, and one pass serves both.
    fn evaluate_cached(&self, param: &Array1<f64>) -> (f64, Array1<f64>) {
        if let Some((at, cost, grad)) = self.last.borrow().as_ref() {
            if at == param {
                return (*cost, grad.clone());
            }
        }
        let (cost, grad) = self.evaluate(param);
        *self.last.borrow_mut() = Some((param.clone(), cost, grad.clone()));
        (cost, grad)
    }

    /// The objective's gradient norm at `coefficients`/`intercepts` (one row per logit).
    pub fn gradient_norm(&self, coefficients: &[Vec<f64>], intercepts: &[f64]) -> f64 {
        let mut param = Vec::with_capacity(self.logits() * self.stride());
        for (w, b) in coefficients.iter().zip(intercepts) {
            param.extend_from_slice(w);
            param.push(*b);
        }
        let (_, grad) = self.evaluate(&Array1::from(param));
        grad.dot(&grad).sqrt()
    }

    /// Minimises the objective with at most `max_iter` L-BFGS iterations, stopping early when
    /// the gradient norm is below `tolerance` (> 0).
    pub fn fit(&self, max_iter: u64, tolerance: f64) -> Result<Fit, FitError> {
        let width = self.logits() * self.stride();
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), MEMORY)
            .with_tolerance_grad(tolerance)
            .map_err(|e| FitError::Solver(e.to_string()))?;
        let result = Executor::new(self.clone(), solver)
            .configure(|state| state.param(Array1::zeros(width)).max_iters(max_iter))
            .run()
            .map_err(|e| FitError::Solver(e.to_string()))?;
        let state = result.state();
        let iterations = state.get_iter();
        let stopped_early = !matches!(
            state.get_termination_reason(),
            Some(TerminationReason::MaxItersReached) | None
        );
        let param = state
            .get_best_param()
            .cloned()
            .unwrap_or_else(|| Array1::zeros(width));
        let (_, grad) = self.evaluate_cached(&param);
        let gradient_norm = grad.dot(&grad).sqrt();
        let (coefficients, intercepts) = param
            .as_slice()
            .unwrap_or(&[])
            .chunks(self.stride())
            .map(|p| (p[..p.len() - 1].to_vec(), p[p.len() - 1]))
            .unzip::<_, _, Vec<_>, Vec<_>>();
        Ok(Fit {
            converged: stopped_early || gradient_norm <= tolerance,
            coefficients,
            intercepts,
            iterations,
            gradient_norm,
        })
    }
}

impl CostFunction for Problem<'_> {
    type Param = Array1<f64>;
    type Output = f64;

    fn cost(&self, param: &Self::Param) -> Result<Self::Output, argmin::core::Error> {
        Ok(self.evaluate_cached(param).0)
    }
}

impl Gradient for Problem<'_> {
    type Param = Array1<f64>;
    type Gradient = Array1<f64>;

    fn gradient(&self, param: &Self::Param) -> Result<Self::Gradient, argmin::core::Error> {
        Ok(self.evaluate_cached(param).1)
    }
}

/// scikit-learn's `class_weight="balanced"`: row `i` weighs `n / (k · n_{yᵢ})`, with `n` rows,
/// `k` classes present in `y` and `n_c` rows of class `c` (the weights sum to `n`).
pub fn balanced_weights(y: &[usize], classes: usize) -> Vec<f64> {
    let mut counts = vec![0usize; classes];
    for &c in y {
        if let Some(n) = counts.get_mut(c) {
            *n += 1;
        }
    }
    let present = counts.iter().filter(|&&n| n > 0).count().max(1) as f64;
    let n = y.len() as f64;
    y.iter()
        .map(|&c| n / (present * counts.get(c).copied().unwrap_or(1).max(1) as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::traits::Fit as _;
    use linfa::DatasetBase;
    use linfa_logistic::{LogisticRegression, MultiLogisticRegression};
    use ndarray::Array2;

    /// A small noisy three-class table: two features, classes overlapping.
    fn table() -> (Array2<f64>, Vec<usize>) {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut x = Array2::zeros((120, 2));
        let mut y = Vec::with_capacity(120);
        for i in 0..120 {
            let class = i % 3;
            x[[i, 0]] = class as f64 + rng.f64() * 1.5;
            x[[i, 1]] = (2 - class) as f64 * 0.5 + rng.f64();
            y.push(class);
        }
        (x, y)
    }

    fn largest_gap(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }

    /// Our fit and linfa-logistic's on the same rows, both with `max_iter` and `tolerance`:
    /// the largest difference of any weight (linfa's oriented to our class 1).
    fn gap_from_linfa(x: &Array2<f64>, y: &[usize], classes: usize, tolerance: f64) -> f64 {
        let ours = Problem::new(x.view(), y, classes, 1.0, None)
            .unwrap()
            .fit(1000, tolerance)
            .unwrap();
        assert!(ours.converged, "{ours:?}");
        let mut theirs_flat = Vec::new();
        if classes == 2 {
            let targets: ndarray::Array1<bool> = y.iter().map(|&c| c == 1).collect();
            let theirs = LogisticRegression::default()
                .alpha(1.0)
                .max_iterations(1000)
                .gradient_tolerance(tolerance)
                .fit(&DatasetBase::new(x.view(), targets))
                .unwrap();
            // linfa chooses which label is its positive one; ours is always class 1.
            let sign = if theirs.labels().pos.class { 1.0 } else { -1.0 };
            theirs_flat.extend(theirs.params().iter().map(|w| sign * w));
            theirs_flat.push(sign * theirs.intercept());
        } else {
            let targets: ndarray::Array1<usize> = y.iter().copied().collect();
            let theirs = MultiLogisticRegression::default()
                .alpha(1.0)
                .max_iterations(1000)
                .gradient_tolerance(tolerance)
                .fit(&DatasetBase::new(x.view(), targets))
                .unwrap();
            for k in 0..classes {
                theirs_flat.extend(theirs.params().column(k).iter().copied());
                theirs_flat.push(theirs.intercept()[k]);
            }
        }
        let ours_flat: Vec<f64> = ours
            .coefficients
            .iter()
            .zip(&ours.intercepts)
            .flat_map(|(w, b)| w.iter().copied().chain([*b]))
            .collect();
        let gap = largest_gap(&ours_flat, &theirs_flat);
        eprintln!(
            "{classes} classes, tolerance {tolerance:e}: gap {gap:e}, ours {:?}",
            ours.gradient_norm
        );
        gap
    }

    #[test]
    fn unit_weights_give_linfa_logistics_fit() {
        let (x, y) = table();
        let binary: Vec<usize> = y.iter().map(|&c| usize::from(c == 2)).collect();
        // Stopped at the default tolerance, the two land within it of each other (the sums run
        // in different orders); run to the optimum, they agree to its precision.
        assert!(gap_from_linfa(&x, &binary, 2, 1e-4) < 1e-4);
        assert!(gap_from_linfa(&x, &binary, 2, 1e-10) < 1e-6);
        assert!(gap_from_linfa(&x, &y, 3, 1e-4) < 1e-4);
        assert!(gap_from_linfa(&x, &y, 3, 1e-10) < 1e-6);
    }

    #[test]
    fn the_solver_reports_its_iterations_and_a_small_gradient() {
        let (x, y) = table();
        let problem = Problem::new(x.view(), &y, 3, 1.0, None).unwrap();
        let fit = problem.fit(100, 1e-4).unwrap();
        assert!(fit.converged && fit.gradient_norm <= 1e-4, "{fit:?}");
        // Allowed one iteration fewer than it used, the solver stops at the cap, unconverged.
        let short = problem.fit(fit.iterations - 1, 1e-4).unwrap();
        assert_eq!(short.iterations, fit.iterations - 1);
        assert!(!short.converged && short.gradient_norm > 1e-4, "{short:?}");
        assert_ne!(short.coefficients, fit.coefficients);
    }

    #[test]
    fn the_gradient_norm_is_zero_at_the_optimum_and_large_away_from_it() {
        let (x, y) = table();
        let problem = Problem::new(x.view(), &y, 3, 1.0, None).unwrap();
        let fit = problem.fit(1000, 1e-10).unwrap();
        assert!(problem.gradient_norm(&fit.coefficients, &fit.intercepts) < 1e-8);
        let zeros = vec![vec![0.0; 2]; 3];
        assert!(problem.gradient_norm(&zeros, &[0.0; 3]) > 1.0);
    }

    #[test]
    fn a_weighted_fit_equals_a_fit_on_repeated_rows() {
        // Weight 2 on a row is the row twice: the objective is the same function.
        let (x, y) = table();
        let weights: Vec<f64> = (0..y.len()).map(|i| 1.0 + (i % 2) as f64).collect();
        let weighted = Problem::new(x.view(), &y, 3, 1.0, Some(&weights))
            .unwrap()
            .fit(1000, 1e-10)
            .unwrap();
        let repeated: Vec<usize> = (0..y.len()).flat_map(|i| vec![i; 1 + i % 2]).collect();
        let xr = x.select(ndarray::Axis(0), &repeated);
        let yr: Vec<usize> = repeated.iter().map(|&i| y[i]).collect();
        let plain = Problem::new(xr.view(), &yr, 3, 1.0, None)
            .unwrap()
            .fit(1000, 1e-10)
            .unwrap();
        for k in 0..3 {
            assert!(largest_gap(&weighted.coefficients[k], &plain.coefficients[k]) < 1e-6);
        }
    }

    #[test]
    fn balanced_weights_are_scikit_learns_formula() {
        // 6 rows: 4 of class 0, 2 of class 1 → n / (k · n_c) = 6/8 and 6/4; they sum to n.
        let w = balanced_weights(&[0, 0, 1, 0, 1, 0], 2);
        assert_eq!(w, vec![0.75, 0.75, 1.5, 0.75, 1.5, 0.75]);
        assert!((w.iter().sum::<f64>() - 6.0).abs() < 1e-12);
        // A class absent from these rows does not count in k.
        assert_eq!(balanced_weights(&[0, 2, 2], 3), vec![1.5, 0.75, 0.75]);
    }

    #[test]
    fn bad_shapes_are_refused() {
        let (x, y) = table();
        assert!(Problem::new(x.view(), &y[1..], 3, 1.0, None).is_err());
        assert!(Problem::new(x.view(), &y, 2, 1.0, None).is_err());
        assert!(Problem::new(x.view(), &y, 3, 1.0, Some(&[1.0])).is_err());
        let negative = vec![-1.0; y.len()];
        assert!(Problem::new(x.view(), &y, 3, 1.0, Some(&negative)).is_err());
    }

    /// Indicator columns held as which one each row sets give the objective of the same
    /// columns written out as 0s and 1s; the one-logit pass gives the general pass's.
    #[test]
    fn indicators_and_the_one_logit_pass_give_the_same_objective() {
        let (x, y) = table();
        let mut rng = fastrand::Rng::with_seed(3);
        // Two groups of 3 and 2 indicators; some rows set none of a group.
        let set: Vec<u32> = (0..y.len())
            .flat_map(|_| {
                let a = rng.u32(0..4);
                let b = rng.u32(0..3);
                [
                    if a == 3 { Indicators::NONE } else { a },
                    if b == 2 { Indicators::NONE } else { 3 + b },
                ]
            })
            .collect();
        let mut wide = Array2::zeros((y.len(), 2 + 5));
        for i in 0..y.len() {
            wide[[i, 0]] = x[[i, 0]];
            wide[[i, 1]] = x[[i, 1]];
            for &j in &set[2 * i..2 * i + 2] {
                if j != Indicators::NONE {
                    wide[[i, 2 + j as usize]] = 1.0;
                }
            }
        }
        let indicators = Indicators {
            set: &set,
            groups: 2,
            width: 5,
        };
        let binary: Vec<usize> = y.iter().map(|&c| usize::from(c == 2)).collect();
        for (labels, classes) in [(&binary, 2), (&y, 3)] {
            let logits = if classes == 2 { 1 } else { classes };
            let param = Array1::from_iter((0..logits * 8).map(|_| rng.f64() - 0.5));
            let held = Problem::new(x.view(), labels, classes, 0.7, None)
                .unwrap()
                .with_indicators(indicators)
                .unwrap()
                .evaluate(&param);
            let written = Problem::new(wide.view(), labels, classes, 0.7, None)
                .unwrap()
                .evaluate(&param);
            // The same columns in column-major order take the general (blocked) pass.
            let columns = wide.t().as_standard_layout().into_owned().reversed_axes();
            assert!(columns.as_slice().is_none());
            let general = Problem::new(columns.view(), labels, classes, 0.7, None)
                .unwrap()
                .evaluate(&param);
            for other in [&written, &general] {
                assert!(
                    (held.0 - other.0).abs() < 1e-9 * held.0.abs(),
                    "{classes}: {} vs {}",
                    held.0,
                    other.0
                );
                assert!(
                    largest_gap(held.1.as_slice().unwrap(), other.1.as_slice().unwrap()) < 1e-9
                );
            }
        }
    }
}
