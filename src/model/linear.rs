//! The two logistic kinds (`binary_logistic`, `multinomial_logistic`): their weights checked and
//! folded into one table at load (a scaler included, so scoring costs the same with it), scoring
//! a row into its class probabilities, and the exact decomposition of its logits.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1};

use super::encoding::Column;
use super::{Explanation, ModelArtifact, ModelError, ModelKind, PredictError, Prediction};

/// A linear model's prediction table.
#[derive(Debug, Clone)]
pub struct Linear {
    kind: ModelKind,
    /// `n_logits × n_inputs`, row-major, for fast dot products (model inputs: one per feature
    /// without preprocessing, else the expanded numbers and indicators).
    weights: Array2<f64>,
    intercepts: Array1<f64>,
    /// A model with preprocessing: how each raw feature reaches its weights.
    mixed: Option<Mixed>,
}

/// A model with preprocessing, laid out for scoring raw rows without expanding them: each
/// feature's weights by input, logit-major within an input (`by_input[j · L + l]`), so a
/// number costs one multiply-add per logit and a category one lookup.
#[derive(Debug, Clone)]
struct Mixed {
    columns: Vec<Column>,
    /// Per feature, its first model input.
    starts: Vec<usize>,
    by_input: Vec<f64>,
    /// Per feature and logit, the expected contribution of a categorical feature under its
    /// training shares (Σ_j w_j · share_j): where its explanation starts from.
    expected: Vec<f64>,
}

impl Linear {
    /// Checks the artifact's weights against its features and classes (one logit for a binary
    /// model, whose second class is its `positive_class`; one per class otherwise), and builds
    /// the table.
    pub fn new(artifact: &ModelArtifact) -> Result<Self, ModelError> {
        let schema = |msg: String| Err(ModelError::Schema(msg));
        let n_features = match &artifact.preprocessing {
            Some(columns) => columns.iter().map(Column::width).sum(),
            None => artifact.features.len(),
        };
        let n_classes = artifact.classes.len();
        let n_logits = match artifact.kind {
            ModelKind::BinaryLogistic => {
                if n_classes != 2 {
                    return schema(format!("a binary model needs 2 classes, has {n_classes}"));
                }
                match &artifact.positive_class {
                    None => return schema("a binary model needs \"positive_class\"".into()),
                    Some(p) if artifact.classes[1] != *p => {
                        return schema(
                            "positive_class must be the second entry of \"classes\"".into(),
                        )
                    }
                    Some(_) => {}
                }
                1
            }
            ModelKind::MultinomialLogistic => n_classes,
            ModelKind::TreeEnsemble => return schema("a tree ensemble has no weights".into()),
        };
        if artifact.coefficients.len() != n_logits || artifact.intercepts.len() != n_logits {
            return schema(format!(
                "{} needs {n_logits} coefficient rows and intercepts, found {} and {}",
                artifact.kind.as_str(),
                artifact.coefficients.len(),
                artifact.intercepts.len()
            ));
        }
        if let Some(row) = artifact.coefficients.iter().find(|r| r.len() != n_features) {
            return schema(format!(
                "a coefficient row has {} entries for {n_features} model inputs",
                row.len()
            ));
        }
        let all_finite = artifact
            .coefficients
            .iter()
            .flatten()
            .chain(&artifact.intercepts)
            .all(|w| w.is_finite());
        if !all_finite {
            return schema("coefficients and intercepts must be finite numbers".into());
        }
        let flat: Vec<f64> = artifact.coefficients.iter().flatten().copied().collect();
        let mut weights = Array2::from_shape_vec((n_logits, n_features), flat)
            .map_err(|e| ModelError::Schema(e.to_string()))?;
        let mut intercepts = Array1::from(artifact.intercepts.clone());
        if let Some(scaler) = &artifact.scaler {
            if scaler.mean.len() != n_features || scaler.scale.len() != n_features {
                return schema(format!(
                    "the scaler needs {n_features} means and scales, found {} and {}",
                    scaler.mean.len(),
                    scaler.scale.len()
                ));
            }
            let usable = scaler.mean.iter().all(|m| m.is_finite())
                && scaler.scale.iter().all(|s| s.is_finite() && *s > 0.0);
            if !usable {
                return schema("scaler means must be finite and scales finite and positive".into());
            }
            // Folded into the prediction table once, so scoring costs what it did without:
            // w·((x − m) / s) + b = (w / s)·x + (b − Σ w m / s).
            for (mut row, b) in weights.rows_mut().into_iter().zip(intercepts.iter_mut()) {
                for ((w, m), s) in row.iter_mut().zip(&scaler.mean).zip(&scaler.scale) {
                    *w /= s;
                    *b -= *w * m;
                }
            }
            let all_finite = weights
                .iter()
                .chain(intercepts.iter())
                .all(|w| w.is_finite());
            if !all_finite {
                return schema("the scaled weights are not finite numbers".into());
            }
        }
        let mixed = artifact
            .preprocessing
            .as_ref()
            .map(|columns| Mixed::new(columns, &weights));
        Ok(Self {
            kind: artifact.kind,
            weights,
            intercepts,
            mixed,
        })
    }

    /// The logits of raw `row` appended to `out`.
    fn logits_append(&self, row: &[f64], out: &mut Vec<f64>) {
        let Some(mixed) = &self.mixed else {
            let n_inputs = self.weights.ncols();
            // Plain slices, not ndarray's row iterators, which cost more than the arithmetic
            // at these sizes. `Linear::new` builds the table row-major with at least one
            // feature, so it is one slice of `n_inputs`-long rows.
            let weights = self
                .weights
                .as_slice()
                .expect("Linear::new builds the weight table row-major");
            out.extend(
                weights
                    .chunks_exact(n_inputs)
                    .zip(&self.intercepts)
                    .map(|(w, b)| w.iter().zip(row).map(|(w, x)| w * x).sum::<f64>() + b),
            );
            return;
        };
        let start = out.len();
        let n_logits = self.intercepts.len();
        out.extend(self.intercepts.iter());
        let z = &mut out[start..];
        for ((column, &first), &x) in mixed.columns.iter().zip(&mixed.starts).zip(row) {
            match column {
                Column::Numeric { impute } => {
                    let x = if x.is_nan() { *impute } else { x };
                    let w = &mixed.by_input[first * n_logits..(first + 1) * n_logits];
                    for (z, w) in z.iter_mut().zip(w) {
                        *z += w * x;
                    }
                }
                Column::Categorical { .. } => {
                    if let Some(j) = column.indicator(x) {
                        let at = (first + j) * n_logits;
                        for (z, w) in z.iter_mut().zip(&mixed.by_input[at..at + n_logits]) {
                            *z += w;
                        }
                    }
                }
            }
        }
    }

    /// The row's class probabilities appended to `out` (so
    /// a batch's probabilities are written in place, one row after another). On an error,
    /// whatever was appended for the row may remain.
    pub fn predict_append(&self, row: &[f64], out: &mut Vec<f64>) -> Result<usize, PredictError> {
        let n_features = self.features();
        if row.len() != n_features {
            return Err(PredictError::Width {
                expected: n_features,
                got: row.len(),
            });
        }
        let start = out.len();
        self.logits_append(row, out);
        if out[start..].iter().any(|z| z.is_nan()) {
            return Err(PredictError::NonFinite);
        }
        if self.kind == ModelKind::BinaryLogistic {
            let p = sigmoid(out[start]);
            out.truncate(start);
            out.extend([1.0 - p, p]);
        } else {
            softmax_in_place(ArrayViewMut1::from(&mut out[start..]));
        }
        let probabilities = &out[start..];
        if probabilities.iter().any(|p| !p.is_finite()) {
            return Err(PredictError::NonFinite);
        }
        Ok(super::argmax(probabilities))
    }

    /// Class probabilities for many rows at once (`n_rows × n_classes`).
    ///
    /// Rows whose arithmetic overflows come back as NaN; callers that need a per-row error use
    /// [`Linear::predict_append`].
    pub fn predict_batch(&self, rows: ArrayView2<f64>) -> Result<Array2<f64>, PredictError> {
        let n_features = self.features();
        if rows.ncols() != n_features {
            return Err(PredictError::Width {
                expected: n_features,
                got: rows.ncols(),
            });
        }
        let mut logits = if self.mixed.is_some() {
            let n_logits = self.intercepts.len();
            let mut flat = Vec::with_capacity(rows.nrows() * n_logits);
            let mut row = Vec::with_capacity(n_features);
            for r in rows.rows() {
                row.clear();
                row.extend(r.iter().copied());
                self.logits_append(&row, &mut flat);
            }
            Array2::from_shape_vec((rows.nrows(), n_logits), flat)
                .map_err(|_| PredictError::NonFinite)?
        } else {
            rows.dot(&self.weights.t()) + &self.intercepts
        };
        Ok(if self.kind == ModelKind::BinaryLogistic {
            let p = logits.column(0).mapv(sigmoid);
            let mut out = Array2::zeros((rows.nrows(), 2));
            out.column_mut(0).assign(&p.mapv(|p| 1.0 - p));
            out.column_mut(1).assign(&p);
            out
        } else {
            for row in logits.rows_mut() {
                softmax_in_place(row);
            }
            logits
        })
    }

    /// Logit `logit`'s typical move from feature `j`, signed: a number's weight (in raw units)
    /// times its training std; a category's spread of its indicators' weights under the
    /// training shares (their standard deviation, signed by the most common category's side).
    pub fn typical_effect(&self, logit: usize, j: usize, std: f64) -> f64 {
        let n_logits = self.intercepts.len();
        let Some(mixed) = &self.mixed else {
            return self.weights.get([logit, j]).map_or(0.0, |w| w * std);
        };
        let (Some(column), Some(&first)) = (mixed.columns.get(j), mixed.starts.get(j)) else {
            return 0.0;
        };
        let weight = |k: usize| mixed.by_input[(first + k) * n_logits + logit];
        match column {
            Column::Numeric { .. } => weight(0) * std,
            Column::Categorical { shares, .. } => {
                let mean: f64 = shares.iter().enumerate().map(|(k, s)| s * weight(k)).sum();
                let var: f64 = shares
                    .iter()
                    .enumerate()
                    .map(|(k, s)| s * (weight(k) - mean).powi(2))
                    .sum();
                let top = shares
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(k, _)| k);
                var.sqrt().copysign(weight(top) - mean)
            }
        }
    }

    /// How many raw values a row holds.
    fn features(&self) -> usize {
        self.mixed
            .as_ref()
            .map_or(self.weights.ncols(), |m| m.columns.len())
    }

    /// `prediction` (this model's, for `row`) with each logit decomposed exactly: the logit at
    /// the training `means` plus, per feature, weight × (x − mean) (see [`Explanation`]). With
    /// preprocessing, a number's contribution is taken after imputation, and a category's is its
    /// indicators' weights summed (the one set, minus their expectation under the training
    /// shares): one contribution per original column.
    pub fn explain(
        &self,
        row: &[f64],
        means: &[f64],
        prediction: Prediction,
    ) -> Result<Explanation, PredictError> {
        if let Some(mixed) = &self.mixed {
            return self.explain_mixed(mixed, row, means, prediction);
        }
        let mut baseline = Vec::with_capacity(self.intercepts.len());
        let mut logits = Vec::with_capacity(self.intercepts.len());
        let mut contributions = Vec::with_capacity(self.intercepts.len());
        for (w, b) in self.weights.rows().into_iter().zip(self.intercepts.iter()) {
            let at_mean = b + w.iter().zip(means).map(|(w, m)| w * m).sum::<f64>();
            let parts: Vec<f64> = w
                .iter()
                .zip(row.iter().zip(means))
                .map(|(w, (x, m))| w * (x - m))
                .collect();
            logits.push(at_mean + parts.iter().sum::<f64>());
            baseline.push(at_mean);
            contributions.push(parts);
        }
        Explanation::checked(prediction, baseline, logits, contributions)
    }
}

impl Linear {
    fn explain_mixed(
        &self,
        mixed: &Mixed,
        row: &[f64],
        means: &[f64],
        prediction: Prediction,
    ) -> Result<Explanation, PredictError> {
        let n_logits = self.intercepts.len();
        let mut baseline = Vec::with_capacity(n_logits);
        let mut logits = Vec::with_capacity(n_logits);
        let mut contributions = Vec::with_capacity(n_logits);
        for (l, b) in self.intercepts.iter().enumerate() {
            let mut at_mean = *b;
            let mut parts = Vec::with_capacity(row.len());
            for (f, (column, &first)) in mixed.columns.iter().zip(&mixed.starts).enumerate() {
                let x = row.get(f).copied().unwrap_or(f64::NAN);
                match column {
                    Column::Numeric { impute } => {
                        let w = mixed.by_input[first * n_logits + l];
                        let x = if x.is_nan() { *impute } else { x };
                        let m = means.get(f).copied().unwrap_or(0.0);
                        at_mean += w * m;
                        parts.push(w * (x - m));
                    }
                    Column::Categorical { .. } => {
                        let expected = mixed.expected[f * n_logits + l];
                        let set = column
                            .indicator(x)
                            .map_or(0.0, |j| mixed.by_input[(first + j) * n_logits + l]);
                        at_mean += expected;
                        parts.push(set - expected);
                    }
                }
            }
            logits.push(at_mean + parts.iter().sum::<f64>());
            baseline.push(at_mean);
            contributions.push(parts);
        }
        Explanation::checked(prediction, baseline, logits, contributions)
    }
}

impl Mixed {
    /// The scoring layout of `weights` (`n_logits × n_inputs`, scaler already folded in) for
    /// `columns`, whose widths `encoding::check` matched to the inputs.
    fn new(columns: &[Column], weights: &Array2<f64>) -> Self {
        let n_logits = weights.nrows();
        let mut starts = Vec::with_capacity(columns.len());
        let mut expected = Vec::with_capacity(columns.len() * n_logits);
        let mut first = 0;
        for column in columns {
            starts.push(first);
            for l in 0..n_logits {
                expected.push(match column {
                    Column::Numeric { .. } => 0.0,
                    Column::Categorical { shares, .. } => shares
                        .iter()
                        .enumerate()
                        .map(|(j, s)| weights[[l, first + j]] * s)
                        .sum(),
                });
            }
            first += column.width();
        }
        let by_input = weights.t().iter().copied().collect();
        Self {
            columns: columns.to_vec(),
            starts,
            by_input,
            expected,
        }
    }
}

/// The logistic function with an ordinary `exp`, as scikit-learn computes it (bit for bit).
fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Softmax with the maximum subtracted first, so large logits cannot overflow.
fn softmax_in_place(mut z: ArrayViewMut1<f64>) {
    let max = z.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    z.mapv_inplace(|v| (v - max).exp());
    let sum = z.sum();
    z.mapv_inplace(|v| v / sum);
}
