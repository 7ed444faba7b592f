//! `limen import`: a gradient-boosted model trained in Python, read from the library's own file
//! format in Rust (no Python, no C++ library) and converted to limen's tree artifact, then
//! evaluated on labelled data (whose feature statistics and drift references it records) like a
//! model `limen train` fits. One reader per library: [`xgboost`] (`save_model` JSON) and
//! [`lightgbm`] (`save_model` text); this module holds what they share.
//!
//! The file is untrusted: it is parsed into typed arrays (no JSON tree of it), and the tree
//! ensemble it makes is checked whole by [`crate::model::tree::check`] before anything scores
//! with it.

use std::path::PathBuf;

mod lightgbm;
mod ubjson;
mod xgboost;

use crate::data::Dataset;
use crate::evaluate;
use crate::model::tree::{Link, TreeEnsemble};
use crate::model::{
    Feature, Imported, Metrics, Model, ModelArtifact, ModelError, ModelKind, Provenance, Reference,
    FORMAT,
};

/// The largest model file read (its arrays are held once, typed).
pub const MAX_FILE_BYTES: u64 = 512 << 20;

/// Why a file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {} MiB", MAX_FILE_BYTES >> 20)]
    TooLarge { path: PathBuf },
    #[error("{path} is not {} model: {why}", .library.describe())]
    NotModel {
        path: PathBuf,
        library: Library,
        why: String,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("--classes names {given} classes, but the model has {model}")]
    Classes { given: usize, model: usize },
    #[error("the imported model does not check out: {0}")]
    Model(#[from] ModelError),
    #[error("cannot evaluate the imported model on the data: {0}")]
    Evaluate(String),
}

/// The library whose file is imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    Xgboost,
    Lightgbm,
}

impl Library {
    /// What its file is, for messages.
    fn describe(self) -> &'static str {
        match self {
            Self::Xgboost => {
                "an XGBoost model saved as JSON or UBJSON (`Booster.save_model(\"model.json\")` or `(\"model.ubj\")`)"
            }
            Self::Lightgbm => {
                "a LightGBM model saved as text (`Booster.save_model(\"model.txt\")`)"
            }
        }
    }
}

/// What to import, checked.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    pub library: Library,
    pub file: PathBuf,
    /// Feature names when the file has none (in the model's feature order).
    pub features: Option<Vec<String>>,
    /// Class names in the library's class order; default: the class indices.
    pub classes: Option<Vec<String>>,
    /// Labelled data to evaluate on (its label column holds the class names).
    pub data: PathBuf,
    pub label_column: String,
}

/// What a model file holds: the ensemble, its feature names (empty when it has none), its class
/// count, and where it came from.
type Read = (TreeEnsemble, Vec<String>, usize, Imported);

/// Reads `cfg.file`, converts it, and evaluates it on `cfg.data`: the artifact to publish (as
/// `name` version `version`, made `created_at`), or why not.
pub fn import(
    cfg: &ImportConfig,
    name: &str,
    version: u64,
    created_at: &str,
) -> Result<ModelArtifact, ImportError> {
    let path = &cfg.file;
    let meta = std::fs::metadata(path).map_err(|source| ImportError::Read {
        path: path.clone(),
        source,
    })?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(ImportError::TooLarge { path: path.clone() });
    }
    let bytes = std::fs::read(path).map_err(|source| ImportError::Read {
        path: path.clone(),
        source,
    })?;
    let (ensemble, file_names, n_classes, imported) = match cfg.library {
        Library::Xgboost => xgboost::read(path, &bytes)?,
        Library::Lightgbm => lightgbm::read(path, &bytes)?,
    };
    let features = match (&cfg.features, file_names.iter().all(String::is_empty)) {
        (Some(given), _) => {
            if given.len() != file_names.len() {
                return Err(ImportError::Unsupported(format!(
                    "--features names {} features, but the model takes {}",
                    given.len(),
                    file_names.len()
                )));
            }
            given.clone()
        }
        (None, false) => file_names,
        (None, true) => {
            return Err(ImportError::Unsupported(format!(
                "the file names no features: pass --features with the model's {} feature names, in order",
                file_names.len()
            )))
        }
    };
    let classes: Vec<String> = match &cfg.classes {
        Some(given) if given.len() != n_classes => {
            return Err(ImportError::Classes {
                given: given.len(),
                model: n_classes,
            })
        }
        Some(given) => given.clone(),
        None => (0..n_classes).map(|k| k.to_string()).collect(),
    };
    let data = Dataset::load(&cfg.data, &features, &cfg.label_column)
        .map_err(|e| ImportError::Evaluate(format!("{e:#}")))?;
    let stats = data.feature_stats();
    let features: Vec<Feature> = features
        .iter()
        .zip(stats)
        .zip(data.x.columns())
        .map(|((name, stats), column)| Feature {
            name: name.clone(),
            stats,
            reference: Some(Reference::of(column.iter(), &stats)),
            mean_abs_contribution: None,
        })
        .collect();
    let binary = ensemble.link == Link::Logistic;
    let mut artifact = ModelArtifact {
        format: FORMAT.to_owned(),
        name: name.to_owned(),
        version,
        created_at: created_at.to_owned(),
        kind: ModelKind::TreeEnsemble,
        features,
        label_column: cfg.label_column.clone(),
        positive_class: binary.then(|| classes[1].clone()),
        classes,
        coefficients: Vec::new(),
        intercepts: Vec::new(),
        trees: Some(ensemble),
        preprocessing: None,
        scaler: None,
        threshold: None,
        metrics: Metrics::default(),
        provenance: Provenance {
            data_path: data.path.display().to_string(),
            data_sha256: data.sha256.clone(),
            rows: data.rows(),
            hyperparameters: None,
            trainer: format!("limen {} import", env!("CARGO_PKG_VERSION")),
            linfa_version: String::new(),
            imported: Some(imported),
            forest: None,
            holdout: None,
            log: None,
        },
    };
    let model = Model::new(artifact.clone())?;
    let eval =
        evaluate::evaluate(&model, &data).map_err(|e| ImportError::Evaluate(e.to_string()))?;
    // What the model did on the data it was imported with (the library trained it elsewhere).
    artifact.metrics.train_accuracy = eval.accuracy;
    artifact.metrics.train_log_loss = eval.log_loss;
    artifact.metrics.train = Some(eval.report);
    let importance = evaluate::mean_abs_contributions(&model, &data)
        .map_err(|e| ImportError::Evaluate(e.to_string()))?;
    for (feature, v) in artifact.features.iter_mut().zip(importance) {
        feature.mean_abs_contribution = Some(v);
    }
    Ok(artifact)
}
