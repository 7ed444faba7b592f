//! The JSON of `/models` and `/models/{name}`: the registry's plain statuses, rendered.

use serde::Serialize;

use crate::model::ModelMetadata;
use crate::registry::{ModelDetail, ModelStatus, StoreStatus};
use crate::store::VersionId;

fn rfc3339(t: Option<std::time::SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_millis(t).to_string())
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

/// `GET /models/{name}`: the status, the versions on disk and the served model's metadata, in one
/// flat object.
#[derive(Serialize)]
pub struct DetailResponse<'a> {
    #[serde(flatten)]
    pub status: ModelStatusJson,
    pub versions: &'a [VersionId],
    #[serde(flatten)]
    pub metadata: Option<ModelMetadata<'a>>,
}

impl<'a> DetailResponse<'a> {
    pub fn new(detail: &'a ModelDetail) -> Self {
        Self {
            status: detail.status.clone().into(),
            versions: &detail.versions,
            metadata: detail.served.as_ref().map(|m| m.model.metadata()),
        }
    }
}
