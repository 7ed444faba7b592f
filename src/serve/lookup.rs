//! Finding the model a request is for: parse the name and version in the URL into checked types
//! (before any path exists), then take the model from the registry, saying precisely why when it
//! is not there.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;

use super::error::{ApiError, ErrorKind};
use super::state::AppState;
use crate::registry::{LoadedModel, ModelStatus, VersionError};
use crate::store::{ModelName, StoreError, VersionId};

/// A model name from the URL: 400 unless it is a valid name (so `..`, `%2e%2e` or an over-long
/// name never reaches a path).
pub fn model_name(raw: Result<Path<String>, PathRejection>) -> Result<ModelName, ApiError> {
    let Path(raw) = raw.map_err(path_error)?;
    ModelName::try_from(raw).map_err(invalid_segment)
}

/// A name or version in the URL that is not one.
fn invalid_segment(e: StoreError) -> ApiError {
    ApiError::new(ErrorKind::InvalidPath, e.to_string())
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::new(ErrorKind::InvalidPath, format!("invalid path: {e}"))
}

/// A 404 for a model this server does not serve: not in the store, or not in its `--model` list.
pub fn unknown_model(state: &AppState, name: &ModelName) -> ApiError {
    if let Some(only) = state
        .registry
        .only()
        .filter(|_| !state.registry.serves(name.as_str()))
    {
        let served: Vec<&str> = only.iter().map(ModelName::as_str).collect();
        return ApiError::new(
            ErrorKind::UnknownModel,
            format!(
                "this server serves only {} (its --model list), not \"{name}\"",
                served.join(", ")
            ),
        );
    }
    ApiError::new(
        ErrorKind::UnknownModel,
        format!("no model named \"{name}\" in the store; GET /models lists them"),
    )
}

/// The default model, or a 503 that says why it is not loaded.
pub fn loaded_default(state: &AppState) -> Result<Arc<LoadedModel>, ApiError> {
    let name = state.default_model.as_str();
    state
        .registry
        .get(name)
        .ok_or_else(|| not_loaded(state, name))
}

/// A named model's production version: 404 for a model the store does not hold, 503 for one
/// it holds but cannot serve yet.
pub fn loaded_production(state: &AppState, name: &ModelName) -> Result<Arc<LoadedModel>, ApiError> {
    if let Some(loaded) = state.registry.get(name.as_str()) {
        return Ok(loaded);
    }
    if !state.registry.knows(name.as_str()) && state.registry.store_readable() {
        return Err(unknown_model(state, name));
    }
    Err(not_loaded(state, name.as_str()))
}

/// The model and version named in a `…/{name}/versions/{version}/…` URL: from memory if it is
/// production or cached, else loaded on the blocking pool. 400 for a malformed name or version,
/// 404 for a missing one, 503 for one that cannot be served or whose store cannot be read, 429
/// when the memory budget cannot hold its load now.
pub async fn loaded_version(
    state: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Arc<LoadedModel>, ApiError> {
    let Path((name, version)) = path.map_err(path_error)?;
    let name = ModelName::try_from(name).map_err(invalid_segment)?;
    let version: VersionId = version.parse().map_err(invalid_segment)?;
    if let Some(loaded) = state.registry.cached_version(&name, version) {
        return Ok(loaded);
    }
    if !state.registry.knows(name.as_str()) {
        return Err(unknown_model(state, &name));
    }
    state
        .read_store(move |registry| registry.load_version(&name, version))
        .await?
        .map_err(|e| {
            let kind = match e {
                VersionError::NotFound { .. } => ErrorKind::UnknownVersion,
                VersionError::Unservable { .. } => ErrorKind::Unservable,
                VersionError::Unavailable { budget: true, .. } => ErrorKind::Overloaded,
                VersionError::Unavailable { budget: false, .. } => ErrorKind::StoreUnavailable,
            };
            ApiError::new(kind, e.to_string())
        })
}

/// A 503 that says why `name` is not loaded.
pub fn not_loaded(state: &AppState, name: &str) -> ApiError {
    let status = state.registry.status(name);
    let why = match (status, state.registry.store_status().error) {
        (_, Some(store_error)) => format!("the store cannot be read: {store_error}"),
        (
            Some(ModelStatus {
                last_error: Some(e),
                ..
            }),
            _,
        ) => e,
        (Some(_), _) => "it has no production version yet: run `limen validate`".to_owned(),
        (None, _) => {
            "the store holds no such model yet: run `limen train` and `limen validate`".to_owned()
        }
    };
    ApiError::new(
        ErrorKind::NotLoaded,
        format!("model \"{name}\" is not loaded: {why}"),
    )
}
