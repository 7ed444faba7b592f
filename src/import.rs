//! `limen import`: a gradient-boosted model trained in Python, read from the library's own file
//! format in Rust (no Python, no C++ library) and converted to limen's tree artifact, then
//! evaluated on labelled data (whose feature statistics and drift references it records) like a
//! model `limen train` fits. XGBoost's `save_model` JSON is read here; LightGBM's text format,
//! XGBoost's UBJSON and categorical splits are the next steps of issue 24.
//!
//! The file is untrusted: it is parsed into typed arrays (no JSON tree of it), and the tree
//! ensemble it makes is checked whole by [`crate::model::tree::check`] before anything scores
//! with it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::data::{sha256_hex, Dataset};
use crate::evaluate;
use crate::model::tree::{Comparison, Link, Tree, TreeEnsemble};
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
    #[error("{path} is not an XGBoost model saved as JSON (`Booster.save_model(\"model.json\")`): {why}")]
    NotXgboost { path: PathBuf, why: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("--classes names {given} classes, but the model has {model}")]
    Classes { given: usize, model: usize },
    #[error("the imported model does not check out: {0}")]
    Model(#[from] ModelError),
    #[error("cannot evaluate the imported model on the data: {0}")]
    Evaluate(String),
}

/// What to import, checked.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    pub file: PathBuf,
    /// Feature names when the file has none (in the model's feature order).
    pub features: Option<Vec<String>>,
    /// Class names in the library's class order; default: the class indices.
    pub classes: Option<Vec<String>>,
    /// Labelled data to evaluate on (its label column holds the class names).
    pub data: PathBuf,
    pub label_column: String,
}

/// An XGBoost model as `save_model("….json")` writes it: the parts limen reads.
#[derive(Deserialize)]
struct XgbFile {
    learner: XgbLearner,
    #[serde(default)]
    version: Vec<u32>,
}

#[derive(Deserialize)]
struct XgbLearner {
    #[serde(default)]
    feature_names: Vec<String>,
    gradient_booster: XgbBooster,
    learner_model_param: XgbModelParam,
    objective: XgbObjective,
}

#[derive(Deserialize)]
struct XgbModelParam {
    base_score: String,
    num_class: String,
    num_feature: String,
}

#[derive(Deserialize)]
struct XgbObjective {
    name: String,
}

#[derive(Deserialize)]
struct XgbBooster {
    name: String,
    model: Option<XgbTrees>,
}

#[derive(Deserialize)]
struct XgbTrees {
    trees: Vec<XgbTree>,
    tree_info: Vec<usize>,
}

#[derive(Deserialize)]
struct XgbTree {
    left_children: Vec<i32>,
    right_children: Vec<i32>,
    split_indices: Vec<u32>,
    split_conditions: Vec<f64>,
    default_left: Vec<u8>,
    sum_hessian: Vec<f64>,
    #[serde(default)]
    split_type: Vec<u8>,
}

/// What a model file holds: the ensemble, its feature names (empty when it has none), its class
/// count, and where it came from.
type Read = (TreeEnsemble, Vec<String>, usize, Imported);

/// Reads an XGBoost JSON model into a tree ensemble.
fn read_xgboost(path: &Path, bytes: &[u8]) -> Result<Read, ImportError> {
    let not = |why: String| ImportError::NotXgboost {
        path: path.to_owned(),
        why,
    };
    let file: XgbFile = serde_json::from_slice(bytes).map_err(|e| not(e.to_string()))?;
    let learner = file.learner;
    if learner.gradient_booster.name != "gbtree" {
        return Err(ImportError::Unsupported(format!(
            "booster {:?}: limen imports gbtree models (dart and gblinear are not supported)",
            learner.gradient_booster.name
        )));
    }
    let Some(model) = learner.gradient_booster.model else {
        return Err(not("it has no trees".into()));
    };
    let num_class: usize = learner
        .learner_model_param
        .num_class
        .parse()
        .map_err(|_| not("num_class is not a number".into()))?;
    let num_feature: usize = learner
        .learner_model_param
        .num_feature
        .parse()
        .map_err(|_| not("num_feature is not a number".into()))?;
    // base_score: "0.5", "5E-1" or, from XGBoost 3, "[6.274165E-1]" (one per target).
    let base: Vec<f64> = learner
        .learner_model_param
        .base_score
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| not("base_score is not a number".into()))?;
    let objective = learner.objective.name;
    let (link, classes, base) = match objective.as_str() {
        "binary:logistic" => {
            let p = base.first().copied().unwrap_or(0.5);
            if !(p > 0.0 && p < 1.0) {
                return Err(not(format!("base_score {p} is not a probability")));
            }
            // The base score is a probability; the trees add to its log-odds.
            (Link::Logistic, 2, vec![(p / (1.0 - p)).ln()])
        }
        "multi:softprob" | "multi:softmax" => {
            if num_class < 2 {
                return Err(not(format!("{objective} with {num_class} classes")));
            }
            // Margins, one per class (one value is added to every class alike).
            let base = match base.len() {
                1 => vec![base[0]; num_class],
                n if n == num_class => base,
                n => return Err(not(format!("{n} base scores for {num_class} classes"))),
            };
            (Link::Softmax, num_class, base)
        }
        other => {
            return Err(ImportError::Unsupported(format!(
            "objective {other:?}: limen imports binary:logistic, multi:softprob and multi:softmax"
        )))
        }
    };
    if model.tree_info.len() != model.trees.len() {
        return Err(not("tree_info does not name a class for every tree".into()));
    }
    let mut trees = Vec::with_capacity(model.trees.len());
    for (i, (t, &class)) in model.trees.into_iter().zip(&model.tree_info).enumerate() {
        if t.split_type.iter().any(|s| *s != 0) {
            return Err(ImportError::Unsupported(format!(
                "tree {i} has categorical splits, which limen does not import yet"
            )));
        }
        let n = t.left_children.len();
        // A leaf's value sits where a split's threshold would.
        let value: Vec<f64> = (0..n)
            .map(|node| {
                if t.left_children[node] < 0 {
                    t.split_conditions.get(node).copied().unwrap_or(f64::NAN)
                } else {
                    0.0
                }
            })
            .collect();
        trees.push(Tree {
            output: if link == Link::Logistic { 0 } else { class },
            feature: t.split_indices,
            threshold: t.split_conditions,
            left: t.left_children,
            right: t.right_children,
            default_left: t.default_left.iter().map(|d| *d != 0).collect(),
            cover: t.sum_hessian,
            value,
        });
    }
    let ensemble = TreeEnsemble {
        link,
        comparison: Comparison::Less,
        base,
        leaf_width: 1,
        trees,
    };
    // The file's feature names, or as many empty names (then --features must name them).
    let names = match learner.feature_names {
        names if names.is_empty() => vec![String::new(); num_feature],
        names if names.len() == num_feature => names,
        names => {
            return Err(not(format!(
                "{} feature names for {num_feature} features",
                names.len()
            )))
        }
    };
    let version = file
        .version
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".");
    let imported = Imported {
        library: "xgboost".to_owned(),
        library_version: version,
        objective,
        file: path.display().to_string(),
        file_sha256: sha256_hex(bytes),
    };
    Ok((ensemble, names, classes, imported))
}

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
    let (ensemble, file_names, n_classes, imported) = read_xgboost(path, &bytes)?;
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
        scaler: None,
        metrics: Metrics {
            train_accuracy: 0.0,
            train_log_loss: 0.0,
            cv_accuracy: None,
            cv_folds: 0,
            converged: None,
            iterations: None,
            gradient_norm: None,
            train: None,
            cv: None,
        },
        provenance: Provenance {
            data_path: data.path.display().to_string(),
            data_sha256: data.sha256.clone(),
            rows: data.rows(),
            hyperparameters: None,
            trainer: format!("limen {} import", env!("CARGO_PKG_VERSION")),
            linfa_version: String::new(),
            imported: Some(imported),
        },
    };
    let model = Model::new(artifact.clone())?;
    let eval =
        evaluate::evaluate(&model, &data).map_err(|e| ImportError::Evaluate(e.to_string()))?;
    // What the model did on the data it was imported with (the library trained it elsewhere).
    artifact.metrics.train_accuracy = eval.accuracy;
    artifact.metrics.train_log_loss = eval.log_loss;
    artifact.metrics.train = Some(eval.report);
    Ok(artifact)
}
