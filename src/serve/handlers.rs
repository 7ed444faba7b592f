//! Route handlers. Each one reads the registry (never a file) and answers through the wire types
//! of [`crate::api`] or an [`ApiError`].

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::body::RawBody;
use super::error::ApiError;
use super::AppState;
use crate::api;
use crate::registry::{LoadedModel, ModelStatus, StoreStatus, VersionError};
use crate::store::{ModelName, StoreError, VersionId};

/// Bodies larger than this are scored on the blocking pool, off the async threads.
pub(super) const BLOCKING_BODY_BYTES: usize = 64 * 1024;

/// The header that names the version behind every prediction.
pub const MODEL_VERSION_HEADER: &str = "x-model-version";

const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// `GET|POST /healthcheck`: liveness, with the reference server's text. A POST body is read
/// and dropped: hyper cannot reuse a keep-alive connection whose request body was left unread.
pub async fn healthcheck(_body: RawBody) -> Response {
    ([(header::CONTENT_TYPE, TEXT_PLAIN)], "Server is up!").into_response()
}

/// `GET /ready`: 200 once the default model's production version is loaded, else 503.
pub async fn ready(State(state): State<AppState>) -> Result<Response, ApiError> {
    let loaded = loaded_default(&state)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "status": "ready",
            "model": loaded.model.name(),
            "version": loaded.version.to_string(),
        }),
    ))
}

/// `POST /predict`: score with the default model's production version.
pub async fn predict(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let loaded = loaded_default(&state)?;
    predict_with(loaded, body).await
}

/// Scores `body` with `loaded` and answers with the JSON and the `X-Model-Version` header.
pub async fn predict_with(loaded: Arc<LoadedModel>, body: Bytes) -> Result<Response, ApiError> {
    let version = HeaderValue::from(loaded.version.get());
    let answer = if body.len() > BLOCKING_BODY_BYTES {
        tokio::task::spawn_blocking(move || score(&loaded, &body))
            .await
            .map_err(|e| ApiError::internal(&e))??
    } else {
        score(&loaded, &body)?
    };
    let mut response = Response::new(Body::from(answer));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, APPLICATION_JSON);
    headers.insert(MODEL_VERSION_HEADER, version);
    Ok(response)
}

fn score(loaded: &LoadedModel, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    Ok(api::answer(&loaded.model, &loaded.template, body, |row| {
        loaded.observe_row(row)
    })?)
}

/// `GET /version`: the version of the default model being served, as plain text.
pub async fn version(State(state): State<AppState>) -> Result<Response, ApiError> {
    let loaded = loaded_default(&state)?;
    Ok((
        [(header::CONTENT_TYPE, TEXT_PLAIN)],
        loaded.version.to_string(),
    )
        .into_response())
}

#[derive(Serialize)]
struct ModelsResponse {
    default_model: String,
    store: StoreStatus,
    models: Vec<ModelStatus>,
}

/// `GET /models`: every model in the store, what is served, and what went wrong.
pub async fn models(State(state): State<AppState>) -> Result<Response, ApiError> {
    let registry = Arc::clone(&state.registry);
    let models = tokio::task::spawn_blocking(move || registry.report())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let body = ModelsResponse {
        default_model: state.default_model.to_string(),
        store: state.registry.store_status(),
        models,
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /models/{name}/predict`: score with that model's production version.
pub async fn model_predict(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let name = model_name(path.map(|Path(n)| n))?;
    let loaded = loaded_production(&state, &name)?;
    predict_with(loaded, body).await
}

/// `POST /models/{name}/versions/{version}/predict`: score with any complete version on disk,
/// loaded on demand and kept in a bounded cache.
pub async fn version_predict(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let loaded = loaded_version(&state, path).await?;
    predict_with(loaded, body).await
}

/// The model and version named in a `…/{name}/versions/{version}/…` URL: from memory if it is
/// production or cached, else loaded on the blocking pool. 400 for a malformed name or version,
/// 404 for a missing one, 503 for one that cannot be served.
pub(super) async fn loaded_version(
    state: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Arc<LoadedModel>, ApiError> {
    let Path((name, version)) = path.map_err(path_error)?;
    let name = model_name(Ok(name))?;
    let version: VersionId = version
        .parse()
        .map_err(|e: StoreError| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    if let Some(loaded) = state.registry.cached_version(&name, version) {
        return Ok(loaded);
    }
    if !state.registry.knows(name.as_str()) {
        return Err(unknown_model(&name));
    }
    let registry = Arc::clone(&state.registry);
    tokio::task::spawn_blocking(move || registry.load_version(&name, version))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| match e {
            VersionError::NotFound { .. } => ApiError::not_found(e.to_string()),
            VersionError::Unservable { .. } => ApiError::unavailable(e.to_string()),
        })
}

/// `GET /models/{name}`: metadata, pointers, versions on disk and load state of one model.
pub async fn model_detail(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = model_name(path.map(|Path(n)| n))?;
    let registry = Arc::clone(&state.registry);
    let lookup = name.clone();
    let detail = tokio::task::spawn_blocking(move || registry.detail(&lookup))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| unknown_model(&name))?
        .map_err(|e| ApiError::unavailable(format!("cannot list the versions of {name}: {e}")))?;
    Ok(json_response(StatusCode::OK, &detail))
}

/// A model name from the URL: 400 unless it is a valid name (so `..`, `%2e%2e` or an over-long
/// name never reaches a path).
pub(super) fn model_name(raw: Result<String, PathRejection>) -> Result<ModelName, ApiError> {
    let raw = raw.map_err(path_error)?;
    raw.parse()
        .map_err(|e: StoreError| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, format!("invalid path: {e}"))
}

fn unknown_model(name: &ModelName) -> ApiError {
    ApiError::not_found(format!(
        "no model named {name:?} in the store; GET /models lists them"
    ))
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let store_up = state.registry.store_status().error.is_none();
    let text = state
        .metrics
        .render(state.registry.seconds_since_scan(), store_up);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// Any path no route matches.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route for {method} {}; try POST /predict, POST /models/{{name}}/predict, GET /models, GET /healthcheck, GET /ready or GET /version",
        uri.path()
    ))
}

/// A known path with the wrong method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// The default model, or a 503 that says why it is not loaded.
fn loaded_default(state: &AppState) -> Result<Arc<LoadedModel>, ApiError> {
    let name = state.default_model.as_str();
    if let Some(loaded) = state.registry.get(name) {
        return Ok(loaded);
    }
    Err(not_loaded(state, name))
}

/// A named model's production version: 404 for a model the store does not hold, 503 for one
/// it holds but cannot serve yet.
pub(super) fn loaded_production(
    state: &AppState,
    name: &ModelName,
) -> Result<Arc<LoadedModel>, ApiError> {
    if let Some(loaded) = state.registry.get(name.as_str()) {
        return Ok(loaded);
    }
    if !state.registry.knows(name.as_str()) && state.registry.store_status().error.is_none() {
        return Err(unknown_model(name));
    }
    Err(not_loaded(state, name.as_str()))
}

/// A 503 that says why `name` is not loaded.
fn not_loaded(state: &AppState, name: &str) -> ApiError {
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
    ApiError::unavailable(format!("model {name:?} is not loaded: {why}"))
}

pub(super) fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, APPLICATION_JSON);
            response
        }
        Err(e) => ApiError::internal(&e).into_response(),
    }
}
