//! The command line: clap definitions (`*Args`, raw input) and their checked forms (`*Config`).
//!
//! Every flag of `train`, `validate`, `predict`'s model, `serve` and `quickstart` can also be set
//! by an environment variable `LIMEN_…`, so pipeline tasks and Kubernetes manifests configure
//! limen without rewriting commands; `--store`, `--log` and `--log-format` too. Per-invocation
//! switches (`models … --json`, `--keep`, `--dry-run`, `--temp-age`, `predict --version`) have
//! none. No I/O happens here: names and versions are parsed into checked types by clap itself.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::catalog::Catalog;
use crate::holdout::HoldoutSpec;
use crate::inference_log::LogConfig;
use crate::serve::{Limits, ServeConfig};
use crate::shadow::ShadowConfig;
use crate::store::{ModelName, VersionId};
use crate::telemetry::LogFormat;
use crate::train::{Objective, TrainParams};
use crate::validate::GateConfig;
use crate::watch::WatchMode;

/// The model every command uses unless told otherwise: the reference example's.
pub const DEFAULT_MODEL: &str = "iris";
/// The reference example's training data, relative to the working directory.
pub const DEFAULT_DATA: &str = crate::data::IRIS_PATH;
const DEFAULT_LABEL_COLUMN: &str = crate::columns::IRIS_LABEL;

/// limen: train, validate and hot-serve versioned models from a shared store.
#[derive(Debug, Parser)]
#[command(name = "limen", version, about)]
pub struct Cli {
    /// Model store folder. Falls back to $MOUNT_PATH (set by Liminal pipelines), then ./models.
    #[arg(long, global = true, env = "LIMEN_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Log format on stderr: human-readable lines, or JSON lines for CloudWatch and friends.
    #[arg(long, global = true, env = "LIMEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `limen=debug`). (`--log` is
    /// `limen drift`'s inference log folder.)
    #[arg(
        long = "log-filter",
        global = true,
        env = "LIMEN_LOG",
        default_value = "info"
    )]
    pub log_filter: String,

    /// Largest model.json read from the store, e.g. 32MiB; a larger file is refused unread.
    /// Loading a file holds about 3 bytes of memory per byte for a moment (a server reserves
    /// them from --memory-budget first, and retries a load that does not fit).
    #[arg(long, global = true, env = "LIMEN_MAX_MODEL_SIZE", default_value = "32MiB", value_parser = parse_size)]
    pub max_model_size: usize,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fit a model on a CSV file and publish it as a new candidate version.
    Train(TrainArgs),
    /// Put the candidate through the quality gate and promote it to production if it passes.
    ///
    /// Exit codes: 0 promoted (or already production), 1 a check failed (production untouched),
    /// 2 usage, I/O or a corrupt candidate.
    Validate(ValidateArgs),
    /// Score one instance with a stored model and print the JSON `/predict` would answer.
    Predict(PredictArgs),
    /// Serve /healthcheck and /predict, hot-swapping production models as the store changes.
    Serve(ServeArgs),
    /// Train and validate the Iris model if the store has no production version, then serve it
    /// on 127.0.0.1:8080 and print the curl commands to try.
    Quickstart(QuickstartArgs),
    /// Inspect and operate the store: list, show, promote, rollback, gc.
    Models(ModelsArgs),
    /// How far the inputs production saw (its inference log) have moved from the training data,
    /// per feature: the population stability index and the share out of the training range.
    ///
    /// Exit codes: 0, 1 when --max-psi is exceeded (a pipeline can retrain on it), 2 error.
    Drift(DriftArgs),
    /// Watch a new production version through the fleet's heartbeats for a window (a pipeline
    /// task after validate) and roll it back when a guardrail trips: error share, out-of-range
    /// share, live PSI, or a shift of the predicted classes against the version it replaced.
    ///
    /// Exit codes: 0 a clean window (or production moved on), 1 tripped (rolled back, the reason
    /// in the history) or too few instances to judge, 2 error.
    Watch(WatchArgs),
    /// Convert a model trained in Python (XGBoost's `save_model` JSON or UBJSON, LightGBM's
    /// `save_model` text) into limen's tree artifact, evaluate it on labelled data, and publish
    /// it as a new candidate, like `train`.
    ///
    /// Exit codes: 0 published (the version id is the last line), 2 a file or the data that
    /// cannot be used (nothing is written).
    Import(ImportArgs),
    /// Write a model's page (versions, metrics, confusion matrices, the chart, history) as one
    /// self-contained HTML file, the candidate beside production when both exist; or just the
    /// chart as SVG. For a pipeline to keep with the run that trained the model.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("file").required(true).args(["xgboost", "lightgbm"])))]
pub struct ImportArgs {
    /// Model name in the store to publish the candidate under.
    pub name: ModelName,

    /// An XGBoost model saved with `Booster.save_model("model.json")`, or as UBJSON with
    /// `("model.ubj")` (read as such when the name ends in .ubj); gbtree, binary:logistic,
    /// multi:softprob or multi:softmax.
    #[arg(long, value_name = "FILE")]
    pub xgboost: Option<PathBuf>,

    /// A LightGBM model saved with `Booster.save_model("model.txt")` (binary or multiclass).
    #[arg(long, value_name = "FILE")]
    pub lightgbm: Option<PathBuf>,

    /// Labelled data (CSV) to evaluate the model on: its feature statistics and drift
    /// references are recorded from it, as `train` does.
    #[arg(long, env = "LIMEN_DATA")]
    pub data: PathBuf,

    /// Column of --data holding the class names.
    #[arg(long, env = "LIMEN_LABEL_COLUMN", default_value = DEFAULT_LABEL_COLUMN)]
    pub label_column: String,

    /// Feature names in the model's order, when the file has none.
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,

    /// Class names in the library's class order (default: 0, 1, …).
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
}

impl From<ImportArgs> for (ModelName, crate::import::ImportConfig) {
    fn from(args: ImportArgs) -> Self {
        use crate::import::Library;
        // clap's group makes exactly one of the two present.
        let (library, file) = match (args.xgboost, args.lightgbm) {
            (Some(file), _) => (Library::Xgboost, file),
            (None, file) => (Library::Lightgbm, file.unwrap_or_default()),
        };
        (
            args.name,
            crate::import::ImportConfig {
                library,
                file,
                features: args.features,
                classes: args.classes,
                data: args.data,
                label_column: args.label_column,
            },
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// The whole page, styles inline, no external resource.
    Html,
    /// Only the chart.
    Svg,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Model to report on.
    pub name: ModelName,

    /// The version to show (beside production when it is another); defaults to the candidate
    /// beside production.
    #[arg(long)]
    pub version: Option<VersionId>,

    /// Where to write the file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Model whose production version to check.
    #[arg(env = "LIMEN_MODEL", default_value = DEFAULT_MODEL)]
    pub name: ModelName,

    /// The inference log folder (as `limen serve --inference-log`), or its copy in S3
    /// (s3://BUCKET/PREFIX: only the model's day folders since --since are read).
    #[arg(long, env = "LIMEN_INFERENCE_LOG", value_name = "DIR")]
    pub log: PathBuf,

    /// How far back to look, e.g. 24h, 7d, 90m.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub since: Duration,

    /// Fail (exit 1) when any feature's PSI is above this; 0.25 is a common "shifted" line.
    #[arg(long, env = "LIMEN_MAX_PSI")]
    pub max_psi: Option<f64>,

    /// Refuse (exit 2) with fewer logged instances than this: PSI over a handful of requests
    /// reads every empty bin as a shift.
    #[arg(long, env = "LIMEN_DRIFT_MIN_SAMPLES", default_value_t = crate::drift::DriftConfig::DEFAULT_MIN_SAMPLES)]
    pub min_samples: u64,

    /// Print JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Model whose production version to watch (a pipeline sets LIMEN_MODEL once for all its
    /// steps).
    #[arg(env = "LIMEN_MODEL", default_value = DEFAULT_MODEL)]
    pub name: ModelName,

    /// How long to watch, e.g. 10m.
    #[arg(long = "for", env = "LIMEN_WATCH_FOR", default_value = "10m", value_parser = parse_duration)]
    pub window: Duration,

    /// How often to read the fleet's heartbeats.
    #[arg(long, env = "LIMEN_WATCH_EVERY", default_value = "10s", value_parser = parse_duration)]
    pub every: Duration,

    /// Instances the version must have scored (over the fleet) before the guardrails judge it;
    /// a window that ends with fewer is inconclusive (exit 1, no rollback).
    #[arg(long, env = "LIMEN_WATCH_MIN_SAMPLES", default_value_t = crate::guardrails::WatchConfig::DEFAULT_MIN_SAMPLES)]
    pub min_samples: u64,

    /// Largest share of requests the version may fail (bad input for it, unscorable rows).
    #[arg(long, env = "LIMEN_MAX_ERROR_SHARE", default_value_t = crate::guardrails::WatchConfig::DEFAULT_MAX_ERROR_SHARE)]
    pub max_error_share: f64,

    /// Largest share of instances with a value outside the training range.
    #[arg(long, env = "LIMEN_MAX_OUT_OF_RANGE_SHARE", default_value_t = crate::guardrails::WatchConfig::DEFAULT_MAX_OUT_OF_RANGE_SHARE)]
    pub max_out_of_range_share: f64,

    /// Largest live PSI of a feature on any server with --min-samples instances.
    #[arg(long, env = "LIMEN_WATCH_MAX_PSI", default_value_t = crate::guardrails::WatchConfig::DEFAULT_MAX_PSI)]
    pub max_psi: f64,

    /// Largest change of a predicted class's share against the version it replaced.
    #[arg(long, env = "LIMEN_MAX_CLASS_SHIFT", default_value_t = crate::guardrails::WatchConfig::DEFAULT_MAX_CLASS_SHIFT)]
    pub max_class_shift: f64,

    /// Report a trip (exit 1) without rolling back.
    #[arg(long, env = "LIMEN_NO_ROLLBACK")]
    pub no_rollback: bool,

    /// Print JSON for scripts instead of text.
    #[arg(long)]
    pub json: bool,
}

impl TryFrom<WatchArgs> for crate::guardrails::WatchConfig {
    type Error = anyhow::Error;

    fn try_from(a: WatchArgs) -> anyhow::Result<Self> {
        for (flag, v) in [
            ("--max-error-share", a.max_error_share),
            ("--max-out-of-range-share", a.max_out_of_range_share),
            ("--max-class-shift", a.max_class_shift),
        ] {
            anyhow::ensure!(
                (0.0..=1.0).contains(&v),
                "{flag} must be between 0 and 1, got {v}"
            );
        }
        anyhow::ensure!(
            a.max_psi.is_finite() && a.max_psi >= 0.0,
            "--max-psi must be a number ≥ 0, got {}",
            a.max_psi
        );
        anyhow::ensure!(
            !a.every.is_zero(),
            "--every must be longer than 0s, e.g. 10s"
        );
        Ok(Self {
            model: a.name,
            window: a.window,
            every: a.every,
            min_samples: a.min_samples,
            max_error_share: a.max_error_share,
            max_out_of_range_share: a.max_out_of_range_share,
            max_psi: a.max_psi,
            max_class_shift: a.max_class_shift,
            rollback: !a.no_rollback,
        })
    }
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub action: ModelsAction,
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// One line per model: production, candidate, versions on disk, last promotion.
    List,
    /// A model's pointers, versions, metadata (features, classes, metrics) and history.
    Show {
        /// Model name.
        name: ModelName,
    },
    /// Point production at VERSION after checking its integrity (no quality gate; see validate).
    Promote {
        /// Model name.
        name: ModelName,
        /// Version id to serve.
        version: VersionId,
        #[command(flatten)]
        switch: SwitchArgs,
    },
    /// Point production back at the version it replaced, as recorded in the history.
    Rollback {
        /// Model name.
        name: ModelName,
        #[command(flatten)]
        switch: SwitchArgs,
    },
    /// Every live server of this store (from its heartbeat): what it serves, its last scan, its
    /// load errors. Exits 1 when live servers still disagree on a model's production after
    /// their poll interval.
    Fleet {
        /// Only this model.
        name: Option<ModelName>,
    },
    /// Delete old versions, never production, candidate, the version a rollback would go back
    /// to, or one promoted (or rolled back to) in the last --keep promotions and rollbacks; also
    /// remove leftovers of interrupted writes.
    Gc {
        /// Model name.
        name: ModelName,
        /// How many recent promotions and rollbacks protect the versions they name.
        #[arg(long, default_value_t = 5)]
        keep: usize,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Leftover `.publish-*`/`.pointer-*` entries younger than this may belong to a writer
        /// that is still running, and are kept.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        temp_age: Duration,
    },
}

impl Cli {
    /// The store: `--store`/`LIMEN_STORE`, else `MOUNT_PATH`, else `./models`.
    pub fn catalog(&self) -> Catalog {
        let root = self
            .store
            .clone()
            .or_else(|| {
                std::env::var_os("MOUNT_PATH")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("models"));
        Catalog::open(root).with_max_model_bytes(self.max_model_size as u64)
    }
}

#[derive(Debug, Parser)]
#[command(name = "train")]
pub struct TrainArgs {
    /// Training data: a CSV file with a header line, or a Parquet file; or, with --labels, an
    /// inference log folder (searched for .jsonl files) or a glob pattern of its files. Any of
    /// them may be in S3: s3://BUCKET/KEY, a prefix (its .csv/.parquet parts, or .jsonl files),
    /// or a glob; credentials from the AWS chain (environment, IRSA, AWS_PROFILE, instance).
    #[arg(long, env = "LIMEN_DATA", default_value = DEFAULT_DATA)]
    pub data: PathBuf,

    /// Ground truth for training on an inference log: a CSV (a path or s3://BUCKET/KEY) with a
    /// `request_id` column and the --label-column (`request_id#index` for an instance of a
    /// batch request).
    #[arg(long, env = "LIMEN_LABELS", value_name = "FILE")]
    pub labels: Option<PathBuf>,

    /// With --labels: the model whose logged requests to train on (a log folder holds every
    /// model's); defaults to --model.
    #[arg(
        long,
        env = "LIMEN_LOG_MODEL",
        value_name = "NAME",
        requires = "labels"
    )]
    pub log_model: Option<ModelName>,

    /// Model name in the store: 1-64 of a-z, 0-9, '.', '_', '-'.
    #[arg(long, env = "LIMEN_MODEL", default_value = DEFAULT_MODEL)]
    pub model: ModelName,

    /// Feature columns, comma-separated [default: every column but the label; from the
    /// inference log, the features its lines carry; the Iris table: petal_width].
    #[arg(long, env = "LIMEN_FEATURES", value_delimiter = ',')]
    pub features: Option<Vec<String>>,

    /// Column holding the class labels (`--label` works too). Required unless the table is
    /// Iris (species); from the inference log, the labels file's one column besides request_id.
    #[arg(long, alias = "label", env = "LIMEN_LABEL_COLUMN")]
    pub label_column: Option<String>,

    /// Positive class of a binary model. A label column of two values gives a binary model of
    /// those two names, positive the second in sorted order unless this names the other; of
    /// more, this one against the rest (`not_<target>`), else a multinomial model. [default on
    /// the Iris table with no --label-column: virginica]
    #[arg(long, env = "LIMEN_TARGET")]
    pub target: Option<String>,

    /// Learn every class with a multinomial (softmax) model instead of one-vs-rest.
    #[arg(long, env = "LIMEN_MULTICLASS", conflicts_with = "target")]
    pub multiclass: bool,

    /// L2 penalty strength; 1.0 equals scikit-learn's LogisticRegression() default C=1.
    #[arg(long, env = "LIMEN_ALPHA", default_value_t = TrainParams::DEFAULT_ALPHA)]
    pub alpha: f64,

    /// Maximum L-BFGS iterations.
    #[arg(long, env = "LIMEN_MAX_ITER", default_value_t = TrainParams::DEFAULT_MAX_ITER)]
    pub max_iter: u64,

    /// Gradient-norm tolerance at which L-BFGS stops.
    #[arg(long, env = "LIMEN_GRADIENT_TOLERANCE", default_value_t = TrainParams::DEFAULT_GRADIENT_TOLERANCE)]
    pub gradient_tolerance: f64,

    /// Folds of stratified cross-validation recorded in the metrics; 0 turns it off.
    #[arg(long, env = "LIMEN_CV_FOLDS", default_value_t = TrainParams::DEFAULT_CV_FOLDS)]
    pub cv_folds: usize,

    /// Centre and scale every feature (training mean, population standard deviation) before the
    /// fit, as scikit-learn's StandardScaler. The scaler is stored in the model and applied to
    /// every request, so clients still send raw values. Use it for tables with features on
    /// different scales: unscaled, the fit may stop at --max-iter far from the optimum.
    #[arg(long, env = "LIMEN_STANDARDIZE")]
    pub standardize: bool,

    /// What to fit: a logistic regression (L-BFGS, as linfa-logistic; --alpha, --max-iter,
    /// --gradient-tolerance, --standardize, --class-weight apply), or a random forest (linfa-trees; --trees,
    /// --max-depth, --max-features, --seed apply), served and explained as a tree ensemble.
    #[arg(long, env = "LIMEN_KIND", value_enum, default_value_t = TrainKind::Logistic)]
    pub kind: TrainKind,

    /// Random forest: trees to grow [default: 100].
    #[arg(long, env = "LIMEN_TREES")]
    pub trees: Option<usize>,

    /// Random forest: the deepest a tree grows [default: until its leaves are pure].
    #[arg(long, env = "LIMEN_MAX_DEPTH")]
    pub max_depth: Option<usize>,

    /// Random forest: features each tree is fitted on [default: the square root of their
    /// number, rounded up].
    #[arg(long, env = "LIMEN_MAX_FEATURES")]
    pub max_features: Option<usize>,

    /// Random forest: seed of the bootstrap and feature draws; the same data and seed give the
    /// same forest [default: 0].
    #[arg(long, env = "LIMEN_SEED")]
    pub seed: Option<u64>,

    /// Share of the rows kept out of the fit (stratified by class; by request id for an
    /// inference log): the model's hold-out metrics, and the rows `limen validate` gates on
    /// unless given --data. 0 fits on every row.
    #[arg(long, env = "LIMEN_HOLDOUT", default_value_t = crate::holdout::DEFAULT_SHARE)]
    pub holdout: f64,

    /// A binary model's decision threshold: its label is the positive class when that class's
    /// probability is at least this (0.5 is the default rule). Recorded in the model; the
    /// probabilities do not change, the labels and the gate's precision and recall do.
    #[arg(long, env = "LIMEN_THRESHOLD")]
    pub threshold: Option<f64>,

    /// Weight each row by its class in a logistic fit: `balanced` (scikit-learn's
    /// class_weight="balanced": a row of class c weighs rows / (classes × rows of c), so a rare
    /// class counts as much as a common one), or `none`.
    #[arg(long, env = "LIMEN_CLASS_WEIGHT", value_enum, default_value_t = ClassWeightArg::None)]
    pub class_weight: ClassWeightArg,

    /// Hold out the newest rows instead: those last in this column's order (numbers, or text
    /// such as ISO 8601 times), for a table whose rows are events in time.
    #[arg(long, env = "LIMEN_SPLIT_BY", value_name = "COLUMN")]
    pub split_by: Option<String>,

    /// Feature columns to read as categories even when every cell is a number (a code, a zip).
    /// A column with any cell that is not a number is one already.
    #[arg(
        long,
        env = "LIMEN_CATEGORICAL",
        value_delimiter = ',',
        value_name = "COLS"
    )]
    pub categorical: Vec<String>,

    /// Cells read as missing values, comma-separated (an empty entry: the empty cell)
    /// [default: empty, NA, N/A, NaN, nan, null, NULL, None].
    #[arg(
        long,
        env = "LIMEN_MISSING_VALUES",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub missing_values: Option<Vec<String>>,

    /// How a missing number is filled in, in training and in every request: the column's
    /// training median, mean, or zero. Given, a model imputes even when its table had no
    /// missing cell.
    #[arg(long, env = "LIMEN_IMPUTE", value_enum)]
    pub impute: Option<ImputeArg>,

    /// Categories with fewer training rows than this are folded into one "other" indicator.
    #[arg(long, env = "LIMEN_MIN_CATEGORY_COUNT", default_value_t = 1)]
    pub min_category_count: u64,

    /// The most distinct values a column of categories may have: more is refused by name (an
    /// identifier passed as a feature by mistake would make the model that wide).
    #[arg(long, env = "LIMEN_MAX_CATEGORIES", default_value_t = crate::data::DEFAULT_MAX_CATEGORIES)]
    pub max_categories: usize,
}

/// `--impute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImputeArg {
    Median,
    Mean,
    Zero,
}

/// `--class-weight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClassWeightArg {
    /// Every row weighs 1.
    None,
    /// scikit-learn's "balanced".
    Balanced,
}

/// What `limen train` fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrainKind {
    /// Logistic regression (binary one-vs-rest, or multinomial with --multiclass).
    Logistic,
    /// A random forest of decision trees (bootstrap samples, a random subset of features each).
    RandomForest,
}

/// Checked settings for `limen train`.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub data: PathBuf,
    /// Set when `data` is an inference log: the labels to join it with.
    pub labels: Option<PathBuf>,
    /// The model whose logged lines are read when `data` is an inference log.
    pub log_model: ModelName,
    pub model: ModelName,
    /// `None`: chosen from the table (see [`crate::columns`]).
    pub features: Option<Vec<String>>,
    pub label_column: Option<String>,
    pub params: TrainParams,
    /// The rows kept out of the fit.
    pub holdout: HoldoutSpec,
    /// How the table's cells are read (missing values, categories).
    pub read: crate::data::ReadOptions,
}

impl TrainConfig {
    /// What `limen train` does with no flags for `model` on `data`: on the Iris table, the
    /// reference example (petal width, virginica against the rest), the default
    /// hyperparameters and hold-out.
    pub fn reference(model: ModelName, data: PathBuf) -> anyhow::Result<Self> {
        Ok(Self {
            data,
            labels: None,
            log_model: model.clone(),
            model,
            features: None,
            label_column: None,
            params: TrainParams::defaults(Objective::Auto)?,
            holdout: HoldoutSpec::new(crate::holdout::DEFAULT_SHARE, None)?,
            read: crate::data::ReadOptions::default(),
        })
    }
}

impl TryFrom<TrainArgs> for TrainConfig {
    type Error = anyhow::Error;

    fn try_from(args: TrainArgs) -> anyhow::Result<Self> {
        // --labels joins an inference log with ground truth: a CSV in --data (the default
        // one, say) is not that log, and the error should say which flag to change.
        if let Some(labels) = &args.labels {
            anyhow::ensure!(
                !args.data.is_file()
                    || args.data.extension().is_some_and(|e| e == "jsonl"),
                "--labels {} trains from an inference log, but --data {} is a file, not the log: pass \
                 --data DIR (the folder `limen serve --inference-log DIR` writes) or a glob of its \
                 .jsonl files; to train on a labelled CSV, drop --labels",
                labels.display(),
                args.data.display()
            );
        }
        let model = args.model;
        let features = args.features.map(checked_features).transpose()?;
        let objective = match (args.multiclass, args.target) {
            (true, _) => Objective::Multiclass,
            (false, Some(positive)) => Objective::OneVsRest { positive },
            (false, None) => Objective::Auto,
        };
        let params = TrainParams::new(
            objective,
            args.alpha,
            args.max_iter,
            args.gradient_tolerance,
            args.cv_folds,
        )?
        .standardized(args.standardize)
        .with_threshold(args.threshold)?
        .with_class_weight(match args.class_weight {
            ClassWeightArg::None => None,
            ClassWeightArg::Balanced => Some(crate::model::ClassWeight::Balanced),
        });
        let params = match args.kind {
            TrainKind::Logistic => {
                let forest_only = [
                    ("--trees", args.trees.is_some()),
                    ("--max-depth", args.max_depth.is_some()),
                    ("--max-features", args.max_features.is_some()),
                    ("--seed", args.seed.is_some()),
                ];
                if let Some((flag, _)) = forest_only.iter().find(|(_, given)| *given) {
                    anyhow::bail!(
                        "{flag} is a random forest's setting; add --kind random-forest or leave it out"
                    );
                }
                params
            }
            TrainKind::RandomForest => {
                let forest = crate::forest::params(
                    args.trees.unwrap_or(crate::forest::DEFAULT_TREES),
                    args.max_depth,
                    args.max_features,
                    args.seed.unwrap_or(0),
                )
                .map_err(anyhow::Error::msg)?;
                params.random_forest(forest)?
            }
        };
        if let (Some(column), Some(_)) = (&args.split_by, &args.labels) {
            anyhow::bail!(
                "--split-by {column:?} orders a CSV's rows; rows from the inference log (--labels) are held out by request id: leave --split-by out"
            );
        }
        let holdout = HoldoutSpec::new(args.holdout, args.split_by)?;
        anyhow::ensure!(
            args.min_category_count >= 1,
            "--min-category-count must be at least 1 (1 folds no category)"
        );
        anyhow::ensure!(
            args.max_categories >= 1,
            "--max-categories must be at least 1"
        );
        let mut read = crate::data::ReadOptions {
            categorical: args
                .categorical
                .iter()
                .map(|c| c.trim().to_owned())
                .collect(),
            max_categories: args.max_categories,
            ..crate::data::ReadOptions::default()
        };
        let missing_values = args.missing_values.map(|m| {
            m.into_iter()
                .map(|v| v.trim().to_owned())
                .collect::<Vec<_>>()
        });
        if let Some(missing) = &missing_values {
            read.missing = missing.clone();
        }
        let impute = match args.impute {
            None | Some(ImputeArg::Median) => crate::model::Impute::Median,
            Some(ImputeArg::Mean) => crate::model::Impute::Mean,
            Some(ImputeArg::Zero) => crate::model::Impute::Zero,
        };
        let prep = crate::preprocess::PrepParams {
            impute,
            min_category_count: args.min_category_count,
            max_categories: args.max_categories,
        };
        if params.is_forest() && (args.impute.is_some() || !args.categorical.is_empty()) {
            anyhow::bail!(
                "--impute and --categorical are a logistic model's preprocessing; limen's random forests take complete numbers: leave them out, or leave out --kind"
            );
        }
        let params = params.with_preprocessing(prep, args.impute.is_some(), missing_values);
        Ok(Self {
            read,
            holdout,
            data: args.data,
            labels: args.labels,
            log_model: args.log_model.unwrap_or_else(|| model.clone()),
            model,
            features,
            label_column: args.label_column,
            params,
        })
    }
}

/// `--features` as given: trimmed, at least one, at most a model's worth, none twice.
fn checked_features(given: Vec<String>) -> anyhow::Result<Vec<String>> {
    let features: Vec<String> = given
        .iter()
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    anyhow::ensure!(
        !features.is_empty(),
        "--features needs at least one column name"
    );
    anyhow::ensure!(
        features.len() <= crate::model::MAX_FEATURES,
        "--features lists {} columns; a limen model takes at most {}",
        features.len(),
        crate::model::MAX_FEATURES
    );
    if let Some(dup) = features
        .iter()
        .enumerate()
        .find_map(|(i, f)| features[..i].contains(f).then_some(f))
    {
        anyhow::bail!("--features names {dup:?} twice; list each column once");
    }
    Ok(features)
}

#[derive(Debug, Parser)]
#[command(name = "validate")]
pub struct ValidateArgs {
    /// Model whose candidate to validate.
    #[arg(long, env = "LIMEN_MODEL", default_value = DEFAULT_MODEL)]
    pub model: ModelName,

    /// Evaluation data: a CSV or Parquet table, or with --labels an inference log (folder or
    /// glob); local or s3://. Rows of it
    /// the candidate was fitted on are left out. Defaults to the rows the candidate held out of
    /// its training data (`limen train --holdout`).
    #[arg(long, env = "LIMEN_EVAL_DATA")]
    pub data: Option<PathBuf>,

    /// Ground truth for an inference log in --data: a CSV with a `request_id` column and the
    /// model's label column, as for `limen train --labels`.
    #[arg(
        long,
        env = "LIMEN_EVAL_LABELS",
        value_name = "FILE",
        requires = "data"
    )]
    pub labels: Option<PathBuf>,

    /// Gate on the rows the candidate was fitted on when it has no hold-out and no --data is
    /// given, instead of refusing (the accuracy is then a training accuracy, and says so).
    #[arg(long, env = "LIMEN_ALLOW_TRAINING_ROWS")]
    pub allow_training_rows: bool,

    /// Minimum accuracy on the evaluation data, between 0 and 1.
    #[arg(long, env = "LIMEN_MIN_ACCURACY", default_value_t = GateConfig::DEFAULT_MIN_ACCURACY)]
    pub min_accuracy: f64,

    /// How much accuracy the candidate may lose against production, between 0 and 1.
    #[arg(long, env = "LIMEN_TOLERANCE", default_value_t = GateConfig::DEFAULT_TOLERANCE)]
    pub tolerance: f64,

    /// Promote a candidate whose fit did not converge (the history line records it).
    #[arg(long, env = "LIMEN_ALLOW_UNCONVERGED")]
    pub allow_unconverged: bool,

    /// Minimum recall of a class on the evaluation data, as CLASS=VALUE; repeatable.
    #[arg(
        long,
        env = "LIMEN_MIN_RECALL",
        value_name = "CLASS=VALUE",
        value_delimiter = ','
    )]
    pub min_recall: Vec<String>,

    /// Minimum ROC AUC on the evaluation data (binary models).
    #[arg(long, env = "LIMEN_MIN_AUC")]
    pub min_auc: Option<f64>,

    /// Folder of the servers' shadow evidence (as `limen serve --evidence`): the candidate's
    /// live-traffic comparison with production is summed over every server and checked.
    #[arg(long, env = "LIMEN_EVIDENCE", value_name = "DIR")]
    pub evidence: Option<PathBuf>,

    /// Shadow samples required with --evidence (instances scored by both versions). With the
    /// default 1, a candidate no server has scored yet is refused; 0 accepts no evidence.
    #[arg(long, env = "LIMEN_MIN_SHADOW_SAMPLES", default_value_t = GateConfig::DEFAULT_MIN_SHADOW_SAMPLES)]
    pub min_shadow_samples: u64,

    /// Most shadowed rows the candidate may fail to score (with --evidence) before it is refused.
    #[arg(long, env = "LIMEN_MAX_CANDIDATE_ERRORS", default_value_t = 0)]
    pub max_candidate_errors: u64,

    /// Least share of shadow samples on which the candidate's label equals production's.
    #[arg(long, env = "LIMEN_MIN_SHADOW_AGREEMENT", default_value_t = GateConfig::DEFAULT_MIN_SHADOW_AGREEMENT)]
    pub min_shadow_agreement: f64,

    /// With --evidence and a production version to shadow against: wait up to this long for
    /// --min-shadow-samples before the gate reads the evidence (read again every 5 s; the wait
    /// ends as soon as there are enough, or at once when a check has already failed). A first
    /// production version has nothing to shadow: no wait. What replaces a pipeline's fixed
    /// sleep between train and validate.
    #[arg(long, env = "LIMEN_SHADOW_WAIT", default_value = "0s", value_parser = parse_duration, requires = "evidence")]
    pub shadow_wait: std::time::Duration,

    #[command(flatten)]
    pub switch: SwitchArgs,
}

/// How a move of production treats the fleet of servers (`validate`, `models promote|rollback`).
#[derive(Debug, Clone, Args)]
pub struct SwitchArgs {
    /// Move production without waiting for the live servers (by their heartbeats) to load the
    /// version first; each then switches on its next poll, as servers without heartbeats do.
    #[arg(long, env = "LIMEN_NO_WAIT")]
    pub no_wait: bool,

    /// How long to wait for every live server to load the new version before refusing (exit 1,
    /// production unchanged, the servers named).
    #[arg(long, env = "LIMEN_SWITCH_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub switch_timeout: Duration,
}

impl SwitchArgs {
    pub fn options(&self) -> crate::switch::SwitchOptions {
        crate::switch::SwitchOptions {
            wait: !self.no_wait,
            timeout: self.switch_timeout,
        }
    }
}

impl TryFrom<ValidateArgs> for GateConfig {
    type Error = anyhow::Error;

    fn try_from(args: ValidateArgs) -> anyhow::Result<Self> {
        let unit = 0.0..=1.0;
        anyhow::ensure!(
            unit.contains(&args.min_accuracy),
            "--min-accuracy must be between 0 and 1, got {}",
            args.min_accuracy
        );
        anyhow::ensure!(
            unit.contains(&args.tolerance),
            "--tolerance must be between 0 and 1, got {}",
            args.tolerance
        );
        anyhow::ensure!(
            unit.contains(&args.min_shadow_agreement),
            "--min-shadow-agreement must be between 0 and 1, got {}",
            args.min_shadow_agreement
        );
        if let Some(auc) = args.min_auc {
            anyhow::ensure!(
                unit.contains(&auc),
                "--min-auc must be between 0 and 1, got {auc}"
            );
        }
        let min_recall = args
            .min_recall
            .iter()
            .map(|pair| {
                let (class, value) = pair.split_once('=').with_context(|| {
                    format!("--min-recall {pair:?} is not CLASS=VALUE (e.g. virginica=0.9)")
                })?;
                let value: f64 = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|v| unit.contains(v))
                    .with_context(|| {
                        format!("--min-recall {pair:?}: the value must be a number between 0 and 1")
                    })?;
                Ok((class.trim().to_owned(), value))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            model: args.model,
            data: args.data,
            labels: args.labels,
            allow_training_rows: args.allow_training_rows,
            min_accuracy: args.min_accuracy,
            tolerance: args.tolerance,
            allow_unconverged: args.allow_unconverged,
            min_recall,
            min_auc: args.min_auc,
            evidence: args.evidence,
            min_shadow_samples: args.min_shadow_samples,
            min_shadow_agreement: args.min_shadow_agreement,
            max_candidate_errors: args.max_candidate_errors,
            shadow_wait: args.shadow_wait,
            switch: args.switch.options(),
        })
    }
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model to score with.
    #[arg(long, env = "LIMEN_MODEL", default_value = DEFAULT_MODEL)]
    pub model: ModelName,

    /// Version to score with; defaults to the production version.
    #[arg(long)]
    pub version: Option<VersionId>,

    /// Print what `/explain` answers: the logit decomposed into a baseline and per-feature
    /// contributions.
    #[arg(long)]
    pub explain: bool,

    /// Feature values as NAME=VALUE; with none, a JSON object is read from stdin.
    #[arg(value_name = "NAME=VALUE")]
    pub features: Vec<String>,
}

/// Checked settings for `limen predict`.
#[derive(Debug, Clone)]
pub struct PredictConfig {
    pub model: ModelName,
    pub version: Option<VersionId>,
    /// Answer as `/explain` rather than `/predict`.
    pub explain: bool,
    /// The request body, when given as arguments; `None` means read stdin.
    pub body: Option<Vec<u8>>,
}

impl TryFrom<PredictArgs> for PredictConfig {
    type Error = anyhow::Error;

    fn try_from(args: PredictArgs) -> anyhow::Result<Self> {
        let body = if args.features.is_empty() {
            None
        } else {
            let mut object = serde_json::Map::new();
            for pair in &args.features {
                let (name, value) = pair.split_once('=').with_context(|| {
                    format!("{pair:?} is not NAME=VALUE (e.g. petal_width=2.1)")
                })?;
                object.insert(name.trim().to_owned(), value.trim().into());
            }
            Some(
                serde_json::to_vec(&object)
                    .expect("a map of strings to JSON strings always serializes"),
            )
        };
        Ok(Self {
            model: args.model,
            version: args.version,
            explain: args.explain,
            body,
        })
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the bound address is printed on stdout).
    #[arg(long, env = "LIMEN_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,

    #[command(flatten)]
    pub common: ServeOptions,
}

/// Serving settings shared by `serve` and `quickstart`.
#[derive(Debug, Args)]
pub struct ServeOptions {
    /// Serve only these models, e.g. iris,churn (comma-separated or repeated): /ready then waits
    /// for each one's production version. Default: every model in the store, and /ready waits
    /// for each production version found. The first is /predict's model unless
    /// --default-model says otherwise. `quickstart` trains the first if it has no production.
    #[arg(long = "model", env = "LIMEN_MODEL", value_delimiter = ',')]
    pub models: Vec<ModelName>,

    /// The model /predict, /explain and /version answer for (the others answer at
    /// /models/{name}/predict). [default: the first --model, else iris]
    #[arg(long, env = "LIMEN_DEFAULT_MODEL")]
    pub default_model: Option<ModelName>,

    /// How store changes are noticed: inotify events and polling (auto), or only one of them.
    /// Polling is what sees writes by other NFS/EFS clients.
    #[arg(long, env = "LIMEN_WATCH", value_enum, default_value_t = WatchMode::Auto)]
    pub watch: WatchMode,

    /// How often the store's pointers are re-read, e.g. 200ms, 1s, 2m.
    #[arg(long, env = "LIMEN_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// How often this server rewrites its heartbeat, `<store>/.fleet/<instance>.json` (what it
    /// serves, for `limen models fleet`); stale after 3 intervals; 0s writes none (a read-only
    /// store). Removed on a graceful stop.
    #[arg(long, env = "LIMEN_HEARTBEAT_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Largest request body accepted, e.g. 1MiB, 64KiB or a byte count.
    #[arg(long, env = "LIMEN_MAX_BODY", default_value = "1MiB", value_parser = parse_size)]
    pub max_body: usize,

    /// Longest a request may take, body upload included.
    #[arg(long, env = "LIMEN_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// After SIGTERM, how long requests in flight get to finish before the process exits.
    #[arg(long, env = "LIMEN_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// How many non-production versions stay loaded for /models/{name}/versions/{v}/predict.
    #[arg(long, env = "LIMEN_PINNED_CACHE", default_value = "64")]
    pub pinned_cache: NonZeroUsize,

    /// How long a connection may go without sending a complete request head, idle keep-alive
    /// connections included (slow or stuck clients are cut). Keep it above your load balancer's
    /// idle timeout (AWS ALB: 60 s), or it may reuse a connection limen is closing.
    #[arg(long, env = "LIMEN_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Threads answering requests; 0 means one per CPU core.
    #[arg(long, env = "LIMEN_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Fraction of each model's /predict, /models/{name}/predict and /v2/.../infer requests that
    /// its candidate (when it is not production) also scores, off the response path, to compare
    /// with production; 0 turns shadow scoring off.
    #[arg(long, env = "LIMEN_SHADOW_RATE", default_value_t = 0.1)]
    pub shadow_rate: f64,

    /// Folder where each server writes its shadow totals for `limen validate --evidence`
    /// (`DIR/<model>/<candidate>/<instance>.json`), at most once per --poll-interval.
    #[arg(long, env = "LIMEN_EVIDENCE", value_name = "DIR")]
    pub evidence: Option<PathBuf>,

    /// This server's name in evidence and inference log files; defaults to hostname-pid.
    #[arg(long, env = "LIMEN_INSTANCE")]
    pub instance: Option<String>,

    /// Folder for the inference log: sampled requests of every model as JSON lines in
    /// `DIR/<model>/<YYYY-MM-DD>/<instance>-<seq>.jsonl` (features, answer, shadow answer).
    #[arg(long, env = "LIMEN_INFERENCE_LOG", value_name = "DIR")]
    pub inference_log: Option<PathBuf>,

    /// Fraction of requests written to the inference log, 0 to 1.
    #[arg(long, env = "LIMEN_INFERENCE_LOG_RATE", default_value_t = 1.0)]
    pub inference_log_rate: f64,

    /// How many recent instances each model's live `limen_feature_psi` gauges cover; 0 turns
    /// them off.
    #[arg(long, env = "LIMEN_DRIFT_WINDOW", default_value_t = 10_000)]
    pub drift_window: u64,

    /// Instances a feature's drift window must hold before its live PSI is exported (until
    /// then no series, and the page says "collecting (n of N)"); at most half the window.
    #[arg(long, env = "LIMEN_DRIFT_MIN_SAMPLES", default_value_t = crate::registry::MIN_PSI_INSTANCES)]
    pub drift_min_samples: u64,

    /// Require a bearer token on a route group, as GROUP=FILE (repeatable; groups: inference,
    /// metadata, metrics): FILE holds the accepted tokens, one per line, re-read every
    /// --poll-interval (a rotated Kubernetes Secret needs no restart). Health routes never ask.
    #[arg(
        long,
        env = "LIMEN_AUTH_TOKEN_FILE",
        value_name = "GROUP=FILE",
        value_delimiter = ','
    )]
    pub auth_token_file: Vec<String>,

    /// Memory the server may reserve for requests, queues and pages, e.g. 96MiB: past it,
    /// requests get 429 with Retry-After and queued log lines and shadow samples are dropped and
    /// counted. Default: 60% of the container's memory limit (cgroup), else a quarter of RAM.
    #[arg(long, env = "LIMEN_MEMORY_BUDGET", value_parser = parse_size)]
    pub memory_budget: Option<usize>,

    /// Requests scored at once (/predict, /explain, /v2 infer); more are answered 429 at once.
    #[arg(long, env = "LIMEN_MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,

    /// Size at which an inference log file is closed and the next opened, e.g. 64MiB (at least
    /// 64KiB).
    #[arg(long, env = "LIMEN_INFERENCE_LOG_MAX_FILE", default_value = "64MiB", value_parser = parse_size)]
    pub inference_log_max_file: usize,

    /// The most this server writes to the inference log for one model in one day (UTC), e.g.
    /// 10GiB; past it the model's lines are dropped (counted) until midnight.
    #[arg(long, env = "LIMEN_INFERENCE_LOG_MAX_DAY", default_value = "10GiB", value_parser = parse_size)]
    pub inference_log_max_day: usize,
}

impl ServeOptions {
    /// The checked serve settings for listening on `addr`.
    pub fn config(&self, addr: SocketAddr) -> anyhow::Result<ServeConfig> {
        anyhow::ensure!(
            !self.poll_interval.is_zero(),
            "--poll-interval must be longer than 0"
        );
        anyhow::ensure!(
            !self.request_timeout.is_zero(),
            "--request-timeout must be longer than 0"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.shadow_rate),
            "--shadow-rate must be between 0 and 1, got {}",
            self.shadow_rate
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.inference_log_rate),
            "--inference-log-rate must be between 0 and 1, got {}",
            self.inference_log_rate
        );
        anyhow::ensure!(
            self.max_concurrent_requests > 0,
            "--max-concurrent-requests must be at least 1"
        );
        let mut models = Vec::with_capacity(self.models.len());
        for name in &self.models {
            if !models.contains(name) {
                models.push(name.clone());
            }
        }
        let default_model = match (&self.default_model, models.first()) {
            (Some(default), _) => {
                anyhow::ensure!(
                    models.is_empty() || models.contains(default),
                    "--default-model {default} is not among the models served (--model {}): add it to the list or choose one of them",
                    models.iter().map(ModelName::as_str).collect::<Vec<_>>().join(",")
                );
                default.clone()
            }
            (None, Some(first)) => first.clone(),
            (None, None) => DEFAULT_MODEL.parse()?,
        };
        let memory_budget = match self.memory_budget {
            Some(bytes) => {
                anyhow::ensure!(
                    bytes >= MIN_MEMORY_BUDGET,
                    "--memory-budget must be at least {} MiB (the server's own tables and one request need that much); got {bytes} bytes",
                    MIN_MEMORY_BUDGET >> 20
                );
                (bytes, "--memory-budget".to_owned())
            }
            None => crate::budget::default_budget(),
        };
        anyhow::ensure!(
            self.inference_log_max_file as u64 >= crate::inference_log::MIN_FILE_BYTES,
            "--inference-log-max-file must be at least {} KiB (smaller makes a file of a few lines each); got {} bytes",
            crate::inference_log::MIN_FILE_BYTES / 1024,
            self.inference_log_max_file
        );
        let mut auth: Vec<(crate::serve::auth::Group, PathBuf)> = Vec::new();
        for pair in &self.auth_token_file {
            let (group, file) = pair.split_once('=').with_context(|| {
                format!("--auth-token-file {pair:?} is not GROUP=FILE (e.g. inference=/etc/limen/auth/inference)")
            })?;
            let group: crate::serve::auth::Group = group
                .trim()
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--auth-token-file {pair:?}: {e}"))?;
            anyhow::ensure!(
                auth.iter().all(|(g, _)| *g != group),
                "--auth-token-file names the {} group twice",
                group.as_str()
            );
            auth.push((group, PathBuf::from(file.trim())));
        }
        let instance = crate::evidence::instance_name(self.instance.as_deref());
        Ok(ServeConfig {
            auth,
            drift_window: self.drift_window,
            drift_min_samples: self.drift_min_samples,
            log: self.inference_log.clone().map(|dir| LogConfig {
                dir,
                rate: self.inference_log_rate,
                max_file_bytes: self.inference_log_max_file as u64,
                max_day_bytes: self.inference_log_max_day as u64,
                instance: instance.clone(),
            }),
            heartbeat: (!self.heartbeat_interval.is_zero())
                .then(|| self.heartbeat_interval.max(Duration::from_millis(100))),
            shadow: ShadowConfig {
                rate: self.shadow_rate,
                evidence: self.evidence.clone(),
                instance,
            },
            addr,
            default_model,
            models,
            watch: self.watch,
            poll_interval: self.poll_interval,
            limits: Limits {
                max_body: self.max_body,
                request_timeout: self.request_timeout,
                max_concurrent_requests: self.max_concurrent_requests,
                blocking_scorers: match self.workers {
                    0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
                    n => n,
                },
            },
            memory_budget,
            shutdown_timeout: self.shutdown_timeout,
            pinned_cache: self.pinned_cache,
            idle_timeout: self.idle_timeout,
            workers: self.workers,
        })
    }
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Address to listen on.
    #[arg(long, env = "LIMEN_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Training data used when the store has no production model yet.
    #[arg(long, env = "LIMEN_DATA", default_value = DEFAULT_DATA)]
    pub data: PathBuf,

    #[command(flatten)]
    pub common: ServeOptions,
}

/// The least `--memory-budget`: the largest default body and its decoding fit in it.
const MIN_MEMORY_BUDGET: usize = 16 * 1024 * 1024;

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write durations like 200ms, 1s, 2m)"))
}

fn parse_size(s: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = s
        .parse()
        .map_err(|e| format!("{e} (write sizes like 1MiB, 64KiB or 1048576)"))?;
    usize::try_from(size.as_u64()).map_err(|_| format!("{s} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("limen").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn train_defaults_reproduce_the_reference_example() {
        let Command::Train(args) = parse(&["train"]).unwrap().command else {
            panic!("not train")
        };
        let cfg = TrainConfig::try_from(args).unwrap();
        assert_eq!(cfg.model.as_str(), "iris");
        // Chosen from the table when it is read: on Iris, petal width and virginica
        // (`crate::columns`, and `tests/train_validate.rs` end to end).
        assert_eq!(cfg.features, None);
        assert_eq!(cfg.label_column, None);
        assert_eq!(cfg.params.objective(), &Objective::Auto);
    }

    #[test]
    fn quickstart_trains_and_validates_with_exactly_the_command_line_defaults() {
        let Command::Train(args) = parse(&["train"]).unwrap().command else {
            panic!("not train")
        };
        let from_flags = TrainConfig::try_from(args).unwrap();
        let reference =
            TrainConfig::reference(DEFAULT_MODEL.parse().unwrap(), DEFAULT_DATA.into()).unwrap();
        assert_eq!(format!("{from_flags:?}"), format!("{reference:?}"));
        let Command::Validate(args) = parse(&["validate"]).unwrap().command else {
            panic!("not validate")
        };
        let from_flags = GateConfig::try_from(args).unwrap();
        let default = GateConfig::new(DEFAULT_MODEL.parse().unwrap());
        assert_eq!(format!("{from_flags:?}"), format!("{default:?}"));
    }

    #[test]
    fn a_feature_listed_twice_is_refused() {
        let Command::Train(args) = parse(&["train", "--features", "a,b,a"]).unwrap().command else {
            panic!()
        };
        let err = TrainConfig::try_from(args).unwrap_err().to_string();
        assert!(err.contains("\"a\" twice"), "{err}");
    }

    #[test]
    fn target_and_multiclass_exclude_each_other() {
        assert!(parse(&["train", "--multiclass", "--target", "setosa"]).is_err());
        assert!(parse(&["train", "--multiclass", "--features", "a,b"]).is_ok());
    }

    #[test]
    fn bad_names_and_ranges_are_refused_before_any_io() {
        let err = parse(&["train", "--model", "../etc"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid model name"), "{err}");
        assert!(parse(&["models", "promote", "iris", "01e3"]).is_err());
        assert!(parse(&["predict", "--version", "-1"]).is_err());
        let Command::Validate(args) = parse(&["validate", "--min-accuracy", "1.5"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert!(GateConfig::try_from(args).is_err());
    }

    #[test]
    fn serve_parses_durations_and_sizes() {
        let Command::Serve(args) = parse(&[
            "serve",
            "--poll-interval",
            "200ms",
            "--max-body",
            "64KiB",
            "--addr",
            "127.0.0.1:0",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        let cfg = args.common.config(args.addr).unwrap();
        assert_eq!(cfg.poll_interval, Duration::from_millis(200));
        assert_eq!(cfg.limits.max_body, 64 * 1024);
        let Command::Serve(args) = parse(&["serve"]).unwrap().command else {
            panic!()
        };
        assert_eq!(args.common.max_body, 1024 * 1024);
        assert_eq!(args.common.poll_interval, Duration::from_secs(1));
        assert!(parse(&["serve", "--poll-interval", "soon"]).is_err());
        assert!(parse(&["serve", "--max-body", "lots"]).is_err());
    }

    #[test]
    fn serve_models_narrow_serving_and_the_first_is_the_default() {
        let config = |args: &[&str]| {
            let Command::Serve(a) = parse(&[&["serve"], args].concat()).unwrap().command else {
                panic!()
            };
            a.common.config(a.addr)
        };
        let names = |cfg: &ServeConfig| -> Vec<String> {
            cfg.models.iter().map(|m| m.to_string()).collect()
        };
        let all = config(&[]).unwrap();
        assert!(all.models.is_empty(), "no --model serves every model");
        assert_eq!(all.default_model.as_str(), DEFAULT_MODEL);
        let two = config(&["--model", "churn,iris", "--model", "churn"]).unwrap();
        assert_eq!(names(&two), ["churn", "iris"]);
        assert_eq!(two.default_model.as_str(), "churn");
        let chosen = config(&["--model", "churn,iris", "--default-model", "iris"]).unwrap();
        assert_eq!(chosen.default_model.as_str(), "iris");
        let err = config(&["--model", "churn", "--default-model", "iris"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--default-model iris is not among"), "{err}");
        assert!(parse(&["serve", "--model", "a,../b"]).is_err());
    }

    #[test]
    fn predict_arguments_become_a_json_body() {
        let Command::Predict(args) = parse(&["predict", "petal_width=2.1"]).unwrap().command else {
            panic!()
        };
        let cfg = PredictConfig::try_from(args).unwrap();
        assert_eq!(cfg.body.unwrap(), br#"{"petal_width":"2.1"}"#);
        let Command::Predict(args) = parse(&["predict", "petal_width"]).unwrap().command else {
            panic!()
        };
        assert!(PredictConfig::try_from(args).is_err());
    }

    #[test]
    fn train_flags_a_user_would_type_say_what_to_change() {
        let csv = tempfile::NamedTempFile::new().unwrap();
        let data = csv.path().to_str().unwrap();
        let train = |extra: &[&str]| {
            let mut all = vec!["train", "--data", data];
            all.extend_from_slice(extra);
            let Command::Train(args) = parse(&all).unwrap().command else {
                panic!()
            };
            TrainConfig::try_from(args)
        };
        // `--label` is the label column, not a typo of `--labels`.
        assert_eq!(
            train(&["--label", "kind"]).unwrap().label_column.as_deref(),
            Some("kind")
        );
        // `--labels` with a CSV for --data names both flags and the way out.
        let why = train(&["--labels", "truth.csv"]).unwrap_err().to_string();
        assert!(
            why.contains("--data") && why.contains("drop --labels"),
            "{why}"
        );
    }
}
