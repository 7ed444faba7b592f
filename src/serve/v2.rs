//! Open Inference Protocol (KServe v2) REST routes, over the same registry as `/predict`.
//!
//! Health answers follow the protocol: 200 for true, a 4xx (400, or 404 for an unknown model or
//! version) for false, with an empty body. Metadata and inference errors are the server's usual
//! `{"error": "…", "kind": "…"}` with the status of the one table in `serve/error.rs`: 400 for a
//! malformed request, 422 for input that is well formed but unusable (a missing feature, an empty
//! batch, a non-finite value), 404 for an unknown model or version, 503 when not ready.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::FromRequestParts;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;

use super::body::{RawBody, RequestId};
use super::error::{ApiError, ErrorKind};
use super::lookup::{loaded_production, loaded_version, model_name};
use super::pipeline::{self, Origin, Wire};
use super::reply;
use super::state::AppState;
use crate::oip;
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
    health(state.registry.readiness().ready())
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
    body: RawBody,
) -> Result<Response, ApiError> {
    let name = model_name(path)?;
    let loaded = loaded_production(&state, &name)?;
    let origin = Origin {
        route: "/v2/models/{name}/infer",
        shadowed: true,
        request_id,
    };
    let wire = header_length.wire()?;
    pipeline::score(&state, loaded, body, origin, wire).await
}

/// `POST /v2/models/{name}/versions/{version}/infer`. Not shadowed: the request names its
/// version.
pub async fn version_infer(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    header_length: HeaderLength,
    RequestId(request_id): RequestId,
    body: RawBody,
) -> Result<Response, ApiError> {
    let loaded = loaded_version(&state, path).await?;
    let origin = Origin {
        route: "/v2/models/{name}/versions/{version}/infer",
        shadowed: false,
        request_id,
    };
    let wire = header_length.wire()?;
    pipeline::score(&state, loaded, body, origin, wire).await
}

const HEADER_LENGTH: HeaderName = HeaderName::from_static(oip::HEADER_LENGTH);

/// The request's `Inference-Header-Content-Length`, read without copying the headers: `Err` when
/// it is not a byte count, which the handler reports after the model is found (so a request for
/// an unknown model is a 404 whatever its headers).
pub struct HeaderLength(Result<Option<usize>, ()>);

impl HeaderLength {
    /// The request's wire format: binary tensor data after that many bytes of JSON, or JSON only;
    /// 400 when the header is not a byte count.
    fn wire(self) -> Result<Wire, ApiError> {
        let header_length = self.0.map_err(|()| {
            ApiError::new(
                ErrorKind::InvalidHeader,
                format!("{} must be a byte count", oip::HEADER_LENGTH),
            )
        })?;
        Ok(Wire::Infer { header_length })
    }
}

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
