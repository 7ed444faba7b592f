//! What every handler can see: the registry, the default model, the limits, the metrics.

use std::sync::Arc;
use std::time::Duration;

use crate::registry::Registry;
use crate::store::ModelName;
use crate::telemetry::Metrics;

/// Per-request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Longest a request may take, body upload included.
    pub request_timeout: Duration,
}

/// The state shared by every handler; cheap to clone (three `Arc`s and two numbers).
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub default_model: Arc<ModelName>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
}
