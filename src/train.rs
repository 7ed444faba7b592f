//! Fitting: a logistic regression ([`crate::logistic`]: linfa-logistic's objective and solver,
//! with class weights) on a [`Dataset`] (optionally standardized), with the solver's own record
//! of whether it converged, or a random forest ([`crate::forest`]); stratified k-fold
//! cross-validation, and the resulting [`ModelArtifact`]. Pure computation: writing the artifact
//! is the store's job.

use ndarray::{Array2, ArrayView2};

use crate::data::Dataset;
use crate::evaluate::{self, Evaluation, Tally};
use crate::forest::{self, ForestError};
use crate::holdout::Split;
use crate::logistic::{self, FitError, Indicators, Problem};
use crate::model::tree::TreeEnsemble;
use crate::model::{
    ClassWeight, Column, Feature, ForestParams, Hyperparameters, LogTraining, Metrics, Model,
    ModelArtifact, ModelKind, Provenance, Reference, Scaler, FORMAT, FORMAT_V3,
};
use crate::preprocess::{self, PrepError, PrepParams};

/// The linfa version limen is built against, recorded in every artifact's provenance.
pub const LINFA_VERSION: &str = "0.8.1";

/// What the model learns to predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Objective {
    /// `positive` against the other class of a two-valued label column (the classes keep their
    /// names), or against all the others of a longer one (the reference example: virginica
    /// against the rest; the negative class is then `not_<positive>`).
    OneVsRest { positive: String },
    /// Every class in the label column, with a softmax over them.
    Multiclass,
    /// As the labels are written: two values make a binary model whose positive class is the
    /// second in sorted order (`no`/`yes` → yes; `0`/`1` → 1); more make a multinomial one.
    Auto,
}

impl Objective {
    /// The objective a fit on `present` (the sorted distinct labels) carries out.
    fn resolve(&self, present: &[String]) -> Objective {
        match (self, present) {
            (Objective::Auto, [_, positive]) => Objective::OneVsRest {
                positive: positive.clone(),
            },
            (Objective::Auto, _) => Objective::Multiclass,
            (other, _) => other.clone(),
        }
    }
}

/// Checked hyperparameters; build them with [`TrainParams::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainParams {
    objective: Objective,
    alpha: f64,
    max_iter: u64,
    gradient_tolerance: f64,
    cv_folds: usize,
    standardize: bool,
    /// A random forest instead of a logistic regression (`--kind random-forest`).
    forest: Option<ForestParams>,
    /// A binary model's decision threshold (`--threshold`).
    threshold: Option<f64>,
    /// Per-class row weights in the fit (`--class-weight`).
    class_weight: Option<ClassWeight>,
    /// How preprocessing is fitted when the table needs it (text, missing cells).
    prep: PrepParams,
    /// Fit preprocessing even on a table of complete numbers (`--impute` given), so the model
    /// imputes missing values it is sent.
    always_prep: bool,
    /// The cells read as missing, when not the defaults: recorded for the gate.
    missing_values: Option<Vec<String>>,
}

/// Why a model could not be trained.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid hyperparameter: {0}")]
    InvalidParams(String),
    #[error("class {positive:?} does not occur in column {column:?}; the classes present are: {present}")]
    UnknownTarget {
        positive: String,
        column: String,
        present: String,
    },
    #[error("column {column:?} holds a single class ({present}); a classifier needs at least two")]
    SingleClass { column: String, present: String },
    #[error("cannot run {folds}-fold cross-validation: class {class:?} has only {count} rows; lower --cv-folds (0 turns it off)")]
    TooFewForCv {
        folds: usize,
        class: String,
        count: usize,
    },
    #[error("fitting failed")]
    Fit(#[from] FitError),
    #[error("fitting the forest failed")]
    Forest(#[from] ForestError),
    #[error(transparent)]
    Prep(#[from] PrepError),
    #[error("the fitted model is unusable: {0}")]
    Unusable(String),
}

impl TrainParams {
    /// L2 strength of scikit-learn's `LogisticRegression()` (C = 1 / alpha = 1).
    pub const DEFAULT_ALPHA: f64 = 1.0;
    /// L-BFGS iterations, as scikit-learn's default.
    pub const DEFAULT_MAX_ITER: u64 = 100;
    /// Gradient-norm tolerance at which L-BFGS stops, as scikit-learn's default.
    pub const DEFAULT_GRADIENT_TOLERANCE: f64 = 1e-4;
    /// Folds of stratified cross-validation recorded in the metrics.
    pub const DEFAULT_CV_FOLDS: usize = 5;

    /// The default hyperparameters for `objective`.
    pub fn defaults(objective: Objective) -> Result<Self, TrainError> {
        Self::new(
            objective,
            Self::DEFAULT_ALPHA,
            Self::DEFAULT_MAX_ITER,
            Self::DEFAULT_GRADIENT_TOLERANCE,
            Self::DEFAULT_CV_FOLDS,
        )
    }

    /// Checks the hyperparameters: `alpha` finite and ≥ 0, `max_iter` ≥ 1, a positive finite
    /// tolerance, and `cv_folds` 0 (off) or ≥ 2.
    pub fn new(
        objective: Objective,
        alpha: f64,
        max_iter: u64,
        gradient_tolerance: f64,
        cv_folds: usize,
    ) -> Result<Self, TrainError> {
        let bad = |m: &str| Err(TrainError::InvalidParams(m.to_owned()));
        if !alpha.is_finite() || alpha < 0.0 {
            return bad("--alpha must be a finite number ≥ 0");
        }
        if max_iter == 0 {
            return bad("--max-iter must be at least 1");
        }
        if !gradient_tolerance.is_finite() || gradient_tolerance <= 0.0 {
            return bad("the gradient tolerance must be a finite number > 0");
        }
        if cv_folds == 1 {
            return bad("--cv-folds must be 0 (no cross-validation) or at least 2");
        }
        if let Objective::OneVsRest { positive } = &objective {
            if positive.is_empty() {
                return bad("--target must name a class");
            }
        }
        Ok(Self {
            objective,
            alpha,
            max_iter,
            gradient_tolerance,
            cv_folds,
            standardize: false,
            forest: None,
            threshold: None,
            class_weight: None,
            prep: PrepParams::default(),
            always_prep: false,
            missing_values: None,
        })
    }

    /// The same parameters with preprocessing fitted as `prep` says; `always` fits it even on
    /// a table of complete numbers (`--impute` given). `missing_values`: the cells read as
    /// missing, when not the defaults.
    pub fn with_preprocessing(
        mut self,
        prep: PrepParams,
        always: bool,
        missing_values: Option<Vec<String>>,
    ) -> Self {
        self.prep = prep;
        self.always_prep = always;
        self.missing_values = missing_values;
        self
    }

    /// Whether a fit on `data` carries preprocessing: a logistic fit on a table with text or
    /// missing cells, or with `--impute` given.
    fn preprocesses(&self, data: &Dataset) -> bool {
        self.forest.is_none() && (self.always_prep || data.needs_preprocessing())
    }

    /// The same parameters, fitting on standardized features (`--standardize`).
    pub fn standardized(mut self, standardize: bool) -> Self {
        self.standardize = standardize;
        self
    }

    /// A random forest with `forest`'s hyperparameters instead of a logistic regression (the
    /// regression's own parameters are then unused). Refused with `--standardize`: a tree's
    /// splits do not depend on a feature's scale, so scaling would only change its thresholds.
    pub fn random_forest(mut self, forest: ForestParams) -> Result<Self, TrainError> {
        if self.standardize {
            return Err(TrainError::InvalidParams(
                "--standardize is for logistic models; a random forest's splits do not depend on a feature's scale, leave it out".into(),
            ));
        }
        if self.class_weight.is_some() {
            return Err(TrainError::InvalidParams(
                "--class-weight weights a logistic fit's rows; limen's random forests take no row weights: leave it out, or set --threshold to trade precision for recall".into(),
            ));
        }
        self.forest = Some(forest);
        Ok(self)
    }

    /// Whether this fits a random forest.
    pub fn is_forest(&self) -> bool {
        self.forest.is_some()
    }

    pub fn max_iter(&self) -> u64 {
        self.max_iter
    }

    pub fn objective(&self) -> &Objective {
        &self.objective
    }

    /// The same parameters with a decision threshold for a binary model's labels: the positive
    /// class when its probability is at least `threshold`, which must lie in (0, 1).
    pub fn with_threshold(mut self, threshold: Option<f64>) -> Result<Self, TrainError> {
        if let Some(t) = threshold {
            if !(t > 0.0 && t < 1.0) {
                return Err(TrainError::InvalidParams(format!(
                    "--threshold must lie between 0 and 1 (a probability of the positive class), got {t}"
                )));
            }
        }
        self.threshold = threshold;
        Ok(self)
    }

    /// The same parameters weighting each row by its class as `class_weight` says (`None`: all
    /// alike).
    pub fn with_class_weight(mut self, class_weight: Option<ClassWeight>) -> Self {
        self.class_weight = class_weight;
        self
    }

    /// The same parameters learning `objective` instead.
    pub fn with_objective(mut self, objective: Objective) -> Self {
        self.objective = objective;
        self
    }

    fn hyperparameters(&self, preprocessed: bool) -> Hyperparameters {
        Hyperparameters {
            alpha: self.alpha,
            max_iter: self.max_iter,
            gradient_tolerance: self.gradient_tolerance,
            standardize: self.standardize,
            class_weight: self.class_weight,
            impute: preprocessed.then_some(self.prep.impute),
            min_category_count: preprocessed.then_some(self.prep.min_category_count),
            missing_values: self.missing_values.clone(),
        }
    }
}

/// The learned weights, in limen's orientation (binary: log-odds of the positive class).
#[derive(Debug, Clone, PartialEq)]
struct Weights {
    coefficients: Vec<Vec<f64>>,
    intercepts: Vec<f64>,
}

/// Weights and what the solver did to find them.
#[derive(Debug, Clone, PartialEq)]
struct Fitted {
    weights: Weights,
    converged: bool,
    iterations: u64,
    gradient_norm: f64,
}

/// What a fit learned.
#[derive(Debug, Clone)]
enum Learned {
    Linear {
        weights: Weights,
        scaler: Option<Scaler>,
        preprocessing: Option<Vec<Column>>,
    },
    Forest(TreeEnsemble),
}

/// A fitted model with its metrics, not yet given a name and version.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    kind: ModelKind,
    classes: Vec<String>,
    positive_class: Option<String>,
    learned: Learned,
    features: Vec<Feature>,
    label_column: String,
    threshold: Option<f64>,
    metrics: Metrics,
    provenance: Provenance,
}

impl TrainedModel {
    /// The artifact to publish as `name` version `version`, created at `created_at` (RFC 3339).
    pub fn artifact(&self, name: &str, version: u64, created_at: &str) -> ModelArtifact {
        let (coefficients, intercepts, scaler, trees, preprocessing) = match &self.learned {
            Learned::Linear {
                weights,
                scaler,
                preprocessing,
            } => (
                weights.coefficients.clone(),
                weights.intercepts.clone(),
                scaler.clone(),
                None,
                preprocessing.clone(),
            ),
            Learned::Forest(ensemble) => {
                (Vec::new(), Vec::new(), None, Some(ensemble.clone()), None)
            }
        };
        let format = if preprocessing.is_some() {
            FORMAT_V3
        } else {
            FORMAT
        };
        ModelArtifact {
            format: format.to_owned(),
            name: name.to_owned(),
            version,
            created_at: created_at.to_owned(),
            kind: self.kind,
            features: self.features.clone(),
            label_column: self.label_column.clone(),
            classes: self.classes.clone(),
            positive_class: self.positive_class.clone(),
            coefficients,
            intercepts,
            trees,
            preprocessing,
            scaler,
            threshold: self.threshold,
            metrics: self.metrics.clone(),
            provenance: self.provenance.clone(),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Records that the rows came from the inference log, joined as `log` says.
    pub fn set_log(&mut self, log: Option<LogTraining>) {
        self.provenance.log = log;
    }
}

/// Class index per row, and the class names (binary: `[<the other class>, <positive>]` for a
/// two-valued column, else `[not_<positive>, <positive>]`).
fn encode_labels(
    data: &Dataset,
    objective: &Objective,
) -> Result<(Vec<String>, Vec<usize>), TrainError> {
    let present = data.classes();
    let objective = &objective.resolve(&present);
    if let Objective::OneVsRest { positive } = objective {
        if !present.contains(positive) {
            return Err(TrainError::UnknownTarget {
                positive: positive.clone(),
                column: data.label_column.clone(),
                present: present.join(", "),
            });
        }
    }
    if present.len() < 2 {
        return Err(TrainError::SingleClass {
            column: data.label_column.clone(),
            present: present.join(", "),
        });
    }
    Ok(match objective {
        Objective::OneVsRest { positive } => {
            let y = data
                .labels
                .iter()
                .map(|&l| usize::from(data.label_names[l as usize] == *positive))
                .collect();
            let negative = match present.as_slice() {
                [a, b] => (if a == positive { b } else { a }).clone(),
                _ => format!("not_{positive}"),
            };
            (vec![negative, positive.clone()], y)
        }
        Objective::Multiclass | Objective::Auto => {
            let y = data
                .labels
                .iter()
                .map(|&l| {
                    present
                        .binary_search(&data.label_names[l as usize])
                        .unwrap_or_default()
                })
                .collect();
            (present, y)
        }
    })
}

/// Fits on `x` (and `indicators` after its columns) / `y` (class indices `0..n_classes`): the weights, in limen's orientation (binary:
/// the log-odds of class 1, the positive), and what the solver did. One solver run.
fn fit(
    params: &TrainParams,
    x: &ArrayView2<f64>,
    indicators: Option<Indicators<'_>>,
    y: &[usize],
    n_classes: usize,
) -> Result<Fitted, TrainError> {
    let weights = params
        .class_weight
        .map(|ClassWeight::Balanced| logistic::balanced_weights(y, n_classes));
    let mut problem = Problem::new(x.view(), y, n_classes, params.alpha, weights.as_deref())?;
    if let Some(indicators) = indicators {
        problem = problem.with_indicators(indicators)?;
    }
    let fit = problem.fit(params.max_iter, params.gradient_tolerance)?;
    Ok(Fitted {
        weights: Weights {
            coefficients: fit.coefficients,
            intercepts: fit.intercepts,
        },
        converged: fit.converged,
        iterations: fit.iterations,
        gradient_norm: fit.gradient_norm,
    })
}

/// scikit-learn's `StandardScaler` fitted on `x`: column means and population standard
/// deviations (ddof 0), 1 where a column is constant.
fn fit_scaler(x: &Array2<f64>) -> Scaler {
    let n = x.nrows().max(1) as f64;
    let mut mean = Vec::with_capacity(x.ncols());
    let mut scale = Vec::with_capacity(x.ncols());
    for column in x.columns() {
        let m = column.sum() / n;
        let var = column.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
        let s = var.sqrt();
        mean.push(m);
        scale.push(if s > 0.0 && s.is_finite() { s } else { 1.0 });
    }
    Scaler { mean, scale }
}

/// `x` centred and scaled column by column.
fn standardize(x: &Array2<f64>, scaler: &Scaler) -> Array2<f64> {
    let mut out = x.clone();
    for mut row in out.rows_mut() {
        for ((v, m), s) in row.iter_mut().zip(&scaler.mean).zip(&scaler.scale) {
            *v = (*v - m) / s;
        }
    }
    out
}

/// Fits a logistic model on `data` as `params` say: its preprocessing fitted on these rows
/// when the table needs it, then standardized if asked (the scaler fitted on these rows only,
/// on the numbers alone, as a scikit-learn pipeline inside cross-validation does).
fn fit_on(
    data: &Dataset,
    params: &TrainParams,
    y: &[usize],
    n_classes: usize,
) -> Result<(Fitted, Learned), TrainError> {
    if !params.preprocesses(data) {
        let (fitted, scaler) = if params.standardize {
            let scaler = fit_scaler(&data.x);
            let x = standardize(&data.x, &scaler);
            (fit(params, &x.view(), None, y, n_classes)?, Some(scaler))
        } else {
            (fit(params, &data.x.view(), None, y, n_classes)?, None)
        };
        let learned = Learned::Linear {
            weights: fitted.weights.clone(),
            scaler,
            preprocessing: None,
        };
        return Ok((fitted, learned));
    }
    let columns = preprocess::fit(data, &params.prep)?;
    let recoded =
        preprocess::recode(data, &columns).map_err(|e| TrainError::Unusable(e.to_string()))?;
    let mut st = preprocess::structured(&recoded, &columns);
    drop(recoded);
    let dense_scaler = params.standardize.then(|| fit_scaler(&st.dense));
    // Taken out of `st` (whose indicators and layout are still read), not copied.
    let unscaled = std::mem::replace(&mut st.dense, Array2::zeros((0, 0)));
    let dense = match &dense_scaler {
        Some(scaler) => standardize(&unscaled, scaler),
        None => unscaled,
    };
    let indicators = (st.groups > 0).then_some(Indicators {
        set: &st.set,
        groups: st.groups,
        width: st.width,
    });
    let mut fitted = fit(params, &dense.view(), indicators, y, n_classes)?;
    // Back from the fit's layout (numbers, then indicators) to the model's inputs in feature
    // order.
    for row in &mut fitted.weights.coefficients {
        *row = st.layout.iter().map(|&p| row[p]).collect();
    }
    let scaler = dense_scaler.map(|d| {
        let (mut mean, mut scale) = (Vec::new(), Vec::new());
        for (&p, &number) in st.layout.iter().zip(&st.numeric) {
            let (m, s) = if number {
                (d.mean[p], d.scale[p])
            } else {
                (0.0, 1.0)
            };
            mean.push(m);
            scale.push(s);
        }
        Scaler { mean, scale }
    });
    let learned = Learned::Linear {
        weights: fitted.weights.clone(),
        scaler,
        preprocessing: Some(columns),
    };
    Ok((fitted, learned))
}

/// Row indices of each of `k` stratified folds, as scikit-learn's `StratifiedKFold` without
/// shuffling: every class's rows, in file order, are cut into `k` contiguous, near-equal runs.
pub fn stratified_folds(y: &[usize], n_classes: usize, k: usize) -> Vec<Vec<usize>> {
    let mut folds = vec![Vec::new(); k];
    for class in 0..n_classes {
        let rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        let (base, extra) = (rows.len() / k, rows.len() % k);
        let mut start = 0;
        for (f, fold) in folds.iter_mut().enumerate() {
            let len = base + usize::from(f < extra);
            fold.extend_from_slice(&rows[start..start + len]);
            start += len;
        }
    }
    for fold in &mut folds {
        fold.sort_unstable();
    }
    folds
}

/// Checks that `data`'s labels suit `params` (the positive class is present, there are two
/// classes at least) before anything is split or fitted, so that the error names the labels.
pub fn check_labels(data: &Dataset, params: &TrainParams) -> Result<(), TrainError> {
    encode_labels(data, &params.objective).map(drop)
}

/// Fits on every row of `data`, measures training and cross-validated quality.
pub fn train(data: &Dataset, params: &TrainParams) -> Result<TrainedModel, TrainError> {
    fit_and_measure(data, params)
}

/// Fits on the rows of `data` that `split` does not hold out, measures training and
/// cross-validated quality on them and quality on the held-out rows, and records the split.
/// `None` fits on every row. The fit, its feature statistics and drift reference, and the
/// cross-validation never see a held-out row.
pub fn train_holding_out(
    data: Dataset,
    params: &TrainParams,
    split: Option<&Split>,
) -> Result<TrainedModel, TrainError> {
    let Some(split) = split else {
        return fit_and_measure(&data, params);
    };
    let rows = data.rows();
    // The fit's rows are moved up inside the table's own buffer: no second copy of it.
    let (fitted, held_out) = data.split_off(&split.held_out);
    let mut trained = fit_and_measure(&fitted, params)?;
    drop(fitted);
    let eval = trained.evaluate(&held_out)?;
    trained.metrics.holdout_accuracy = Some(eval.accuracy);
    trained.metrics.holdout = Some(eval.report);
    trained.provenance.rows = rows;
    trained.provenance.holdout = Some(split.record.clone());
    Ok(trained)
}

fn fit_and_measure(data: &Dataset, params: &TrainParams) -> Result<TrainedModel, TrainError> {
    let params = &params
        .clone()
        .with_objective(params.objective.resolve(&data.classes()));
    let (classes, y) = encode_labels(data, &params.objective)?;
    if let (Some(_), Objective::Multiclass) = (params.threshold, &params.objective) {
        return Err(TrainError::InvalidParams(format!(
            "--threshold is for binary models, and this one learns {} classes: leave it out, or name the positive class with --target",
            classes.len()
        )));
    }
    let folds = if params.cv_folds >= 2 {
        check_folds(params.cv_folds, &classes, &y)?;
        stratified_folds(&y, classes.len(), params.cv_folds)
    } else {
        Vec::new()
    };
    // The final fit and one per fold, independent of each other: run across the cores. Each
    // fold's fit holds its own copy of its rows, so memory peaks at the table plus one fold
    // per core.
    let mut fits = in_parallel(folds.len() + 1, |job| match job.checked_sub(1) {
        None => fit_learned(data, params, &y, classes.len()),
        Some(f) => {
            let train_rows = crate::data::complement_rows(y.len(), &folds[f]);
            let train_part = data.subset(&train_rows);
            let y_train: Vec<usize> = train_rows.iter().map(|&i| y[i]).collect();
            fit_learned(&train_part, params, &y_train, classes.len())
        }
    })
    .into_iter();
    // A logistic fit's convergence record; a forest has none (nor have the folds': only the
    // final fit's is recorded).
    let (fitted, learned) = fits
        .next()
        .unwrap_or_else(|| Err(TrainError::InvalidParams("no fit ran".into())))?;
    let fold_fits = fits
        .map(|fit| fit.map(|(_, learned)| learned))
        .collect::<Result<Vec<_>, _>>()?;
    let cv = if folds.is_empty() {
        None
    } else {
        Some(cross_validate(data, params, &classes, &folds, fold_fits)?)
    };
    // The rows in the model's own codes: what its statistics and evaluation read.
    let recoded = match &learned {
        Learned::Linear {
            preprocessing: Some(columns),
            ..
        } => Some(
            preprocess::recode(data, columns).map_err(|e| TrainError::Unusable(e.to_string()))?,
        ),
        _ => None,
    };
    let data = recoded.as_ref().unwrap_or(data);
    let mut trained = TrainedModel::assemble(data, params, classes, learned);
    // The drift reference of each column of numbers, over its present values (only the final
    // model needs it, not the folds'); a category's is its preprocessing's shares.
    for ((feature, column), vocab) in trained
        .features
        .iter_mut()
        .zip(data.x.columns())
        .zip(&data.vocab)
    {
        if vocab.is_none() {
            let present = column.iter().filter(|v| !v.is_nan());
            feature.reference = Some(Reference::of(present, &feature.stats));
        }
    }
    let eval = trained.evaluate(data)?;
    if matches!(trained.learned, Learned::Forest(_)) {
        let model = trained.model()?;
        let importance = evaluate::mean_abs_contributions(&model, data)
            .map_err(|e| TrainError::Unusable(e.to_string()))?;
        for (feature, v) in trained.features.iter_mut().zip(importance) {
            feature.mean_abs_contribution = Some(v);
        }
    }
    trained.metrics = Metrics {
        train_accuracy: eval.accuracy,
        train_log_loss: eval.log_loss,
        cv_accuracy: cv.as_ref().map(|(accuracy, _)| *accuracy),
        cv_folds: params.cv_folds,
        converged: fitted.as_ref().map(|f| f.converged),
        iterations: fitted.as_ref().map(|f| f.iterations),
        gradient_norm: fitted.as_ref().map(|f| f.gradient_norm),
        train: Some(eval.report),
        cv: cv.map(|(_, held_out)| held_out.report),
        holdout_accuracy: None,
        holdout: None,
    };
    Ok(trained)
}

impl TrainedModel {
    fn assemble(
        data: &Dataset,
        params: &TrainParams,
        classes: Vec<String>,
        learned: Learned,
    ) -> Self {
        let (kind, positive_class) = match &params.objective {
            Objective::OneVsRest { positive } => {
                (ModelKind::BinaryLogistic, Some(positive.clone()))
            }
            Objective::Multiclass | Objective::Auto => (ModelKind::MultinomialLogistic, None),
        };
        let kind = match learned {
            Learned::Linear { .. } => kind,
            Learned::Forest(_) => ModelKind::TreeEnsemble,
        };
        let preprocessed = matches!(
            learned,
            Learned::Linear {
                preprocessing: Some(_),
                ..
            }
        );
        let features = data
            .feature_names
            .iter()
            .zip(data.feature_stats())
            .map(|(name, stats)| Feature {
                name: name.clone(),
                stats,
                reference: None,
                mean_abs_contribution: None,
            })
            .collect();
        Self {
            kind,
            classes,
            positive_class,
            learned,
            features,
            label_column: data.label_column.clone(),
            threshold: params.threshold,
            metrics: Metrics {
                cv_folds: params.cv_folds,
                ..Metrics::default()
            },
            provenance: Provenance {
                data_path: data.path.display().to_string(),
                data_sha256: data.sha256.clone(),
                rows: data.rows(),
                hyperparameters: params
                    .forest
                    .is_none()
                    .then(|| params.hyperparameters(preprocessed)),
                trainer: format!("limen {}", env!("CARGO_PKG_VERSION")),
                linfa_version: LINFA_VERSION.to_owned(),
                imported: None,
                forest: params.forest.clone(),
                holdout: None,
                log: None,
            },
        }
    }

    /// The model as the server will run it.
    fn model(&self) -> Result<Model, TrainError> {
        Model::new(self.artifact("unpublished", 1, ""))
            .map_err(|e| TrainError::Unusable(e.to_string()))
    }

    /// Scores `data` with these weights through the same [`Model`] code the server runs.
    fn evaluate(&self, data: &Dataset) -> Result<Evaluation, TrainError> {
        evaluate::evaluate(&self.model()?, data).map_err(|e| TrainError::Unusable(e.to_string()))
    }
}

/// Refuses `k`-fold cross-validation when a class has fewer than `k` rows.
fn check_folds(k: usize, classes: &[String], y: &[usize]) -> Result<(), TrainError> {
    for (class, name) in classes.iter().enumerate() {
        let count = y.iter().filter(|&&c| c == class).count();
        if count < k {
            return Err(TrainError::TooFewForCv {
                folds: k,
                class: name.clone(),
                count,
            });
        }
    }
    Ok(())
}

/// Fits the model `params` describe on `data`: a logistic regression (with its convergence
/// record) or a random forest.
fn fit_learned(
    data: &Dataset,
    params: &TrainParams,
    y: &[usize],
    n_classes: usize,
) -> Result<(Option<Fitted>, Learned), TrainError> {
    match &params.forest {
        None => fit_on(data, params, y, n_classes).map(|(fitted, learned)| (Some(fitted), learned)),
        Some(_) if data.needs_preprocessing() => Err(TrainError::InvalidParams(
            "limen's random forests take complete numbers only, and this table has text or missing cells: train a logistic model (leave out --kind), or fill them in first".into(),
        )),
        Some(forest) => {
            let ensemble = forest::fit(data.x.view(), y, n_classes, forest)?;
            Ok((None, Learned::Forest(ensemble)))
        }
    }
}

/// `job(0)`, …, `job(jobs − 1)` on up to as many threads as the machine has cores, their
/// results in job order.
fn in_parallel<T: Send>(jobs: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs);
    if threads <= 1 {
        return (0..jobs).map(job).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if j >= jobs {
                            return mine;
                        }
                        mine.push((j, job(j)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    done.sort_by_key(|(j, _)| *j);
    done.into_iter().map(|(_, t)| t).collect()
}

/// Mean held-out accuracy over the stratified `folds` (scikit-learn's `cross_val_score`
/// mean), and the evaluation of every row by the fold model that did not see it; `learned`
/// holds each fold's fit, on the rows outside it.
fn cross_validate(
    data: &Dataset,
    params: &TrainParams,
    classes: &[String],
    folds: &[Vec<usize>],
    learned: Vec<Learned>,
) -> Result<(f64, Evaluation), TrainError> {
    let mut total = 0.0;
    let mut held_out: Option<Tally> = None;
    for (test_rows, learned) in folds.iter().zip(learned) {
        let fold_model = TrainedModel::assemble(data, params, classes.to_vec(), learned).model()?;
        let tally = held_out.get_or_insert_with(|| Tally::new(&fold_model));
        let mut fold = Tally::new(&fold_model);
        let test_part = data.subset(test_rows);
        let unusable = |e: crate::model::PredictError| TrainError::Unusable(e.to_string());
        evaluate::score_into(&fold_model, &test_part, &mut fold).map_err(unusable)?;
        evaluate::score_into(&fold_model, &test_part, tally).map_err(unusable)?;
        total += fold.finish().accuracy;
    }
    let held_out = held_out.map(|t| t.finish()).ok_or_else(|| {
        TrainError::InvalidParams("cross-validation needs at least two folds".into())
    })?;
    Ok((total / folds.len() as f64, held_out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn iris(features: &[&str]) -> Dataset {
        let features: Vec<String> = features.iter().map(|s| s.to_string()).collect();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/iris.csv");
        Dataset::load(&path, &features, "species").unwrap()
    }

    fn binary_params() -> TrainParams {
        let objective = Objective::OneVsRest {
            positive: "virginica".into(),
        };
        TrainParams::new(objective, 1.0, 100, 1e-4, 5).unwrap()
    }

    #[test]
    fn binary_fit_reaches_scikit_learns_optimum() {
        let trained = train(&iris(&["petal_width"]), &binary_params()).unwrap();
        let a = trained.artifact("iris", 1, "t");
        let (w, b) = (a.coefficients[0][0], a.intercepts[0]);
        // scikit-learn's exact C=1 optimum (tol=1e-12): 4.33308, -7.19470.
        assert!((w - 4.333_079).abs() < 2e-3, "coef {w}");
        assert!((b + 7.194_701).abs() < 2e-3, "intercept {b}");
        assert_eq!(a.classes, vec!["not_virginica", "virginica"]);
        assert_eq!(a.metrics.train_accuracy, 0.96);
        assert!(a.metrics.cv_accuracy.unwrap() > 0.9);
        assert!(a.metrics.train_log_loss > 0.0 && a.metrics.train_log_loss < 0.2);
    }

    #[test]
    fn multiclass_fit_on_four_features_is_accurate() {
        let data = iris(&["sepal_length", "sepal_width", "petal_length", "petal_width"]);
        let params = TrainParams::new(Objective::Multiclass, 1.0, 100, 1e-4, 5).unwrap();
        let a = train(&data, &params)
            .unwrap()
            .artifact("iris-species", 1, "t");
        assert_eq!(a.kind, ModelKind::MultinomialLogistic);
        assert_eq!(a.classes, vec!["setosa", "versicolor", "virginica"]);
        assert!(a.metrics.train_accuracy >= 0.97, "{:?}", a.metrics);
    }

    #[test]
    fn stratified_folds_partition_every_class_evenly() {
        let y: Vec<usize> = (0..23).map(|i| usize::from(i >= 10)).collect();
        let folds = stratified_folds(&y, 2, 5);
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, (0..23).collect::<Vec<_>>());
        for fold in &folds {
            let zeros = fold.iter().filter(|&&i| y[i] == 0).count();
            assert_eq!(zeros, 2);
            assert!((2..=3).contains(&(fold.len() - zeros)));
        }
    }

    #[test]
    fn an_absent_or_lone_class_is_refused_by_name() {
        let data = iris(&["petal_width"]);
        let objective = Objective::OneVsRest {
            positive: "virginca".into(),
        };
        let params = TrainParams::new(objective, 1.0, 100, 1e-4, 5).unwrap();
        let msg = train(&data, &params).unwrap_err().to_string();
        assert!(msg.contains("virginca") && msg.contains("setosa, versicolor, virginica"));

        let mut lone = data.clone();
        // Every row setosa (index 0 of the sorted labels).
        lone.labels.iter_mut().for_each(|l| *l = 0);
        let params = TrainParams::new(Objective::Multiclass, 1.0, 100, 1e-4, 0).unwrap();
        assert!(matches!(
            train(&lone, &params),
            Err(TrainError::SingleClass { .. })
        ));
    }

    #[test]
    fn cross_validation_needs_enough_rows_per_class() {
        let mut data = iris(&["petal_width"]);
        data.x = data.x.slice(ndarray::s![98..103, ..]).to_owned();
        data.labels = data.labels[98..103].to_vec();
        assert!(matches!(
            train(&data, &binary_params()),
            Err(TrainError::TooFewForCv { count: 2, .. })
        ));
    }

    #[test]
    fn a_constant_column_is_fine_standardized_or_not() {
        let text = "a,b,species\n1,5,x\n2,5,x\n3,5,y\n4,5,y\n5,5,y\n0,5,x\n";
        let features = vec!["a".to_owned(), "b".to_owned()];
        let data =
            Dataset::parse(Path::new("c.csv"), text.as_bytes(), &features, "species").unwrap();
        let scaler = fit_scaler(&data.x);
        assert_eq!(scaler.scale[1], 1.0, "a constant column keeps scale 1");
        assert_eq!(scaler.mean[1], 5.0);
        for standardize in [false, true] {
            let objective = Objective::OneVsRest {
                positive: "y".into(),
            };
            let params = TrainParams::new(objective, 1.0, 100, 1e-4, 0)
                .unwrap()
                .standardized(standardize);
            let trained = train(&data, &params).unwrap();
            let model = Model::new(trained.artifact("c", 1, "t")).unwrap();
            assert!(model.self_test().is_ok());
            assert_eq!(trained.metrics().converged, Some(true), "{standardize}");
        }
    }

    #[test]
    fn the_gradient_norm_is_zero_at_the_optimum_and_large_away_from_it() {
        let data = iris(&["petal_width"]);
        let y: Vec<usize> = data
            .labels
            .iter()
            .map(|&l| usize::from(data.label_names[l as usize] == "virginica"))
            .collect();
        // scikit-learn's exact C=1 optimum (tol=1e-12) on Iris, virginica against the rest.
        let problem = Problem::new(data.x.view(), &y, 2, 1.0, None).unwrap();
        assert!(problem.gradient_norm(&[vec![4.333_079_4]], &[-7.194_701]) < 1e-3);
        assert!(problem.gradient_norm(&[vec![1.0]], &[0.0]) > 10.0);
    }

    #[test]
    fn bad_hyperparameters_are_refused() {
        let ovr = || Objective::OneVsRest {
            positive: "x".into(),
        };
        assert!(TrainParams::new(ovr(), -1.0, 100, 1e-4, 5).is_err());
        assert!(TrainParams::new(ovr(), f64::NAN, 100, 1e-4, 5).is_err());
        assert!(TrainParams::new(ovr(), 1.0, 0, 1e-4, 5).is_err());
        assert!(TrainParams::new(ovr(), 1.0, 100, 0.0, 5).is_err());
        assert!(TrainParams::new(ovr(), 1.0, 100, 1e-4, 1).is_err());
        assert!(TrainParams::new(ovr(), 1.0, 100, 1e-4, 0).is_ok());
    }
}
