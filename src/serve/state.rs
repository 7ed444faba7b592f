//! What every handler can see: the registry, the default model, the limits, the metrics, the
//! memory budget, and the gates that bound how many requests are scored, score on the blocking
//! pool, and read the store at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::activity::Activity;
use super::auth::Auth;
use super::error::{ApiError, ErrorKind};
use crate::budget::{Budget, Reservation};
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
    /// Requests being scored at once (`/predict`, `/explain`, `/v2` infer and their model and
    /// version routes); more are answered 429 at once.
    pub max_concurrent_requests: usize,
    /// Large bodies scored on the blocking pool at once; the rest wait their turn (within the
    /// request deadline), so a burst of big batches cannot take hundreds of threads.
    pub blocking_scorers: usize,
}

impl Limits {
    /// Limits for tests and benchmarks: `max_body`, a 10 s deadline, 512 requests in flight,
    /// 2 blocking scorers.
    pub fn with_max_body(max_body: usize) -> Self {
        Self {
            max_body,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 512,
            blocking_scorers: 2,
        }
    }
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
    /// The process's memory budget (the inference log and the shadow hold clones).
    pub budget: Budget,
    /// The bearer tokens of the route groups that ask for one.
    pub auth: Auth,
    store_readers: Semaphore,
    in_flight: AtomicUsize,
    scorers: Semaphore,
}

/// What an [`AppState`] is made of.
pub struct Parts {
    pub registry: Arc<Registry>,
    pub default_model: ModelName,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub shadow: Arc<Shadow>,
    pub log: Arc<InferenceLog>,
    pub activity: Arc<Activity>,
    pub budget: Budget,
    pub auth: Auth,
}

/// One request being scored, counted in [`Shared::in_flight`] until dropped.
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(parts: Parts) -> Self {
        let limits = parts.limits;
        Self(Arc::new(Shared {
            registry: parts.registry,
            default_model: parts.default_model,
            limits,
            metrics: parts.metrics,
            shadow: parts.shadow,
            log: parts.log,
            activity: parts.activity,
            budget: parts.budget,
            auth: parts.auth,
            store_readers: Semaphore::new(STORE_READERS),
            in_flight: AtomicUsize::new(0),
            scorers: Semaphore::new(limits.blocking_scorers.max(1)),
        }))
    }

    /// Counts a request as being scored, or answers 429 when `--max-concurrent-requests` are.
    pub fn admit(&self) -> Result<InFlight<'_>, ApiError> {
        let limit = self.limits.max_concurrent_requests;
        let admitted = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            });
        match admitted {
            Ok(_) => Ok(InFlight(&self.in_flight)),
            Err(_) => Err(ApiError::new(
                ErrorKind::Overloaded,
                format!("{limit} requests are being scored (--max-concurrent-requests): retry in a moment"),
            )),
        }
    }

    /// Reserves `bytes` of the memory budget, or answers 429.
    pub fn reserve(&self, bytes: usize) -> Result<Reservation, ApiError> {
        self.budget
            .try_reserve(bytes)
            .map_err(|e| ApiError::over_budget(&e))
    }

    /// A turn to score on the blocking pool (waits for one within the request deadline).
    pub async fn scorer(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        self.scorers
            .acquire()
            .await
            .map_err(|e| ApiError::internal(&e))
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
