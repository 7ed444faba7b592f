//! The model artifact (`model.json`): its documented schema, its integrity check, and prediction.
//!
//! `model.json` is limen's own format (`limen.model/v2`, described in `models/README.md`), not a
//! pickle and not linfa's serde internals: any tool can read it, and the weights are all a
//! prediction needs. Every file carries a SHA-256 checksum over its canonical JSON form, so a
//! truncated, bit-flipped or hand-edited file is refused on load. No file or async I/O here.

use std::io::Write as _;

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::data::{Dataset, FeatureStats};

/// The `format` tag this build writes.
pub const FORMAT: &str = "limen.model/v2";
/// Every `format` tag this build reads: v1 (limen 0.1: no scaler, no convergence record) and v2.
pub const READABLE_FORMATS: [&str; 2] = ["limen.model/v1", FORMAT];

/// Which linear model the weights describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// One logit, the log-odds of `positive_class`; `classes` is `[negative, positive]`.
    BinaryLogistic,
    /// One logit per class, turned into probabilities by softmax.
    MultinomialLogistic,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BinaryLogistic => "binary_logistic",
            Self::MultinomialLogistic => "multinomial_logistic",
        }
    }
}

/// One input feature, in the order the weights expect, with its training-data statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    #[serde(flatten)]
    pub stats: FeatureStats,
    /// How the training values were distributed, for drift (absent in models trained before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
}

/// A feature's training distribution over 12 bins: below the training minimum, ten quantile
/// bins from the minimum to the maximum, and above the maximum. `edges` are the nine inner
/// quantile edges (the 10th … 90th percentiles); `shares` the fraction of training rows in each
/// bin (the two outer ones are 0 by construction). Production inputs binned the same way give
/// the population stability index ([`Reference::psi`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub edges: Vec<f64>,
    pub shares: Vec<f64>,
}

/// Bins of a [`Reference`]: below the minimum, ten quantile bins, above the maximum.
pub const DRIFT_BINS: usize = 12;

impl Reference {
    /// The reference of a column of values (any order), whose minimum and maximum are `stats`'.
    /// The edges are exact quantiles up to 100,000 values and quantiles of an evenly strided
    /// sample of 100,000 beyond (memory stays small for millions of rows); the shares always
    /// count every value.
    pub fn of<'a>(values: impl Iterator<Item = &'a f64> + Clone, stats: &FeatureStats) -> Self {
        const SAMPLE: usize = 100_000;
        let len = values.clone().count();
        let stride = len.div_ceil(SAMPLE).max(1);
        let mut sorted: Vec<f64> = values
            .clone()
            .step_by(stride)
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let edges: Vec<f64> = (1..10)
            .map(|q| {
                if n == 0 {
                    stats.min
                } else {
                    sorted[((q * n) / 10).min(n - 1)]
                }
            })
            .collect();
        let mut reference = Self {
            edges,
            shares: vec![0.0; DRIFT_BINS],
        };
        let mut counts = [0u64; DRIFT_BINS];
        for v in values {
            counts[reference.bin(*v, stats)] += 1;
        }
        for (share, count) in reference.shares.iter_mut().zip(counts) {
            *share = count as f64 / len.max(1) as f64;
        }
        reference
    }

    /// The bin of `x`: 0 below the training minimum, 11 above the maximum, else 1 + the number
    /// of inner edges below it (a value equal to an edge belongs to the bin the edge closes).
    pub fn bin(&self, x: f64, stats: &FeatureStats) -> usize {
        if x < stats.min {
            0
        } else if x > stats.max {
            DRIFT_BINS - 1
        } else {
            1 + self.edges.partition_point(|e| *e < x)
        }
    }

    /// The population stability index of observed bin `counts` against these shares:
    /// Σ (a − e) · ln(a / e), each share floored at 1e-4 so an empty bin does not make it
    /// infinite. Under 0.1 is usually read as stable, over 0.25 as a shift. `None` without
    /// observations.
    pub fn psi(&self, counts: &[u64]) -> Option<f64> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        const FLOOR: f64 = 1e-4;
        Some(
            self.shares
                .iter()
                .zip(counts)
                .map(|(e, c)| {
                    let (a, e) = ((*c as f64 / total as f64).max(FLOOR), e.max(FLOOR));
                    (a - e) * (a / e).ln()
                })
                .sum(),
        )
    }
}

/// Quality numbers measured when the model was trained. The fields after `cv_folds` are new in
/// v2 and absent from v1 files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub train_accuracy: f64,
    /// Mean cross-entropy on the training rows.
    pub train_log_loss: f64,
    /// Mean accuracy over stratified k-fold cross-validation, absent when it was switched off.
    pub cv_accuracy: Option<f64>,
    pub cv_folds: usize,
    /// Whether the fit met its gradient tolerance before `max_iter` (L-BFGS's own criterion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged: Option<bool>,
    /// L-BFGS iterations the final fit used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u64>,
    /// Euclidean norm of the objective's gradient at the fitted weights (the quantity the
    /// tolerance bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_norm: Option<f64>,
    /// Per-class quality on the training rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<ClassReport>,
    /// Per-class quality on the cross-validation's held-out rows (each row scored by the fold
    /// model that did not see it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv: Option<ClassReport>,
}

impl std::fmt::Display for Metrics {
    /// The summary `limen train` and `limen models show` print: convergence, accuracy, and a
    /// per-class table on the training rows and the cross-validation's held-out rows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.converged, self.iterations, self.gradient_norm) {
            (Some(true), Some(i), Some(g)) => {
                writeln!(f, "  converged in {i} L-BFGS iterations (gradient norm {g:.3e})")?
            }
            (Some(false), Some(i), Some(g)) => writeln!(
                f,
                "  WARNING: the fit did not converge: it stopped after {i} iterations with gradient norm {g:.3e}; \
                 its weights may be far from the optimum. Retrain with --standardize (features on \
                 different scales) or a larger --max-iter; `limen validate` refuses it unless \
                 --allow-unconverged"
            )?,
            _ => {}
        }
        let cv = self.cv_accuracy.map_or("off".to_owned(), |a| {
            format!("{a:.4} ({}-fold stratified)", self.cv_folds)
        });
        writeln!(
            f,
            "  train accuracy {:.4}, log loss {:.4}, CV accuracy {cv}",
            self.train_accuracy, self.train_log_loss
        )?;
        let Some(train) = &self.train else {
            return Ok(());
        };
        writeln!(
            f,
            "  {:<20} {:>9} {:>7} {:>7} {:>8}   (train; CV held-out)",
            "class", "precision", "recall", "f1", "support"
        )?;
        for scores in &train.classes {
            let held_out = self
                .cv
                .as_ref()
                .and_then(|cv| cv.class(&scores.class))
                .map_or(String::new(), |c| {
                    format!("{:.3} / {:.3} / {:.3}", c.precision, c.recall, c.f1)
                });
            writeln!(
                f,
                "  {:<20} {:>9.3} {:>7.3} {:>7.3} {:>8}   {held_out}",
                scores.class, scores.precision, scores.recall, scores.f1, scores.support
            )?;
        }
        if let Some(auc) = train.roc_auc {
            let cv_auc = self
                .cv
                .as_ref()
                .and_then(|cv| cv.roc_auc)
                .map_or(String::new(), |a| format!(", CV {a:.4}"));
            writeln!(f, "  ROC AUC {auc:.4}{cv_auc}")?;
        }
        writeln!(
            f,
            "  confusion (rows: true class, columns: predicted): {:?}",
            train.confusion
        )
    }
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Rows whose true class this is.
    pub support: u64,
}

/// How a model's answers compare with the truth on some rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    /// One entry per class, in the model's class order.
    pub classes: Vec<ClassScores>,
    /// `confusion[i][j]`: rows of true class `i` the model labelled `j` (class order).
    pub confusion: Vec<Vec<u64>>,
    /// Binary models: the area under the ROC curve of P(positive class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roc_auc: Option<f64>,
}

impl ClassReport {
    /// The scores of `class`, if the model has it.
    pub fn class(&self, class: &str) -> Option<&ClassScores> {
        self.classes.iter().find(|c| c.class == class)
    }
}

/// Centring and scaling applied to raw inputs before the weights (scikit-learn's
/// `StandardScaler`: the training mean, and the population standard deviation, 1 for a
/// constant feature). The weights of a model that has one are in standardized units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

/// The hyperparameters a model was fitted with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    /// L2 penalty strength; scikit-learn's `C` is `1 / alpha`.
    pub alpha: f64,
    pub max_iter: u64,
    pub gradient_tolerance: f64,
    /// Whether the features were standardized before the fit (the artifact's `scaler`).
    #[serde(default)]
    pub standardize: bool,
}

/// Where a model came from: enough to reproduce it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub data_path: String,
    pub data_sha256: String,
    pub rows: usize,
    pub hyperparameters: Hyperparameters,
    pub trainer: String,
    pub linfa_version: String,
}

/// The content of a `model.json`, as written and read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    pub format: String,
    pub name: String,
    pub version: u64,
    /// RFC 3339 UTC timestamp of training.
    pub created_at: String,
    pub kind: ModelKind,
    pub features: Vec<Feature>,
    /// The data column holding the class labels the model was trained on.
    pub label_column: String,
    /// Output classes; for a binary model `[negative, positive]`.
    pub classes: Vec<String>,
    /// For a binary model, the label value that counts as positive in `label_column`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<String>,
    /// One row of weights per logit, each as long as `features`.
    pub coefficients: Vec<Vec<f64>>,
    /// One intercept per logit.
    pub intercepts: Vec<f64>,
    /// Present when the model was trained with `--standardize`: inputs are centred and scaled
    /// by it before the weights apply. Clients always send raw values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaler: Option<Scaler>,
    pub metrics: Metrics,
    pub provenance: Provenance,
}

/// What a client may want to know about a model before calling it: a borrowed view of the
/// artifact without its weights.
#[derive(Debug, Clone, Serialize)]
pub struct ModelMetadata<'a> {
    pub version: u64,
    pub created_at: &'a str,
    pub kind: ModelKind,
    /// Input features in order, with their training ranges and moments.
    pub features: &'a [Feature],
    pub label_column: &'a str,
    pub classes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<&'a str>,
    pub metrics: &'a Metrics,
    pub provenance: &'a Provenance,
}

/// The most features a model may have: loading checks it, training refuses more. Warm-up and
/// validation cost grows with features² (each probe row is scored against every feature), and
/// 4,096 keeps a load under a second and a few MB.
pub const MAX_FEATURES: usize = 4096;

/// Why a `model.json` was refused.
///
/// The file is untrusted (other hosts write the store), so no message quotes what it holds:
/// each says what is wrong with it, and where, in limen's own words.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model.json is not valid JSON (truncated or corrupt?)")]
    Json(#[source] serde_json::Error),
    #[error("model.json has no \"checksum\" field; it was not written by limen or was edited")]
    MissingChecksum,
    #[error("model.json checksum mismatch (its content hashes to {actual}, not to the checksum it holds): the file is corrupt or was edited; publish a new version")]
    ChecksumMismatch { actual: String },
    #[error("model.json has {found}; this limen reads \"limen.model/v1\" and {FORMAT:?}")]
    UnsupportedFormat { found: String },
    #[error("model.json does not match the limen.model/v1 schema: {0}")]
    Schema(String),
    #[error("model.json names another model or version than {expected}, where it sits; versions must not be copied or renamed")]
    Misplaced { expected: String },
    #[error("the model has {found} features; limen loads at most {MAX_FEATURES}")]
    TooManyFeatures { found: usize },
}

/// A format tag, quoted only if it looks like one of limen's (the file is untrusted).
fn describe_format(found: &str) -> String {
    let ours = found.len() <= 32
        && found
            .strip_prefix("limen.model/v")
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    if ours {
        format!("format {found:?}")
    } else {
        "a format that is not limen's".to_owned()
    }
}

/// A serde schema error in limen's words: missing fields are named (the names are the schema's),
/// anything else (which would quote the file) is summarised.
fn schema_error(e: &serde_json::Error) -> ModelError {
    let text = e.to_string();
    ModelError::Schema(if text.starts_with("missing field `") {
        text
    } else {
        "a field has a value of the wrong type".to_owned()
    })
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

/// One scored row: the index of the predicted class in [`Model::classes`] and every probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub class: usize,
    pub probabilities: Vec<f64>,
}

impl ModelArtifact {
    /// Serializes to the on-disk form: pretty JSON in schema order with the `checksum` field last.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Signed<'a> {
            #[serde(flatten)]
            artifact: &'a ModelArtifact,
            checksum: String,
        }
        const WHY: &str =
            "an artifact is strings, integers and floats in structs and lists, which always serialize";
        let value = serde_json::to_value(self).expect(WHY);
        let signed = Signed {
            artifact: self,
            checksum: checksum_of(&value),
        };
        let mut out = serde_json::to_vec_pretty(&signed).expect(WHY);
        out.push(b'\n');
        out
    }
}

/// Signs a `model.json` value in place: sets its `checksum` to that of its content, as if limen
/// had written it (tests forge artifacts that pass the checksum to reach the checks behind it).
#[cfg(test)]
pub(crate) fn sign(value: &mut Value) {
    let checksum = checksum_of(value);
    if let Some(object) = value.as_object_mut() {
        object.insert("checksum".to_owned(), Value::String(checksum));
    }
}

/// `sha256:<hex>` over the canonical form of `value` without its `checksum` field: compact JSON,
/// object keys sorted by byte order, numbers as serde_json prints them.
fn checksum_of(value: &Value) -> String {
    let mut canonical = Vec::with_capacity(4096);
    write_canonical(value, &mut canonical, true);
    format!("sha256:{:x}", Sha256::digest(&canonical))
}

fn write_canonical(value: &Value, out: &mut Vec<u8>, top: bool) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map
                .keys()
                .filter(|k| !(top && k.as_str() == "checksum"))
                .collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, key);
                out.push(b':');
                write_canonical(&map[key.as_str()], out, false);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out, false);
            }
            out.push(b']');
        }
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

/// Every feature's statistics and drift reference are usable as every route uses them: finite
/// statistics with min ≤ mean ≤ max and std ≥ 0; a reference of exactly the inner edges and bin
/// shares [`Reference::bin`] and [`Reference::psi`] index, finite, edges in order within the
/// training range, shares in [0, 1] summing to 1. What passes here cannot panic a scoring, drift
/// or page path later.
fn check_features(features: &[Feature]) -> Result<(), ModelError> {
    for (i, feature) in features.iter().enumerate() {
        let at = |what: &str| ModelError::Schema(format!("feature number {}: {what}", i + 1));
        let st = &feature.stats;
        let finite = [st.min, st.max, st.mean, st.std]
            .iter()
            .all(|v| v.is_finite());
        if !finite || st.min > st.max || st.std < 0.0 {
            return Err(at(
                "its training min, max, mean and std must be finite, with min ≤ max and std ≥ 0",
            ));
        }
        // Rounding in a long mean may put it a hair outside [min, max].
        let slack = 1e-9 * st.min.abs().max(st.max.abs()).max(1.0);
        if st.mean < st.min - slack || st.mean > st.max + slack {
            return Err(at("its training mean lies outside its training range"));
        }
        let Some(reference) = &feature.reference else {
            continue;
        };
        if reference.edges.len() != DRIFT_BINS - 3 || reference.shares.len() != DRIFT_BINS {
            return Err(at(&format!(
                "its drift reference needs {} edges and {DRIFT_BINS} shares, has {} and {}",
                DRIFT_BINS - 3,
                reference.edges.len(),
                reference.shares.len()
            )));
        }
        let edges_fit = reference.edges.iter().all(|e| e.is_finite())
            && reference.edges.windows(2).all(|w| w[0] <= w[1]);
        if !edges_fit {
            return Err(at("its drift reference edges must be finite and in order"));
        }
        let shares_fit = reference
            .shares
            .iter()
            .all(|p| p.is_finite() && (0.0..=1.0).contains(p));
        let total: f64 = reference.shares.iter().sum();
        if !shares_fit || (total - 1.0).abs() > 1e-6 {
            return Err(at(
                "its drift reference shares must lie in [0, 1] and sum to 1",
            ));
        }
    }
    Ok(())
}

/// The training metrics are consistent with the model: finite accuracies and losses in range,
/// and each class report (train, CV) has one entry per class, in class order, and a square
/// confusion matrix of the model's classes.
fn check_metrics(metrics: &Metrics, classes: &[String]) -> Result<(), ModelError> {
    let bad = |what: &str| Err(ModelError::Schema(format!("metrics: {what}")));
    let unit = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
    if !unit(metrics.train_accuracy) || metrics.cv_accuracy.is_some_and(|a| !unit(a)) {
        return bad("accuracies must lie in [0, 1]");
    }
    if !metrics.train_log_loss.is_finite() || metrics.train_log_loss < 0.0 {
        return bad("the log loss must be a finite number ≥ 0");
    }
    if metrics
        .gradient_norm
        .is_some_and(|g| !g.is_finite() || g < 0.0)
    {
        return bad("the gradient norm must be a finite number ≥ 0");
    }
    for (which, report) in [("train", &metrics.train), ("cv", &metrics.cv)] {
        let Some(report) = report else { continue };
        let n = classes.len();
        let named = report.classes.len() == n
            && report
                .classes
                .iter()
                .zip(classes)
                .all(|(s, c)| s.class == *c);
        if !named {
            return bad(&format!(
                "the {which} report must list the model's classes in order"
            ));
        }
        if report.confusion.len() != n || report.confusion.iter().any(|row| row.len() != n) {
            return bad(&format!("the {which} confusion matrix must be {n} × {n}"));
        }
        let scores_fit = report
            .classes
            .iter()
            .all(|s| unit(s.precision) && unit(s.recall) && unit(s.f1))
            && report.roc_auc.is_none_or(unit);
        if !scores_fit {
            return bad(&format!(
                "the {which} precision, recall, F1 and ROC AUC must lie in [0, 1]"
            ));
        }
    }
    Ok(())
}

/// How to lay out a row given in one model's feature order (`source`) for another model
/// (`target`): features are matched by name, never by position, so a candidate that takes the
/// same features in another order is scored on the same values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnMap {
    /// Same names in the same order: rows pass through.
    Identity,
    /// `target`'s feature `i` is `source`'s column `columns[i]`.
    Gather(Vec<usize>),
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

    /// `row` (in source order) in target order: the row itself, or gathered into `buf`; `None`
    /// when the target needs a feature the source lacks.
    pub fn apply<'a>(&self, row: &'a [f64], buf: &'a mut Vec<f64>) -> Option<&'a [f64]> {
        match self {
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

/// A verified model, ready to predict. Only [`Model::from_json_bytes`] and [`Model::new`] make
/// one, so holding a `Model` means its checksum and shape were checked.
#[derive(Debug, Clone)]
pub struct Model {
    artifact: ModelArtifact,
    /// `n_logits × n_features`, row-major, for fast dot products.
    weights: Array2<f64>,
    intercepts: Array1<f64>,
    feature_names: Vec<String>,
}

impl Model {
    /// Parses and verifies a `model.json`: valid JSON, checksum, format tag, and shape.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let value: Value = serde_json::from_slice(bytes).map_err(ModelError::Json)?;
        let expected = value
            .get("checksum")
            .and_then(Value::as_str)
            .ok_or(ModelError::MissingChecksum)?
            .to_owned();
        let actual = checksum_of(&value);
        if expected != actual {
            return Err(ModelError::ChecksumMismatch { actual });
        }
        if let Some(found) = value.get("format").and_then(Value::as_str) {
            if !READABLE_FORMATS.contains(&found) {
                return Err(ModelError::UnsupportedFormat {
                    found: describe_format(found),
                });
            }
        }
        let artifact: ModelArtifact =
            serde_json::from_value(value).map_err(|e| schema_error(&e))?;
        Self::new(artifact)
    }

    /// Checks the shape of `artifact` and builds the prediction tables.
    pub fn new(artifact: ModelArtifact) -> Result<Self, ModelError> {
        let schema = |msg: String| Err(ModelError::Schema(msg));
        if !READABLE_FORMATS.contains(&artifact.format.as_str()) {
            return Err(ModelError::UnsupportedFormat {
                found: describe_format(&artifact.format),
            });
        }
        let n_features = artifact.features.len();
        if n_features > MAX_FEATURES {
            return Err(ModelError::TooManyFeatures { found: n_features });
        }
        let n_classes = artifact.classes.len();
        if n_features == 0 {
            return schema("no features".into());
        }
        if n_classes < 2 {
            return schema(format!(
                "{n_classes} classes; a classifier needs at least 2"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = artifact.classes.iter().find(|c| !seen.insert(c.as_str())) {
            return schema(format!(
                "class number {} repeats an earlier one",
                artifact.classes.iter().position(|c| c == dup).unwrap_or(0) + 1
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = artifact
            .features
            .iter()
            .position(|f| !seen.insert(f.name.as_str()))
        {
            return schema(format!("feature number {} repeats an earlier one", dup + 1));
        }
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
                "a coefficient row has {} entries for {n_features} features",
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
        check_features(&artifact.features)?;
        check_metrics(&artifact.metrics, &artifact.classes)?;
        let feature_names = artifact.features.iter().map(|f| f.name.clone()).collect();
        Ok(Self {
            artifact,
            weights,
            intercepts,
            feature_names,
        })
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
            label_column: &a.label_column,
            classes: &a.classes,
            positive_class: a.positive_class.as_deref(),
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
        }
    }

    /// Scores one row whose values follow [`Model::feature_names`].
    ///
    /// Fails on a row of the wrong width, or when the values are so large that the model's
    /// arithmetic overflows (for example `1e308` times a weight above 2).
    /// The prediction for `row` and its exact decomposition (see [`Explanation`]).
    pub fn explain(&self, row: &[f64]) -> Result<Explanation, PredictError> {
        let prediction = self.predict(row)?;
        let means: Vec<f64> = self
            .artifact
            .features
            .iter()
            .map(|f| f.stats.mean)
            .collect();
        let mut baseline = Vec::with_capacity(self.intercepts.len());
        let mut logits = Vec::with_capacity(self.intercepts.len());
        let mut contributions = Vec::with_capacity(self.intercepts.len());
        for (w, b) in self.weights.rows().into_iter().zip(self.intercepts.iter()) {
            let at_mean = b + w.iter().zip(&means).map(|(w, m)| w * m).sum::<f64>();
            let parts: Vec<f64> = w
                .iter()
                .zip(row.iter().zip(&means))
                .map(|(w, (x, m))| w * (x - m))
                .collect();
            logits.push(at_mean + parts.iter().sum::<f64>());
            baseline.push(at_mean);
            contributions.push(parts);
        }
        if logits.iter().chain(&baseline).any(|v| !v.is_finite()) {
            return Err(PredictError::NonFinite);
        }
        Ok(Explanation {
            prediction,
            baseline,
            logits,
            contributions,
        })
    }

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
        let n_features = self.feature_names.len();
        if row.len() != n_features {
            return Err(PredictError::Width {
                expected: n_features,
                got: row.len(),
            });
        }
        let start = out.len();
        // Plain slices, not ndarray's row iterators, which cost more than the arithmetic at
        // these sizes. `Model::new` builds the table row-major with at least one feature, so it
        // is one slice of `n_features`-long rows.
        let weights = self
            .weights
            .as_slice()
            .expect("Model::new builds the weight table row-major");
        out.extend(
            weights
                .chunks_exact(n_features)
                .zip(&self.intercepts)
                .map(|(w, b)| w.iter().zip(row).map(|(w, x)| w * x).sum::<f64>() + b),
        );
        if out[start..].iter().any(|z| z.is_nan()) {
            return Err(PredictError::NonFinite);
        }
        match self.kind() {
            ModelKind::BinaryLogistic => {
                let p = sigmoid(out[start]);
                out.truncate(start);
                out.extend([1.0 - p, p]);
            }
            ModelKind::MultinomialLogistic => {
                softmax_in_place(ArrayViewMut1::from(&mut out[start..]));
            }
        }
        let probabilities = &out[start..];
        if probabilities.iter().any(|p| !p.is_finite()) {
            return Err(PredictError::NonFinite);
        }
        Ok(argmax(probabilities))
    }

    /// Class probabilities for many rows at once (`n_rows × n_classes`).
    ///
    /// Rows whose arithmetic overflows come back as NaN; callers that need a per-row error use
    /// [`Model::predict`].
    pub fn predict_batch(&self, rows: ArrayView2<f64>) -> Result<Array2<f64>, PredictError> {
        let n_features = self.feature_names.len();
        if rows.ncols() != n_features {
            return Err(PredictError::Width {
                expected: n_features,
                got: rows.ncols(),
            });
        }
        let mut logits = rows.dot(&self.weights.t()) + &self.intercepts;
        Ok(match self.kind() {
            ModelKind::BinaryLogistic => {
                let p = logits.column(0).mapv(sigmoid);
                let mut out = Array2::zeros((rows.nrows(), 2));
                out.column_mut(0).assign(&p.mapv(|p| 1.0 - p));
                out.column_mut(1).assign(&p);
                out
            }
            ModelKind::MultinomialLogistic => {
                for row in logits.rows_mut() {
                    softmax_in_place(row);
                }
                logits
            }
        })
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

    /// Accuracy and log loss on `data`, whose label column holds this model's training labels.
    ///
    /// For a binary model a label equal to `positive_class` is positive and anything else
    /// negative; for a multinomial one a label the model does not know counts as wrong.
    pub fn evaluate(&self, data: &Dataset) -> Result<Evaluation, PredictError> {
        let mut tally = Tally::new(self);
        self.score_into(data, &mut tally)?;
        Ok(tally.finish())
    }

    /// Scores every row of `data` into `tally`, row by row into one buffer (no `rows × classes`
    /// matrix for millions of rows). Cross-validation adds each fold's held-out rows to one tally.
    pub fn score_into(&self, data: &Dataset, tally: &mut Tally) -> Result<(), PredictError> {
        let mut probabilities = Vec::with_capacity(self.classes().len());
        // Each of the data's labels as this model's class index, looked up once.
        let truth_of: Vec<Option<usize>> = data
            .label_names
            .iter()
            .map(|label| match (&self.artifact.positive_class, self.kind()) {
                (Some(pos), ModelKind::BinaryLogistic) => Some(usize::from(label == pos)),
                _ => self.artifact.classes.iter().position(|c| c == label),
            })
            .collect();
        let mut scratch = Vec::new();
        for (row, &label) in data.x.rows().into_iter().zip(&data.labels) {
            let row = match row.as_slice() {
                Some(row) => row,
                None => {
                    scratch.clear();
                    scratch.extend(row.iter().copied());
                    &scratch
                }
            };
            let predicted = self.predict_into(row, &mut probabilities)?;
            tally.add(truth_of[label as usize], predicted, &probabilities);
        }
        Ok(())
    }
}

/// How a model did on a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub accuracy: f64,
    pub log_loss: f64,
    pub rows: usize,
    /// Per-class precision, recall, F1, the confusion matrix and (binary) ROC AUC.
    pub report: ClassReport,
}

/// Buckets of P(positive) for the ROC AUC: rank statistics in memory that does not grow with
/// the rows; pairs whose scores fall in one bucket (1/65,536 wide) count as ties.
const AUC_BUCKETS: usize = 1 << 16;

/// Running counts from which an [`Evaluation`] is made.
#[derive(Debug, Clone)]
pub struct Tally {
    classes: Vec<String>,
    binary: bool,
    rows: u64,
    correct: u64,
    loss: f64,
    confusion: Vec<Vec<u64>>,
    /// Binary models: per bucket of P(positive), how many negative and positive rows.
    buckets: Vec<[u64; 2]>,
}

impl Tally {
    pub fn new(model: &Model) -> Self {
        let n = model.classes().len();
        let binary = model.kind() == ModelKind::BinaryLogistic;
        Self {
            classes: model.classes().to_vec(),
            binary,
            rows: 0,
            correct: 0,
            loss: 0.0,
            confusion: vec![vec![0; n]; n],
            buckets: if binary {
                vec![[0; 2]; AUC_BUCKETS]
            } else {
                Vec::new()
            },
        }
    }

    /// One scored row: its true class (if the model knows it), the predicted class and every
    /// probability.
    pub fn add(&mut self, truth: Option<usize>, predicted: usize, probabilities: &[f64]) {
        self.rows += 1;
        let p_true = truth.map_or(0.0, |t| probabilities[t]);
        self.loss -= p_true.clamp(1e-15, 1.0).ln();
        let Some(truth) = truth else { return };
        if truth == predicted {
            self.correct += 1;
        }
        self.confusion[truth][predicted] += 1;
        if self.binary {
            let bucket = (probabilities[1] * (AUC_BUCKETS - 1) as f64).round() as usize;
            self.buckets[bucket.min(AUC_BUCKETS - 1)][truth] += 1;
        }
    }

    pub fn finish(&self) -> Evaluation {
        let n = self.rows.max(1) as f64;
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let classes = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, class)| {
                let tp = self.confusion[i][i];
                let support: u64 = self.confusion[i].iter().sum();
                let predicted: u64 = self.confusion.iter().map(|r| r[i]).sum();
                let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassScores {
                    class: class.clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        Evaluation {
            accuracy: self.correct as f64 / n,
            log_loss: self.loss / n,
            rows: self.rows as usize,
            report: ClassReport {
                classes,
                confusion: self.confusion.clone(),
                roc_auc: self.binary.then(|| self.roc_auc()).flatten(),
            },
        }
    }

    /// The probability that a random positive row scores above a random negative one (ties
    /// half), from the buckets: Mann–Whitney's U over the pairs.
    fn roc_auc(&self) -> Option<f64> {
        let negatives: u64 = self.buckets.iter().map(|b| b[0]).sum();
        let positives: u64 = self.buckets.iter().map(|b| b[1]).sum();
        if negatives == 0 || positives == 0 {
            return None;
        }
        let mut below = 0u64;
        let mut pairs = 0.0f64;
        for [neg, pos] in &self.buckets {
            pairs += *pos as f64 * (below as f64 + 0.5 * *neg as f64);
            below += neg;
        }
        Some(pairs / (positives as f64 * negatives as f64))
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
            }],
            label_column: "species".into(),
            classes: vec!["not_virginica".into(), "virginica".into()],
            positive_class: Some("virginica".into()),
            coefficients: vec![vec![4.332519744450365]],
            intercepts: vec![-7.193421057651488],
            scaler: None,
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
            },
            provenance: Provenance {
                data_path: "data/iris.csv".into(),
                data_sha256: "00".into(),
                rows: 150,
                hyperparameters: Hyperparameters {
                    alpha: 1.0,
                    max_iter: 100,
                    gradient_tolerance: 1e-4,
                    standardize: false,
                },
                trainer: "limen test".into(),
                linfa_version: "0.8.1".into(),
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
        a.format = "limen.model/v3".into();
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
}
