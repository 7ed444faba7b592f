//! A model as the server and the gate use it, whatever its kind: a verified [`ModelArtifact`]
//! (`artifact`: schema, checksum, the checks every kind shares), the drift reference of each
//! feature (`reference`), and one module per kind that scores and explains (`linear`: the two
//! logistic kinds). [`Model`] dispatches to its kind in one place; nothing above this module
//! asks which kind it holds. No file or async I/O here, and nothing of the data layer: evaluating a
//! model on data is the job of the evaluation module, a layer above.

mod artifact;
mod checksum;
pub mod encoding;
mod flat;
mod linear;
mod reference;
pub mod tree;

#[cfg(test)]
pub(crate) use artifact::sign;
pub use artifact::{
    ClassReport, ClassScores, ClassWeight, Feature, ForestParams, Holdout, HoldoutMethod,
    Hyperparameters, Imported, Impute, LogTraining, Metrics, ModelArtifact, ModelError, ModelKind,
    ModelMetadata, Provenance, Scaler, FORMAT, FORMAT_V3, MAX_FEATURES, READABLE_FORMATS,
};
pub use encoding::{Column, Encoder};
pub use reference::{FeatureStats, Reference, DRIFT_BINS};

use ndarray::{Array2, ArrayView2};
use std::sync::atomic::{AtomicU64, Ordering};

use linear::Linear;

/// How many answers named each class, in class order: a served version's live tally, counted
/// where the answer is written. Relaxed atomics: a count, not a synchronisation point.
#[derive(Debug, Default)]
pub struct ClassTally(Box<[AtomicU64]>);

impl ClassTally {
    /// A tally of `classes` classes; [`ClassTally::default`] counts nothing (one-off scoring).
    pub fn new(classes: usize) -> Self {
        Self((0..classes).map(|_| AtomicU64::new(0)).collect())
    }

    /// Counts one answer of `class` (ignored when out of range).
    pub fn count(&self, class: usize) {
        if let Some(c) = self.0.get(class) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts so far, in class order.
    pub fn counts(&self) -> Vec<u64> {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }
}

/// Why a row could not be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PredictError {
    #[error("expected {expected} feature values, got {got}")]
    Width { expected: usize, got: usize },
    #[error(
        "the input values are too large to score: the model's output is not a finite probability"
    )]
    NonFinite,
    #[error("feature {feature:?} holds text in these rows, but the model takes numbers there")]
    Text { feature: String },
}

/// Why a row got its answer, exactly: each logit is `baseline` plus the sum of `contributions`,
/// where a feature's contribution is its weight times its distance from the training mean (in
/// raw units; for a standardized model, the stored weight times the standardized distance, the
/// same number). Binary models have one logit (the log-odds of the positive class); multinomial
/// models one per class.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub prediction: Prediction,
    /// Per logit: the logit at the training means of every feature.
    pub baseline: Vec<f64>,
    /// Per logit: the logit of this row.
    pub logits: Vec<f64>,
    /// Per logit, per feature (model order): weight × (x − training mean).
    pub contributions: Vec<Vec<f64>>,
}

impl Explanation {
    /// The explanation of `prediction`, unless a number of it is not finite (the row's values
    /// overflow the model's arithmetic).
    fn checked(
        prediction: Prediction,
        baseline: Vec<f64>,
        logits: Vec<f64>,
        contributions: Vec<Vec<f64>>,
    ) -> Result<Self, PredictError> {
        let finite = logits
            .iter()
            .chain(&baseline)
            .chain(contributions.iter().flatten())
            .all(|v| v.is_finite());
        if !finite {
            return Err(PredictError::NonFinite);
        }
        Ok(Self {
            prediction,
            baseline,
            logits,
            contributions,
        })
    }
}

/// One scored row: the index of the predicted class in [`Model::classes`] and every probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub class: usize,
    pub probabilities: Vec<f64>,
}

/// How to lay out a row given in one model's feature order (`source`) for another model
/// (`target`): features are matched by name, never by position, so a candidate that takes the
/// same features in another order is scored on the same values.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnMap {
    /// Same names in the same order: rows pass through.
    Identity,
    /// `target`'s feature `i` is `source`'s column `columns[i]`.
    Gather(Vec<usize>),
    /// As `Gather`, and a category's code translated where the models' categories differ:
    /// `codes[i]` maps `source`'s codes of that column to `target`'s (by name).
    Recode {
        columns: Vec<usize>,
        codes: Vec<Option<Vec<f64>>>,
    },
    /// `target` needs a feature `source`'s rows do not carry (its name).
    Missing(String),
}

impl ColumnMap {
    pub fn new(source: &[String], target: &[String]) -> Self {
        if source == target {
            return Self::Identity;
        }
        let at: std::collections::HashMap<&str, usize> = source
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i))
            .collect();
        let mut columns = Vec::with_capacity(target.len());
        for name in target {
            match at.get(name.as_str()) {
                Some(&i) => columns.push(i),
                None => return Self::Missing(name.clone()),
            }
        }
        Self::Gather(columns)
    }

    /// The map between two models' raw rows: by feature name, and for a feature both take as
    /// a category, by category name (a category `target` never saw is unseen to it). A feature
    /// one model takes as text and the other as a number cannot be carried over: `Missing`.
    pub fn between(source: &Model, target: &Model) -> Self {
        let names = Self::new(source.feature_names(), target.feature_names());
        if source.encoder.is_none() && target.encoder.is_none() {
            return names;
        }
        let columns: Vec<usize> = match names {
            Self::Missing(_) => return names,
            Self::Identity => (0..target.feature_names().len()).collect(),
            Self::Gather(columns) => columns,
            Self::Recode { columns, .. } => columns,
        };
        let (from, to) = (source.preprocessing(), target.preprocessing());
        let mut codes = Vec::with_capacity(columns.len());
        for (i, &j) in columns.iter().enumerate() {
            let source_column = from.and_then(|c| c.get(j));
            let target_column = to.and_then(|c| c.get(i));
            let text = |c: Option<&Column>| c.is_some_and(Column::is_categorical);
            match (source_column, target_column) {
                (
                    Some(Column::Categorical {
                        categories, other, ..
                    }),
                    Some(_),
                ) if text(target_column) => {
                    let encoder = target.encoder.as_ref();
                    codes.push(Some(
                        categories
                            .iter()
                            .chain(other)
                            .map(|name| encoder.map_or(encoding::UNSEEN, |e| e.code(i, name)))
                            .collect(),
                    ));
                }
                (s, t) if text(s) == text(t) => codes.push(None),
                _ => return Self::Missing(target.feature_names()[i].clone()),
            }
        }
        Self::Recode { columns, codes }
    }

    /// `row` (in source order) in target order: the row itself, or gathered into `buf`; `None`
    /// when the target needs a feature the source lacks.
    pub fn apply<'a>(&self, row: &'a [f64], buf: &'a mut Vec<f64>) -> Option<&'a [f64]> {
        match self {
            Self::Recode { columns, codes } => {
                buf.clear();
                buf.extend(columns.iter().zip(codes).map(|(&j, codes)| {
                    let v = row.get(j).copied().unwrap_or(f64::NAN);
                    match codes {
                        Some(codes) if !v.is_nan() => {
                            let valid = v >= 0.0 && v.fract() == 0.0 && (v as usize) < codes.len();
                            if valid {
                                codes[v as usize]
                            } else {
                                encoding::UNSEEN
                            }
                        }
                        _ => v,
                    }
                }));
                Some(buf)
            }
            Self::Identity => Some(row),
            Self::Gather(columns) => {
                buf.clear();
                buf.extend(
                    columns
                        .iter()
                        .map(|&i| row.get(i).copied().unwrap_or(f64::NAN)),
                );
                Some(buf)
            }
            Self::Missing(_) => None,
        }
    }
}

/// Index of the largest value; the first one on ties (as numpy's `argmax`).
fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// How a model of each kind scores: matched in this one place.
#[derive(Debug, Clone)]
enum Scorer {
    Linear(Linear),
    /// The ensemble laid out for scoring; explanations read the artifact's `trees`.
    Trees(flat::Flat),
}

/// A verified model, ready to predict. Only [`Model::from_json_bytes`] and [`Model::new`] make
/// one, so holding a `Model` means its checksum and every array of it were checked.
#[derive(Debug, Clone)]
pub struct Model {
    artifact: ModelArtifact,
    scorer: Scorer,
    feature_names: Vec<String>,
    /// Each feature's training mean: the baseline explanations start from.
    means: Vec<f64>,
    /// A binary model's positive index and decision threshold, when it has one.
    threshold: Option<(usize, f64)>,
    /// A model with preprocessing: its category names to codes.
    encoder: Option<Encoder>,
}

/// What decoding a request needs to know of its model: its features in order, whether it
/// scores a missing value (JSON `null`, or NaN in a binary tensor: a tree model sends it down
/// each split's default side, a model with preprocessing imputes it), and which features take
/// text.
#[derive(Debug, Clone, Copy)]
pub struct Schema<'f> {
    pub features: &'f [String],
    pub missing: bool,
    /// A model with preprocessing: text to codes, and which features take text. An absent key
    /// is a missing value too for such a model.
    pub encoder: Option<&'f Encoder>,
}

impl Schema<'_> {
    /// Whether feature `i` takes text (a category) rather than a number.
    pub fn is_categorical(&self, i: usize) -> bool {
        self.encoder.is_some_and(|e| e.is_categorical(i))
    }
}

/// Bytes of memory that loading a `model.json` holds at its peak, per byte of the file: the file,
/// its canonical form for the checksum, then the artifact and the kind's tables. Measured with
/// a 38 MB, 1,000-tree XGBoost import (`limen serve --max-model-size 64MiB`, `VmHWM`/`VmRSS`
/// against a server of the Iris model alone): it peaks at +106 MB, then settles at +27 MB.
/// A server reserves this much of its memory budget before it reads a file.
pub const LOAD_BYTES_PER_FILE_BYTE: u64 = 3;

impl Model {
    /// Parses and verifies a `model.json`: valid JSON, checksum, format tag, and every array.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        Self::new(artifact::parse(bytes)?)
    }

    /// Checks `artifact` whole (what every kind shares, then its kind's own arrays) and builds
    /// its kind's scoring tables.
    pub fn new(artifact: ModelArtifact) -> Result<Self, ModelError> {
        artifact::check_common(&artifact)?;
        if let Some(columns) = &artifact.preprocessing {
            if artifact.trees.is_some() {
                return Err(ModelError::Schema(
                    "a tree_ensemble takes no \"preprocessing\"".into(),
                ));
            }
            let inputs = artifact.coefficients.first().map_or(0, Vec::len);
            encoding::check(columns, artifact.features.len(), inputs)?;
        }
        let scorer = match (artifact.kind, &artifact.trees) {
            (ModelKind::BinaryLogistic | ModelKind::MultinomialLogistic, None) => {
                Scorer::Linear(Linear::new(&artifact)?)
            }
            (ModelKind::TreeEnsemble, Some(trees)) => {
                tree::check(trees, &artifact)?;
                Scorer::Trees(flat::Flat::new(trees))
            }
            (ModelKind::TreeEnsemble, None) => {
                return Err(ModelError::Schema("a tree_ensemble needs \"trees\"".into()))
            }
            (_, Some(_)) => {
                return Err(ModelError::Schema(format!(
                    "a {} model has no \"trees\"",
                    artifact.kind.as_str()
                )))
            }
        };
        let feature_names = artifact.features.iter().map(|f| f.name.clone()).collect();
        let means = artifact.features.iter().map(|f| f.stats.mean).collect();
        let encoder = artifact.preprocessing.as_deref().map(Encoder::new);
        let mut model = Self {
            artifact,
            scorer,
            feature_names,
            means,
            threshold: None,
            encoder,
        };
        model.threshold = model
            .positive_probability_index()
            .zip(model.artifact.threshold);
        Ok(model)
    }

    /// Fails unless the artifact says it is `name` version `version`.
    pub fn check_identity(&self, name: &str, version: u64) -> Result<(), ModelError> {
        if self.artifact.name != name || self.artifact.version != version {
            return Err(ModelError::Misplaced {
                expected: format!("{name}/{version}"),
            });
        }
        Ok(())
    }

    pub fn artifact(&self) -> &ModelArtifact {
        &self.artifact
    }

    /// Everything but the weights, for `/models/{name}` and `limen models show`.
    pub fn metadata(&self) -> ModelMetadata<'_> {
        let a = &self.artifact;
        ModelMetadata {
            version: a.version,
            created_at: &a.created_at,
            kind: a.kind,
            features: &a.features,
            preprocessing: a.preprocessing.as_deref(),
            label_column: &a.label_column,
            classes: &a.classes,
            positive_class: a.positive_class.as_deref(),
            threshold: a.threshold,
            metrics: &a.metrics,
            provenance: &a.provenance,
        }
    }

    pub fn name(&self) -> &str {
        &self.artifact.name
    }

    pub fn version(&self) -> u64 {
        self.artifact.version
    }

    pub fn kind(&self) -> ModelKind {
        self.artifact.kind
    }

    pub fn classes(&self) -> &[String] {
        &self.artifact.classes
    }

    /// Feature names in the order `predict` expects their values.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Probability of the positive class for a binary model, else `None`.
    pub fn positive_probability(&self, p: &Prediction) -> Option<f64> {
        self.positive_probability_index()
            .and_then(|i| p.probabilities.get(i).copied())
    }

    /// Where a binary model's positive class sits among [`Model::classes`]; `None` for others.
    pub fn positive_probability_index(&self) -> Option<usize> {
        match self.kind() {
            ModelKind::BinaryLogistic => Some(1),
            ModelKind::MultinomialLogistic => None,
            // A binary tree model names its positive class, the second of its two.
            ModelKind::TreeEnsemble => self.artifact.positive_class.as_ref().map(|_| 1),
        }
    }

    /// Whether a row may hold missing values (NaN): a tree model sends them down each split's
    /// default side; a linear model cannot score them.
    pub fn accepts_missing(&self) -> bool {
        matches!(self.scorer, Scorer::Trees(_)) || self.encoder.is_some()
    }

    /// How each feature's raw value becomes model inputs, for a model that has preprocessing.
    pub fn preprocessing(&self) -> Option<&[Column]> {
        self.artifact.preprocessing.as_deref()
    }

    /// What decoding a request needs to know of this model.
    pub fn schema(&self) -> Schema<'_> {
        Schema {
            features: self.feature_names(),
            missing: self.accepts_missing(),
            encoder: self.encoder.as_ref(),
        }
    }

    /// For a linear model, logit `logit`'s typical move (logit units) from feature `j`: a
    /// number's weight times its training std, a category's spread of its indicators' weights
    /// under the training shares. 0 for a tree model (its pages draw mean |contributions|).
    pub fn typical_effect(&self, logit: usize, j: usize) -> f64 {
        match &self.scorer {
            Scorer::Linear(linear) => {
                let std = self.artifact.features.get(j).map_or(0.0, |f| f.stats.std);
                linear.typical_effect(logit, j, std)
            }
            Scorer::Trees(_) => 0.0,
        }
    }

    /// How many drift bins feature `i` has: a number's [`DRIFT_BINS`] (when it has a drift
    /// reference), a category's indicators and one for values unseen in training; 0 without a
    /// reference.
    pub fn drift_bins(&self, i: usize) -> usize {
        match self.preprocessing().and_then(|c| c.get(i)) {
            Some(c @ Column::Categorical { .. }) => c.width() + 1,
            _ if self
                .artifact
                .features
                .get(i)
                .is_some_and(|f| f.reference.is_some()) =>
            {
                DRIFT_BINS
            }
            _ => 0,
        }
    }

    /// The drift bin of feature `i`'s raw `value`: `None` for a missing number (in no bin).
    /// A category's missing value has its indicator's bin, or the unseen bin when training
    /// had none.
    pub fn drift_bin(&self, i: usize, value: f64) -> Option<usize> {
        match self.preprocessing().and_then(|c| c.get(i)) {
            Some(c @ Column::Categorical { .. }) => Some(c.indicator(value).unwrap_or(c.width())),
            _ if value.is_nan() => None,
            _ => {
                let feature = self.artifact.features.get(i)?;
                Some(feature.reference.as_ref()?.bin(value, &feature.stats))
            }
        }
    }

    /// Feature `i`'s PSI for bin `counts` (see [`Model::drift_bins`]); `None` without
    /// observations or a reference.
    pub fn drift_psi(&self, i: usize, counts: &[u64]) -> Option<f64> {
        match self.preprocessing().and_then(|c| c.get(i)) {
            Some(Column::Categorical { shares, .. }) => {
                let expected: Vec<f64> = shares.iter().copied().chain([0.0]).collect();
                reference::psi(&expected, counts)
            }
            _ => self
                .artifact
                .features
                .get(i)?
                .reference
                .as_ref()?
                .psi(counts),
        }
    }

    /// Feature `i`'s raw value from a JSON value as the inference log writes it: a number; for a
    /// category, its name (a number printed as its text) to its code, unseen text to
    /// [`encoding::UNSEEN`]; `null` missing. `None` for anything else.
    pub fn value_of(&self, i: usize, value: &serde_json::Value) -> Option<f64> {
        use serde_json::Value;
        let encoder = self.encoder.as_ref().filter(|e| e.is_categorical(i));
        match (value, encoder) {
            (Value::Null, _) => Some(f64::NAN),
            (Value::String(text), Some(e)) => Some(e.code(i, text)),
            (Value::Number(n), Some(e)) => Some(e.code(i, &format!("{}", n.as_f64()?))),
            (Value::Number(n), None) => n.as_f64(),
            _ => None,
        }
    }

    /// Whether every feature has a drift reference (a categorical one, its training shares).
    pub fn has_drift_reference(&self) -> bool {
        (0..self.feature_names.len()).all(|i| self.drift_bins(i) > 0)
    }

    /// How many outputs an explanation decomposes: one logit for a binary logistic model (or
    /// a binary tree ensemble's one margin), else one per class.
    pub fn logits(&self) -> usize {
        match &self.scorer {
            Scorer::Linear(_) if self.kind() == ModelKind::BinaryLogistic => 1,
            Scorer::Linear(_) => self.classes().len(),
            Scorer::Trees(trees) => trees.outputs(),
        }
    }

    /// The prediction for `row` and its exact decomposition (see [`Explanation`]).
    pub fn explain(&self, row: &[f64]) -> Result<Explanation, PredictError> {
        let prediction = self.predict(row)?;
        match &self.scorer {
            Scorer::Linear(linear) => linear.explain(row, &self.means, prediction),
            Scorer::Trees(_) => match &self.artifact.trees {
                Some(trees) => trees.explain(row, self.feature_names.len(), prediction),
                // `new` made a tree scorer only from an artifact with trees.
                None => Err(PredictError::NonFinite),
            },
        }
    }

    /// Scores one row whose values follow [`Model::feature_names`].
    ///
    /// Fails on a row of the wrong width, or when the values are so large that the model's
    /// arithmetic overflows (for example `1e308` times a weight above 2).
    pub fn predict(&self, row: &[f64]) -> Result<Prediction, PredictError> {
        let mut probabilities = Vec::with_capacity(self.artifact.classes.len());
        let class = self.predict_into(row, &mut probabilities)?;
        Ok(Prediction {
            class,
            probabilities,
        })
    }

    /// [`Model::predict`] into a caller's buffer, so a server scoring many rows allocates
    /// nothing per row: `probabilities` is overwritten with one entry per class, and the index of
    /// the predicted class is returned.
    pub fn predict_into(
        &self,
        row: &[f64],
        probabilities: &mut Vec<f64>,
    ) -> Result<usize, PredictError> {
        probabilities.clear();
        self.predict_append(row, probabilities)
    }

    /// [`Model::predict_into`], appending the row's class probabilities to `out` instead (so
    /// a batch's probabilities are written in place, one row after another). On an error,
    /// whatever was appended for the row may remain.
    pub fn predict_append(&self, row: &[f64], out: &mut Vec<f64>) -> Result<usize, PredictError> {
        let width = self.feature_names.len();
        if row.len() != width {
            return Err(PredictError::Width {
                expected: width,
                got: row.len(),
            });
        }
        let start = out.len();
        let predicted = match &self.scorer {
            Scorer::Linear(linear) => linear.predict_append(row, out),
            Scorer::Trees(trees) => trees.predict_append(row, out),
        }?;
        Ok(match self.threshold {
            Some((positive, t)) => match out.get(start + positive) {
                Some(&p) if p >= t => positive,
                Some(_) => 1 - positive,
                None => predicted,
            },
            None => predicted,
        })
    }

    /// Class probabilities for many rows at once (`n_rows × n_classes`).
    ///
    /// Rows whose arithmetic overflows come back as NaN; callers that need a per-row error use
    /// [`Model::predict`].
    pub fn predict_batch(&self, rows: ArrayView2<f64>) -> Result<Array2<f64>, PredictError> {
        if rows.ncols() != self.feature_names.len() {
            return Err(PredictError::Width {
                expected: self.feature_names.len(),
                got: rows.ncols(),
            });
        }
        match &self.scorer {
            Scorer::Linear(linear) => linear.predict_batch(rows),
            Scorer::Trees(trees) => {
                let rows = rows.as_standard_layout();
                let flat = rows.as_slice().unwrap_or(&[]);
                let mut out = Vec::with_capacity(rows.nrows() * self.classes().len());
                trees.predict_rows(flat, rows.ncols(), &mut out);
                Array2::from_shape_vec((rows.nrows(), self.classes().len()), out)
                    .map_err(|_| PredictError::NonFinite)
            }
        }
    }

    /// Scores probe inputs and checks that every answer is a set of finite probabilities that
    /// sums to 1: each feature at 0, ±1, ±1e6, ±1e12 and its training min and max (the others at
    /// their training mean), all features at 0, and all at their means.
    ///
    /// Returns how many probes passed, or a description of the first one that failed. The gate
    /// runs it before promoting, the server before swapping a model in (which also warms it up).
    pub fn self_test(&self) -> Result<usize, String> {
        const PROBE_VALUES: [f64; 7] = [0.0, -1.0, 1.0, -1e6, 1e6, 1e12, -1e12];
        let features = &self.artifact.features;
        let means: Vec<f64> = features.iter().map(|f| f.stats.mean).collect();
        // One probe row at a time, in one reused buffer: memory stays linear in the features
        // (all 9F + 2 rows at once took 300 MB at 2,000 features).
        let mut probabilities = Vec::with_capacity(self.classes().len());
        let mut check = |row: &[f64], what: &dyn Fn() -> String| -> Result<(), String> {
            self.predict_into(row, &mut probabilities)
                .map_err(|e| format!("{}: {e}", what()))?;
            let sum: f64 = probabilities.iter().sum();
            let in_range = probabilities.iter().all(|q| (0.0..=1.0).contains(q));
            if !in_range || (sum - 1.0).abs() > 1e-9 {
                return Err(format!(
                    "{} gave probabilities that are not a distribution (sum {sum})",
                    what()
                ));
            }
            Ok(())
        };
        let mut row = means.clone();
        check(&row, &|| "the probe at the training means".to_owned())?;
        if self.encoder.is_some() {
            // Every value missing (imputed), and every category unseen.
            check(&vec![f64::NAN; features.len()], &|| {
                "the all-missing probe".to_owned()
            })?;
            check(&vec![encoding::UNSEEN; features.len()], &|| {
                "the all-unseen probe".to_owned()
            })?;
        }
        check(&vec![0.0; features.len()], &|| {
            "the all-zero probe".to_owned()
        })?;
        let mut probes = 2;
        for (i, f) in features.iter().enumerate() {
            for &value in PROBE_VALUES.iter().chain([&f.stats.min, &f.stats.max]) {
                row[i] = value;
                check(&row, &|| {
                    format!("the probe with feature {:?} = {value:e}", f.name)
                })?;
                probes += 1;
            }
            row[i] = means[i];
        }
        Ok(probes)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

    /// A binary artifact with scikit-learn's Iris petal-width weights.
    pub(crate) fn binary_artifact() -> ModelArtifact {
        ModelArtifact {
            format: FORMAT.into(),
            name: "iris".into(),
            version: 7,
            created_at: "2026-11-28T00:00:00Z".into(),
            kind: ModelKind::BinaryLogistic,
            features: vec![Feature {
                name: "petal_width".into(),
                stats: FeatureStats {
                    min: 0.1,
                    max: 2.5,
                    mean: 1.199_333,
                    std: 0.759_326,
                },
                reference: None,
                mean_abs_contribution: None,
            }],
            label_column: "species".into(),
            classes: vec!["not_virginica".into(), "virginica".into()],
            positive_class: Some("virginica".into()),
            coefficients: vec![vec![4.332519744450365]],
            intercepts: vec![-7.193421057651488],
            trees: None,
            preprocessing: None,
            scaler: None,
            threshold: None,
            metrics: Metrics {
                train_accuracy: 0.96,
                train_log_loss: 0.1,
                cv_accuracy: Some(0.96),
                cv_folds: 5,
                converged: Some(true),
                iterations: Some(8),
                gradient_norm: Some(1e-5),
                train: None,
                cv: None,
                holdout_accuracy: None,
                holdout: None,
            },
            provenance: Provenance {
                data_path: "data/iris.csv".into(),
                data_sha256: "00".into(),
                rows: 150,
                hyperparameters: Some(Hyperparameters {
                    alpha: 1.0,
                    max_iter: 100,
                    gradient_tolerance: 1e-4,
                    standardize: false,
                    class_weight: None,
                    impute: None,
                    min_category_count: None,
                    missing_values: None,
                }),
                trainer: "limen test".into(),
                linfa_version: "0.8.1".into(),
                imported: None,
                forest: None,
                holdout: None,
                log: None,
            },
        }
    }

    pub(crate) fn multinomial_artifact() -> ModelArtifact {
        let mut a = binary_artifact();
        a.kind = ModelKind::MultinomialLogistic;
        a.positive_class = None;
        a.classes = vec!["a".into(), "b".into(), "c".into()];
        a.coefficients = vec![vec![-1.0], vec![0.0], vec![1.0]];
        a.intercepts = vec![0.5, 0.0, -0.5];
        a
    }

    #[test]
    fn binary_probabilities_match_scikit_learn_bit_for_bit() {
        let model = Model::new(binary_artifact()).unwrap();
        let p = model.predict(&[2.1]).unwrap();
        assert_eq!(p.probabilities[1], 0.8704417670566003);
        assert_eq!(p.class, 1);
        assert_eq!(model.positive_probability(&p), Some(0.8704417670566003));
        assert_eq!(model.predict(&[1.0]).unwrap().class, 0);
    }

    #[test]
    fn round_trip_through_json_keeps_every_bit() {
        let artifact = binary_artifact();
        let bytes = artifact.to_json_bytes();
        let model = Model::from_json_bytes(&bytes).unwrap();
        assert_eq!(model.artifact(), &artifact);
        assert_eq!(model.to_owned().artifact().to_json_bytes(), bytes);
    }

    #[test]
    fn the_checksum_ignores_layout_but_not_content() {
        let bytes = binary_artifact().to_json_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        let compact = serde_json::to_vec(&value).unwrap();
        assert!(Model::from_json_bytes(&compact).is_ok());

        let text = String::from_utf8(bytes.clone()).unwrap();
        let edited = text.replace("4.332519744450365", "4.332519744450366");
        assert!(matches!(
            Model::from_json_bytes(edited.as_bytes()),
            Err(ModelError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn truncated_empty_and_foreign_files_are_refused() {
        let bytes = binary_artifact().to_json_bytes();
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 3] {
            assert!(
                matches!(
                    Model::from_json_bytes(&bytes[..cut]),
                    Err(ModelError::Json(_))
                ),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            Model::from_json_bytes(b"{\"hello\": 1}"),
            Err(ModelError::MissingChecksum)
        ));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = binary_artifact().to_json_bytes();
        let mut accepted = Vec::new();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                if let Ok(m) = Model::from_json_bytes(&flipped) {
                    // Only flips in insignificant whitespace may survive, and they change nothing.
                    if m.artifact() != &binary_artifact() {
                        accepted.push((i, bit));
                    }
                }
            }
        }
        assert!(accepted.is_empty(), "undetected flips: {accepted:?}");
    }

    #[test]
    fn the_reference_has_quantile_edges_and_psi_matches_a_hand_computation() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let stats = FeatureStats {
            min: 1.0,
            max: 100.0,
            mean: 50.5,
            std: 28.87,
        };
        let r = Reference::of(values.iter(), &stats);
        assert_eq!(
            r.edges,
            vec![11.0, 21.0, 31.0, 41.0, 51.0, 61.0, 71.0, 81.0, 91.0]
        );
        // 1..=11 | 12..=21 | … | 82..=91 | 92..=100, and nothing outside the range.
        let expected = [0.0, 0.11, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.09, 0.0];
        for (got, want) in r.shares.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{:?}", r.shares);
        }
        assert_eq!(
            (r.bin(0.5, &stats), r.bin(11.0, &stats), r.bin(11.5, &stats)),
            (0, 1, 2)
        );
        assert_eq!((r.bin(100.0, &stats), r.bin(100.5, &stats)), (10, 11));
        // The training distribution itself: no drift.
        let same: Vec<u64> = expected
            .iter()
            .map(|s| (s * 1000.0).round() as u64)
            .collect();
        assert!(r.psi(&same).unwrap().abs() < 1e-12);
        // Every value in the top quantile bin: by hand, with empty bins floored at 1e-4,
        // (1 − 0.09)·ln(1/0.09) + (1e-4 − 0.11)·ln(1e-4/0.11) + 8·(1e-4 − 0.1)·ln(1e-4/0.1).
        let mut shifted = [0u64; DRIFT_BINS];
        shifted[10] = 500;
        let by_hand = 0.91 * (1.0f64 / 0.09).ln()
            + (1e-4 - 0.11) * (1e-4f64 / 0.11).ln()
            + 8.0 * (1e-4 - 0.1) * (1e-4f64 / 0.1).ln();
        assert!((r.psi(&shifted).unwrap() - by_hand).abs() < 1e-9);
        assert!(by_hand > 5.0, "{by_hand}");
        assert_eq!(r.psi(&[0; DRIFT_BINS]), None);
    }

    #[test]
    fn shape_errors_are_refused() {
        let mut a = binary_artifact();
        a.coefficients = vec![vec![1.0, 2.0]];
        assert!(matches!(Model::new(a), Err(ModelError::Schema(_))));
        let mut a = binary_artifact();
        a.positive_class = Some("not_virginica".into());
        assert!(matches!(Model::new(a), Err(ModelError::Schema(_))));
        let mut a = multinomial_artifact();
        a.intercepts.pop();
        assert!(matches!(Model::new(a), Err(ModelError::Schema(_))));
        let mut a = binary_artifact();
        a.format = "limen.model/v4".into();
        assert!(matches!(
            Model::from_json_bytes(&a.to_json_bytes()),
            Err(ModelError::UnsupportedFormat { .. })
        ));
        // A scaler must fit the features and scale by positive, finite numbers.
        for (mean, scale) in [(vec![1.0, 2.0], vec![1.0, 1.0]), (vec![1.0], vec![0.0])] {
            let mut a = binary_artifact();
            a.scaler = Some(Scaler { mean, scale });
            assert!(matches!(Model::new(a), Err(ModelError::Schema(_))));
        }
    }

    #[test]
    fn a_scaler_is_applied_to_raw_inputs_and_v1_files_still_load() {
        // Standardized weights w' = w·s and b' = b + w·m give the same answer on raw inputs.
        let raw = Model::new(binary_artifact()).unwrap();
        let mut scaled = binary_artifact();
        let (m, s) = (1.2, 0.76);
        scaled.coefficients = vec![vec![4.332519744450365 * s]];
        scaled.intercepts = vec![-7.193421057651488 + 4.332519744450365 * m];
        scaled.scaler = Some(Scaler {
            mean: vec![m],
            scale: vec![s],
        });
        let scaled = Model::new(scaled).unwrap();
        for x in [0.1, 1.0, 1.66, 2.1, 2.5] {
            let (a, b) = (raw.predict(&[x]).unwrap(), scaled.predict(&[x]).unwrap());
            assert!(
                (a.probabilities[1] - b.probabilities[1]).abs() < 1e-12,
                "{x}"
            );
        }
        // A v1 file (no scaler, no convergence record) still loads.
        let mut v1 = binary_artifact();
        v1.format = "limen.model/v1".into();
        v1.metrics.converged = None;
        v1.metrics.iterations = None;
        v1.metrics.gradient_norm = None;
        let bytes = v1.to_json_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            !text.contains("converged") && !text.contains("scaler"),
            "{text}"
        );
        assert!(Model::from_json_bytes(&bytes).is_ok());
    }

    #[test]
    fn identity_must_match_the_store_path() {
        let model = Model::new(binary_artifact()).unwrap();
        assert!(model.check_identity("iris", 7).is_ok());
        assert!(model.check_identity("iris", 8).is_err());
        assert!(model.check_identity("other", 7).is_err());
    }

    #[test]
    fn multinomial_probabilities_are_a_softmax() {
        let model = Model::new(multinomial_artifact()).unwrap();
        let p = model.predict(&[3.0]).unwrap();
        assert_eq!(p.class, 2);
        assert!((p.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(model.positive_probability(&p), None);
    }

    #[test]
    fn extreme_inputs_give_probabilities_or_a_clear_error() {
        for model in [binary_artifact(), multinomial_artifact()].map(|a| Model::new(a).unwrap()) {
            for x in [0.0, -1e300, 1e300, f64::MAX, -f64::MAX] {
                match model.predict(&[x]) {
                    Ok(p) => {
                        assert!(p.probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
                        assert!((p.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-9);
                    }
                    Err(e) => assert_eq!(e, PredictError::NonFinite),
                }
            }
            assert!(matches!(
                model.predict(&[1.0, 2.0]),
                Err(PredictError::Width { .. })
            ));
        }
    }

    #[test]
    fn batch_prediction_agrees_with_single_rows() {
        for model in [binary_artifact(), multinomial_artifact()].map(|a| Model::new(a).unwrap()) {
            let rows = ndarray::array![[0.0], [1.5], [2.1], [-3.0]];
            let batch = model.predict_batch(rows.view()).unwrap();
            for (i, row) in rows.rows().into_iter().enumerate() {
                let single = model.predict(row.as_slice().unwrap()).unwrap();
                for (a, b) in batch.row(i).iter().zip(&single.probabilities) {
                    assert!((a - b).abs() < 1e-12, "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn a_threshold_moves_the_label_not_the_probabilities() {
        let plain = Model::new(binary_artifact()).unwrap();
        let mut a = binary_artifact();
        a.threshold = Some(0.3);
        let low = Model::new(a).unwrap();
        // P(virginica | width) is 0.24 at 1.4, 0.33 at 1.5 and 0.81 at 2.0.
        for (width, plain_label, low_label) in [(1.4, 0, 0), (1.5, 0, 1), (2.0, 1, 1)] {
            let (p, q) = (
                plain.predict(&[width]).unwrap(),
                low.predict(&[width]).unwrap(),
            );
            assert_eq!(p.probabilities, q.probabilities);
            assert_eq!((p.class, q.class), (plain_label, low_label), "{width}");
        }
        for bad in [0.0, 1.0, f64::NAN] {
            let mut a = binary_artifact();
            a.threshold = Some(bad);
            assert!(matches!(Model::new(a), Err(ModelError::Schema(_))), "{bad}");
        }
        let mut m = multinomial_artifact();
        m.threshold = Some(0.5);
        assert!(Model::new(m).is_err(), "a threshold needs a binary model");
    }

    /// A binary model of one number and one category (`island`: Biscoe, Dream; missing its own
    /// indicator), standardized.
    pub(crate) fn mixed_artifact() -> ModelArtifact {
        let mut a = binary_artifact();
        a.format = FORMAT_V3.into();
        a.features.push(Feature {
            name: "island".into(),
            stats: FeatureStats {
                min: 0.0,
                max: 1.0,
                mean: 0.5,
                std: 0.5,
            },
            reference: None,
            mean_abs_contribution: None,
        });
        a.preprocessing = Some(vec![
            Column::Numeric { impute: 1.3 },
            Column::Categorical {
                categories: vec!["Biscoe".into(), "Dream".into()],
                other: vec![],
                missing: true,
                shares: vec![0.5, 0.4, 0.1],
            },
        ]);
        a.coefficients = vec![vec![4.0, 1.0, -2.0, 0.5]];
        a.scaler = Some(Scaler {
            mean: vec![1.2, 0.0, 0.0, 0.0],
            scale: vec![0.8, 1.0, 1.0, 1.0],
        });
        a
    }

    #[test]
    fn a_mixed_model_scores_raw_rows_as_their_expanded_inputs() {
        let model = Model::new(mixed_artifact()).unwrap();
        assert!(model.accepts_missing() && model.schema().is_categorical(1));
        let expanded = |x: f64, onehot: [f64; 3]| {
            let z = -7.193421057651488
                + 4.0 * (x - 1.2) / 0.8
                + onehot
                    .iter()
                    .zip([1.0, -2.0, 0.5])
                    .map(|(v, w)| v * w)
                    .sum::<f64>();
            1.0 / (1.0 + (-z).exp())
        };
        let encoder = model.schema().encoder.unwrap();
        for (row, want) in [
            (
                [2.0, encoder.code(1, "Dream")],
                expanded(2.0, [0.0, 1.0, 0.0]),
            ),
            ([f64::NAN, 0.0], expanded(1.3, [1.0, 0.0, 0.0])),
            ([2.0, f64::NAN], expanded(2.0, [0.0, 0.0, 1.0])),
            ([2.0, encoding::UNSEEN], expanded(2.0, [0.0, 0.0, 0.0])),
            ([2.0, -7.0], expanded(2.0, [0.0, 0.0, 0.0])),
        ] {
            let p = model.predict(&row).unwrap().probabilities[1];
            assert!((p - want).abs() < 1e-12, "{row:?}: {p} vs {want}");
            // One contribution per column, summing with the baseline to the logit.
            let e = model.explain(&row).unwrap();
            assert_eq!(e.contributions[0].len(), 2);
            let sum: f64 = e.contributions[0].iter().sum();
            assert!((e.baseline[0] + sum - e.logits[0]).abs() < 1e-12);
        }
        assert!(model.self_test().is_ok());
        // A typical move: the number's raw weight × its std; the category's spread of weights
        // under its shares, on the side of its most common category.
        assert!((model.typical_effect(0, 0) - 4.0 / 0.8 * 0.759_326).abs() < 1e-12);
        assert!((model.typical_effect(0, 1) - 2.0625f64.sqrt()).abs() < 1e-12);
        // Drift: an indicator's bin, or the last one for a value training never saw.
        assert_eq!(model.drift_bins(1), 4);
        assert_eq!(model.drift_bin(1, 1.0), Some(1));
        assert_eq!(model.drift_bin(1, f64::NAN), Some(2));
        assert_eq!(model.drift_bin(1, encoding::UNSEEN), Some(3));
        assert!(model.drift_psi(1, &[50, 40, 10, 0]).unwrap() < 1e-9);
        assert!(model.drift_psi(1, &[0, 0, 0, 100]).unwrap() > 5.0);
    }

    #[test]
    fn preprocessing_that_does_not_fit_its_weights_or_format_is_refused() {
        let mut wide = mixed_artifact();
        wide.coefficients = vec![vec![4.0, 1.0, -2.0]];
        assert!(matches!(Model::new(wide), Err(ModelError::Schema(_))));
        let mut v2 = mixed_artifact();
        v2.format = FORMAT.into();
        assert!(matches!(Model::new(v2), Err(ModelError::Schema(_))));
        let mut short = mixed_artifact();
        short.scaler = Some(Scaler {
            mean: vec![1.2],
            scale: vec![0.8],
        });
        assert!(matches!(Model::new(short), Err(ModelError::Schema(_))));
        let mut trees = mixed_artifact();
        trees.kind = ModelKind::TreeEnsemble;
        trees.trees = crate::model::tree::tests::one_tree_artifact().trees;
        assert!(Model::new(trees).is_err());
        // The round trip through model.json keeps every bit of it.
        let bytes = mixed_artifact().to_json_bytes();
        assert_eq!(
            Model::from_json_bytes(&bytes).unwrap().artifact(),
            &mixed_artifact()
        );
    }
}
