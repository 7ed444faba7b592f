//! `model.json`, limen's own format (`limen.model/v2`, described in `models/README.md`): its
//! documented schema, the SHA-256 checksum over its canonical JSON form (a truncated,
//! bit-flipped or hand-edited file is refused), and the checks every kind shares: that each
//! array of the artifact fits its features and classes before anything scores with it. The
//! arrays one kind alone has (a linear model's weights) are checked by that kind's module.

use serde::{Deserialize, Serialize};

use super::reference::{FeatureStats, Reference, DRIFT_BINS};

/// The `format` tag this build writes for a model without `preprocessing`.
pub const FORMAT: &str = "limen.model/v2";
/// The tag of a model with `preprocessing` (text categories, imputed values): a build that
/// reads only v2 would ignore it and score codes as numbers, so it must refuse the file.
pub const FORMAT_V3: &str = "limen.model/v3";
/// Every `format` tag this build reads: v1 (limen 0.1: no scaler, no convergence record), v2
/// and v3.
pub const READABLE_FORMATS: [&str; 3] = ["limen.model/v1", FORMAT, FORMAT_V3];

/// Which linear model the weights describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// One logit, the log-odds of `positive_class`; `classes` is `[negative, positive]`.
    BinaryLogistic,
    /// One logit per class, turned into probabilities by softmax.
    MultinomialLogistic,
    /// Decision trees whose outputs are summed (gradient boosting) or averaged (a forest):
    /// the artifact's `trees`.
    TreeEnsemble,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BinaryLogistic => "binary_logistic",
            Self::MultinomialLogistic => "multinomial_logistic",
            Self::TreeEnsemble => "tree_ensemble",
        }
    }

    /// The platform the Open Inference Protocol's model metadata names.
    pub fn platform(self) -> &'static str {
        match self {
            Self::BinaryLogistic | Self::MultinomialLogistic => "linfa_logistic",
            Self::TreeEnsemble => "limen_tree_ensemble",
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
    /// A tree ensemble's mean |contribution| of this feature (TreeSHAP, averaged over the
    /// outputs and 100 to 1,000 rows of the training or import data, fewer for bigger
    /// ensembles): how much it moves answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_abs_contribution: Option<f64>,
}

/// Quality numbers measured when the model was trained. The fields after `cv_folds` are new in
/// v2 and absent from v1 files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Accuracy on the hold-out: rows of the data the fit never saw (`limen train --holdout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_accuracy: Option<f64>,
    /// Per-class quality on the hold-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<ClassReport>,
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
        if let (Some(accuracy), Some(report)) = (self.holdout_accuracy, &self.holdout) {
            let rows: u64 = report.classes.iter().map(|c| c.support).sum();
            let auc = report
                .roc_auc
                .map_or(String::new(), |a| format!(", ROC AUC {a:.4}"));
            writeln!(
                f,
                "  hold-out accuracy {accuracy:.4}{auc} on {rows} rows the fit never saw"
            )?;
        }
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
    /// How rows were weighted by class in the fit (`--class-weight`); absent: all alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weight: Option<ClassWeight>,
    /// A fit with preprocessing: how missing numbers were imputed (`--impute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impute: Option<Impute>,
    /// A fit with preprocessing: categories with fewer training rows were folded into one
    /// (`--min-category-count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_category_count: Option<u64>,
    /// The cells read as missing, when not the defaults (`--missing-values`): the gate reads
    /// its rows the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_values: Option<Vec<String>>,
}

/// How a missing number is filled in (scikit-learn's `SimpleImputer` strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impute {
    /// The median of the column's training values (scikit-learn's `strategy="median"`).
    Median,
    /// Their mean.
    Mean,
    /// Zero (scikit-learn's `strategy="constant"`, `fill_value=0`).
    Zero,
}

/// A fit's per-class row weights (scikit-learn's `class_weight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Row of class `c` weighs `n / (k · n_c)`: every class counts as much as the others.
    Balanced,
}

/// Where a model came from: enough to reproduce it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The data the model was trained on (for an import: the data it was evaluated on).
    pub data_path: String,
    pub data_sha256: String,
    pub rows: usize,
    /// A model limen fitted: its hyperparameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperparameters: Option<Hyperparameters>,
    pub trainer: String,
    pub linfa_version: String,
    /// A model limen imported (`limen import`): where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<Imported>,
    /// A random forest limen fitted (`limen train --kind random-forest`): its hyperparameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forest: Option<ForestParams>,
    /// The rows of the data kept out of the fit, so that `limen validate` can find them again
    /// (`rows` counts every row of the data, held out or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<Holdout>,
    /// A model trained from an inference log: the labels it was joined with and whose lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogTraining>,
}

/// How the hold-out rows were chosen, and a digest of which they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holdout {
    /// The share of the rows asked for (`--holdout`).
    pub share: f64,
    pub method: HoldoutMethod,
    /// `newest`: the column the rows were ordered by (`--split-by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_by: Option<String>,
    /// Rows held out.
    pub rows: usize,
    /// SHA-256 of the held-out row numbers (0-based data rows, ascending, each as 8 bytes
    /// little-endian): a validator that picks the rows again proves it found the same ones.
    /// Absent for `request_id`, whose rows are found by their request ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_sha256: Option<String>,
}

impl Holdout {
    /// How the rows were chosen, in words: `a stratified 20 %`, `the newest 20 % by date`.
    pub fn describe(&self) -> String {
        // 0.3 × 100 is 30.000000000000004: rounded to a tenth of a per cent.
        let share = (self.share * 1000.0).round() / 10.0;
        match (self.method, &self.split_by) {
            (HoldoutMethod::Newest, Some(column)) => format!("the newest {share} % by {column}"),
            (HoldoutMethod::RequestId, _) => format!("{share} % by request id"),
            _ => format!("a stratified {share} %"),
        }
    }
}

/// Which rows a hold-out takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldoutMethod {
    /// The same share of every class, drawn by a fixed hash of the row number.
    Stratified,
    /// The rows latest in `split_by`'s order (a time-ordered split).
    Newest,
    /// Inference-log rows whose request id hashes below the share: a request is held out
    /// or not whatever else the log holds, so rows logged after training can be added.
    RequestId,
}

/// The inference-log side of a model's provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogTraining {
    /// The labels file the log was joined with (`--labels`).
    pub labels: String,
    /// The model whose logged requests were read (`--log-model`).
    pub model: String,
}

/// A random forest's hyperparameters (checked by `forest::params`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForestParams {
    /// Trees in the forest.
    pub trees: usize,
    /// Deepest a tree grows; absent: until its leaves are pure (at most the deepest tree a model
    /// may hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<usize>,
    /// Features each tree is fitted on; absent: ⌈√p⌉ of the p features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_features: Option<usize>,
    /// Seed of the bootstrap and feature draws: the same data and seed give the same forest.
    pub seed: u64,
}

/// Where an imported model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Imported {
    /// `xgboost` or `lightgbm`.
    pub library: String,
    /// The library version that wrote the file, as the file says.
    pub library_version: String,
    /// The library's objective (`binary:logistic`, `multiclass`, …).
    pub objective: String,
    /// The imported file, and its SHA-256.
    pub file: String,
    pub file_sha256: String,
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
    /// Linear kinds: one row of weights per logit, each as long as `features`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coefficients: Vec<Vec<f64>>,
    /// Linear kinds: one intercept per logit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intercepts: Vec<f64>,
    /// Tree kinds: the trees and how their outputs combine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trees: Option<super::tree::TreeEnsemble>,
    /// v3: how each feature's raw value becomes model inputs (imputation, one-hot categories),
    /// one entry per feature; absent: every feature is one number, never missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<Vec<super::encoding::Column>>,
    /// Present when the model was trained with `--standardize`: model inputs (after
    /// `preprocessing`) are centred and scaled by it before the weights apply. Clients always
    /// send raw values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaler: Option<Scaler>,
    /// A binary model's decision threshold (`limen train --threshold`): the label is the
    /// positive class when its probability is at least this, else the negative one. The
    /// probabilities do not depend on it. Absent: the more probable class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
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
    /// How each feature's raw value becomes model inputs (imputed values, categories).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<&'a [super::encoding::Column]>,
    pub label_column: &'a str,
    pub classes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
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
    #[error(
        "model.json has {found}; this limen reads \"limen.model/v1\", {FORMAT:?} and {FORMAT_V3:?}"
    )]
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
        // Digested as it will be read: streamed from its own JSON, never a JSON tree.
        let compact = serde_json::to_vec(self).expect(WHY);
        let checksum = super::checksum::digest(&compact).expect(WHY).actual;
        drop(compact);
        let signed = Signed {
            artifact: self,
            checksum,
        };
        let mut out = serde_json::to_vec_pretty(&signed).expect(WHY);
        out.push(b'\n');
        out
    }
}

/// Signs a `model.json` value in place: sets its `checksum` to that of its content, as if limen
/// had written it (tests forge artifacts that pass the checksum to reach the checks behind it).
#[cfg(test)]
pub fn sign(value: &mut serde_json::Value) {
    let checksum = super::checksum::tests::checksum_of(value);
    if let Some(object) = value.as_object_mut() {
        object.insert("checksum".to_owned(), serde_json::Value::String(checksum));
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
        if feature
            .mean_abs_contribution
            .is_some_and(|v| !v.is_finite() || v < 0.0)
        {
            return Err(at("its mean |contribution| must be a finite number ≥ 0"));
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

/// Reads a `model.json`: valid JSON, its checksum, a format this build reads, and the schema.
/// The file is parsed twice, never into a JSON tree: once streamed into its checksum
/// ([`super::checksum`]), once into the typed artifact.
pub fn parse(bytes: &[u8]) -> Result<ModelArtifact, ModelError> {
    let digest = super::checksum::digest(bytes).map_err(ModelError::Json)?;
    let expected = digest.stated.ok_or(ModelError::MissingChecksum)?;
    if expected != digest.actual {
        return Err(ModelError::ChecksumMismatch {
            actual: digest.actual,
        });
    }
    if let Some(found) = digest.format {
        if !READABLE_FORMATS.contains(&found.as_str()) {
            return Err(ModelError::UnsupportedFormat {
                found: describe_format(&found),
            });
        }
    }
    serde_json::from_slice(bytes).map_err(|e| schema_error(&e))
}

/// The checks every kind shares: a readable format, at least one feature (at most
/// [`MAX_FEATURES`]) and two classes, no name twice, and every feature's statistics, drift
/// reference and training report consistent with the model.
pub fn check_common(artifact: &ModelArtifact) -> Result<(), ModelError> {
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
    if let Some(t) = artifact.threshold {
        if !(t > 0.0 && t < 1.0) {
            return schema("a threshold outside (0, 1)".into());
        }
        if n_classes != 2 || artifact.positive_class.is_none() {
            return schema("a threshold on a model that is not binary".into());
        }
    }
    if artifact.preprocessing.is_some() && artifact.format != FORMAT_V3 {
        return schema(format!("\"preprocessing\" needs format {FORMAT_V3:?}"));
    }
    check_features(&artifact.features)?;
    check_metrics(&artifact.metrics, &artifact.classes)
}
