//! What every handler can see: the registry, the default model, the limits, the metrics, and the
//! gate that bounds how many requests read the store at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::activity::Activity;
use super::error::ApiError;
use crate::inference_log::InferenceLog;
use crate::registry::{LoadedModel, Registry};
use crate::shadow::Shadow;
use crate::store::ModelName;
use crate::telemetry::Metrics;

/// How many requests may read the store at once (`/models`, `/models/{name}`, pinned-version
/// loads, v2 metadata). The rest wait their turn, within `--request-timeout`: a slow or hostile
/// store can hold these few blocking threads, never the whole blocking pool.
const STORE_READERS: usize = 4;

/// Per-request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Longest a request may take, body upload included.
    pub request_timeout: Duration,
}

/// The state shared by every handler. One `Arc`: each extractor that takes it (`State`) clones
/// it per request, so a clone is one atomic increment, whatever the state holds.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] points at (its fields read through `Deref`). The `Arc`s are the parts
/// background tasks hold too; the rest only ever lives here.
pub struct Shared {
    pub registry: Arc<Registry>,
    pub default_model: ModelName,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub shadow: Arc<Shadow>,
    pub log: Arc<InferenceLog>,
    pub activity: Arc<Activity>,
    store_readers: Semaphore,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(
        registry: Arc<Registry>,
        default_model: ModelName,
        limits: Limits,
        metrics: Arc<Metrics>,
        shadow: Arc<Shadow>,
        log: Arc<InferenceLog>,
        activity: Arc<Activity>,
    ) -> Self {
        Self(Arc::new(Shared {
            registry,
            default_model,
            limits,
            metrics,
            shadow,
            log,
            activity,
            store_readers: Semaphore::new(STORE_READERS),
        }))
    }

    /// The candidate to shadow this request with: `production`'s model's candidate, for the
    /// sampled fraction of requests. One random draw when not sampled.
    pub fn shadow_for(&self, production: &LoadedModel) -> Option<Arc<LoadedModel>> {
        if !self.shadow.sample() {
            return None;
        }
        self.registry.shadow(production.model.name())
    }

    /// Runs `read` (file I/O on the store) on the blocking pool, at most `STORE_READERS` at
    /// a time.
    pub async fn read_store<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Registry) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .store_readers
            .acquire()
            .await
            .map_err(|e| ApiError::internal(&e))?;
        let registry = Arc::clone(&self.registry);
        tokio::task::spawn_blocking(move || read(&registry))
            .await
            .map_err(|e| ApiError::internal(&e))
    }
}
