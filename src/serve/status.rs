//! The JSON of `/models` and `/models/{name}`: the registry's plain statuses, rendered.

use serde::Serialize;

use crate::evidence::ShadowTotals;
use crate::model::ModelMetadata;
use crate::registry::{ModelDetail, ModelStatus, StoreStatus};
use crate::store::VersionId;

fn rfc3339(t: Option<std::time::SystemTime>) -> Option<String> {
    t.map(crate::store::rfc3339_millis)
}

/// One model in `/models`.
#[derive(Debug, Serialize)]
pub struct ModelStatusJson {
    pub name: String,
    /// The `production` pointer as last read.
    pub production: Option<VersionId>,
    /// The `candidate` pointer.
    pub candidate: Option<VersionId>,
    /// The version being served.
    pub loaded: Option<VersionId>,
    pub loaded_at: Option<String>,
    /// Why the production version is not the one served, if it is not.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Why the candidate cannot be shadowed, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_error: Option<String>,
}

impl From<ModelStatus> for ModelStatusJson {
    fn from(s: ModelStatus) -> Self {
        Self {
            name: s.name,
            production: s.production,
            candidate: s.candidate,
            loaded: s.loaded,
            loaded_at: rfc3339(s.loaded_at),
            last_error: s.last_error,
            last_error_at: rfc3339(s.last_error_at),
            candidate_error: s.candidate_error,
        }
    }
}

/// The store in `/models`.
#[derive(Debug, Serialize)]
pub struct StoreStatusJson {
    pub root: String,
    pub last_scan_ok_at: Option<String>,
    pub error: Option<String>,
}

impl From<StoreStatus> for StoreStatusJson {
    fn from(s: StoreStatus) -> Self {
        Self {
            root: s.root,
            last_scan_ok_at: rfc3339(s.last_scan_ok_at),
            error: s.error,
        }
    }
}

/// `GET /models`.
#[derive(Debug, Serialize)]
pub struct ModelsResponse {
    pub default_model: String,
    pub store: StoreStatusJson,
    pub models: Vec<ModelStatusJson>,
}

/// The shadow run of a model's candidate, in `GET /models/{name}`.
#[derive(Debug, Serialize)]
pub struct ShadowJson {
    /// The candidate version scored in the shadow.
    pub version: VersionId,
    /// Instances scored by both versions so far.
    pub samples: u64,
    /// The share of them on which both gave the same label (`null` before the first).
    pub label_agreement: Option<f64>,
    /// Mean and largest |Δp| of the top class (binary: the positive class).
    pub mean_abs_diff: Option<f64>,
    pub max_abs_diff: Option<f64>,
    /// Rows the candidate could not score.
    pub candidate_errors: u64,
    /// When the first sample was taken.
    pub since: Option<String>,
}

impl ShadowJson {
    pub fn new(version: VersionId, totals: Option<ShadowTotals>) -> Self {
        let t = totals.unwrap_or_default();
        Self {
            version,
            samples: t.samples,
            label_agreement: t.label_agreement(),
            mean_abs_diff: t.mean_abs_diff(),
            max_abs_diff: (t.samples > 0).then_some(t.max_abs_diff),
            candidate_errors: t.candidate_errors,
            since: t.first_at,
        }
    }
}

/// `GET /models/{name}`: the status, the versions on disk, the shadow run and the served model's
/// metadata, in one flat object.
#[derive(Serialize)]
pub struct DetailResponse<'a> {
    #[serde(flatten)]
    pub status: ModelStatusJson,
    pub versions: &'a [VersionId],
    /// `null` when no candidate is in shadow.
    pub shadow: Option<ShadowJson>,
    #[serde(flatten)]
    pub metadata: Option<ModelMetadata<'a>>,
}

impl<'a> DetailResponse<'a> {
    pub fn new(detail: &'a ModelDetail, shadow: Option<ShadowJson>) -> Self {
        Self {
            status: detail.status.clone().into(),
            versions: &detail.versions,
            shadow,
            metadata: detail.served.as_ref().map(|m| m.model.metadata()),
        }
    }
}
