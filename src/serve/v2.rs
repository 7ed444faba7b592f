//! Open Inference Protocol (KServe v2) REST routes, over the same registry as `/predict`.
//!
//! Health answers follow the protocol: 200 for true, a 4xx (400, or 404 for an unknown model or
//! version) for false, with an empty body. Metadata and inference errors are the server's usual
//! `{"error": "…", "kind": "…"}` with the status of the one table in `serve/error.rs`: 400 for a
//! malformed request, 422 for input that is well formed but unusable (a missing feature, an empty
//! batch, a non-finite value), 404 for an unknown model or version, 503 when not ready.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::FromRequestParts;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::body::{RawBody, RequestId, REQUEST_ID_HEADER};
use super::error::{ApiError, ErrorKind};
use super::lookup::{loaded_production, loaded_version, model_name};
use super::reply::{self, BLOCKING_BODY_BYTES, MODEL_VERSION_HEADER};
use super::state::AppState;
use crate::inference_log::Record;
use crate::input::{check_answer_size, InputError};
use crate::oip::{self, InferRequest};
use crate::registry::LoadedModel;
use crate::store::ModelName;

/// `GET /v2`.
pub async fn server_metadata() -> Response {
    reply::json(StatusCode::OK, &oip::ServerMetadata::default())
}

/// `GET /v2/health/live`: the process answers.
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`: every model with a production version has one loaded.
pub async fn ready(State(state): State<AppState>) -> StatusCode {
    health(state.registry.all_ready())
}

/// `GET /v2/models/{name}/ready`.
pub async fn model_ready(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> StatusCode {
    match model_name(path).and_then(|n| loaded_production(&state, &n)) {
        Ok(_) => StatusCode::OK,
        Err(e) => health_error(&e),
    }
}

/// `GET /v2/models/{name}/versions/{version}/ready`.
pub async fn version_ready(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> StatusCode {
    match loaded_version(&state, path).await {
        Ok(_) => StatusCode::OK,
        Err(e) => health_error(&e),
    }
}

fn health(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// A health "false": 404 stays 404, anything else is the protocol's plain 400.
fn health_error(e: &ApiError) -> StatusCode {
    if e.status() == StatusCode::NOT_FOUND {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// `GET /v2/models/{name}`: metadata of the production version.
pub async fn model_metadata(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = model_name(path)?;
    let loaded = loaded_production(&state, &name)?;
    metadata(&state, loaded).await
}

/// `GET /v2/models/{name}/versions/{version}`.
pub async fn version_metadata(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let loaded = loaded_version(&state, path).await?;
    metadata(&state, loaded).await
}

async fn metadata(state: &AppState, loaded: Arc<LoadedModel>) -> Result<Response, ApiError> {
    let name: ModelName = loaded
        .model
        .name()
        .parse()
        .map_err(|e| ApiError::internal(&e))?;
    let versions = state
        .read_store(move |registry| registry.versions(&name))
        .await?
        .unwrap_or_else(|_| vec![loaded.version]);
    let versions = versions.iter().map(|v| v.to_string()).collect();
    Ok(reply::json(
        StatusCode::OK,
        &oip::ModelMetadata::new(&loaded.model, versions),
    ))
}

/// `POST /v2/models/{name}/infer`: infer with the production version.
pub async fn infer(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    header_length: HeaderLength,
    RequestId(request_id): RequestId,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let name = model_name(path)?;
    let loaded = loaded_production(&state, &name)?;
    let candidate = state.shadow_for(&loaded);
    let origin = ("/v2/models/{name}/infer", request_id);
    infer_with(&state, loaded, candidate, origin, header_length, body).await
}

/// `POST /v2/models/{name}/versions/{version}/infer`.
pub async fn version_infer(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    header_length: HeaderLength,
    RequestId(request_id): RequestId,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let loaded = loaded_version(&state, path).await?;
    // A request that names its version is not shadowed.
    let origin = ("/v2/models/{name}/versions/{version}/infer", request_id);
    infer_with(&state, loaded, None, origin, header_length, body).await
}

const HEADER_LENGTH: HeaderName = HeaderName::from_static(oip::HEADER_LENGTH);

/// The request's `Inference-Header-Content-Length`, read without copying the headers: `Err` when
/// it is not a byte count, which the handler reports after the model is found (so a request for
/// an unknown model is a 404 whatever its headers).
pub struct HeaderLength(Result<Option<usize>, ()>);

impl<S: Sync> FromRequestParts<S> for HeaderLength {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Found by comparing names, not `get`: looking a name up hashes all 31 bytes of it, where
        // comparing it with the few names a request has mostly stops at the length.
        let value = parts
            .headers
            .iter()
            .find_map(|(name, value)| (*name == HEADER_LENGTH).then_some(value));
        Ok(Self(match value {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .map(Some)
                .ok_or(()),
        }))
    }
}

/// Runs an inference, with the binary tensor data extension when the request uses it: a body
/// whose `Inference-Header-Content-Length` first bytes are JSON and the rest tensor data, and an
/// answer in the same form when outputs are asked for as binary.
async fn infer_with(
    state: &AppState,
    loaded: Arc<LoadedModel>,
    candidate: Option<Arc<LoadedModel>>,
    (route, request_id): (&'static str, Option<String>),
    HeaderLength(header_length): HeaderLength,
    body: Bytes,
) -> Result<Response, ApiError> {
    let header_length = header_length.map_err(|()| {
        ApiError::new(
            ErrorKind::InvalidHeader,
            format!("{} must be a byte count", oip::HEADER_LENGTH),
        )
    })?;
    let version = loaded.template.version_header();
    let logged = request_id.is_some() && state.log.sample();
    let keep_rows = candidate.is_some() || logged;
    let inferred = if body.len() > BLOCKING_BODY_BYTES {
        let scorer = Arc::clone(&loaded);
        tokio::task::spawn_blocking(move || run_inference(&scorer, &body, header_length, keep_rows))
            .await
            .map_err(|e| ApiError::internal(&e))?
    } else {
        run_inference(&loaded, &body, header_length, keep_rows)
    };
    let echo = request_id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok());
    let (answer, rows) = match inferred {
        Ok(inferred) => inferred,
        Err(e) => {
            let e = ApiError::from(e);
            if let (true, Some(id)) = (logged, request_id) {
                state.log.submit(Record {
                    production: loaded,
                    candidate: None,
                    request_id: id,
                    route,
                    rows: Vec::new(),
                    batch: false,
                    status: e.status().as_u16(),
                    error: Some(e.message.clone()),
                    at: SystemTime::now(),
                });
            }
            let mut response = e.into_response();
            if let Some(id) = echo {
                response.headers_mut().insert(REQUEST_ID_HEADER, id);
            }
            return Ok(response);
        }
    };
    if let Some(mut rows) = rows {
        let width = loaded.model.feature_names().len().max(1);
        let batch = rows.len() > width;
        if let (true, Some(id)) = (logged, request_id) {
            // The shadow needs the rows too only when there is a candidate.
            let for_log = if candidate.is_some() {
                rows.clone()
            } else {
                std::mem::take(&mut rows)
            };
            state.log.submit(Record {
                production: Arc::clone(&loaded),
                candidate: candidate.clone(),
                request_id: id,
                route,
                rows: for_log,
                batch,
                status: 200,
                error: None,
                at: SystemTime::now(),
            });
        }
        if let Some(candidate) = candidate {
            state.shadow.submit(Arc::clone(&loaded), candidate, rows);
        }
    }
    let mut response = Response::new(Body::from(answer.body));
    let headers = response.headers_mut();
    match answer.json_length {
        None => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Some(length) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(HEADER_LENGTH, HeaderValue::from(length));
        }
    }
    headers.insert(MODEL_VERSION_HEADER, version);
    if let Some(id) = echo {
        headers.insert(REQUEST_ID_HEADER, id);
    }
    Ok(response.into_response())
}

/// The answer, and the decoded rows when `keep_rows` (for the shadow).
fn run_inference(
    loaded: &LoadedModel,
    body: &[u8],
    header_length: Option<usize>,
    keep_rows: bool,
) -> Result<(oip::InferResponse, Option<Vec<f64>>), InputError> {
    let request = InferRequest::parse(body, header_length)?;
    let outputs = request.outputs()?;
    // Refuse an answer that would be too large before decoding its rows. A claim larger than
    // the body (every row takes at least a byte) is a malformed request: `rows` says so.
    let claimed = oip::claimed_rows(&request);
    if claimed <= body.len() {
        check_answer_size(claimed, oip::answer_row_bytes(&loaded.model, &outputs))?;
    }
    let (n, rows) = request.rows(loaded.model.feature_names())?;
    let answer = loaded
        .infer
        .respond(&loaded.model, request.id.as_deref(), &outputs, n, &rows)?;
    for row in rows.chunks_exact(loaded.model.feature_names().len()) {
        loaded.observe_row(row);
    }
    Ok((answer, keep_rows.then_some(rows)))
}
