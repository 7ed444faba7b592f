//! The `/predict` family, `/models`, `/metrics`, health and the fallbacks. Each handler reads the
//! registry (never a file) and answers through the wire types of [`crate::api`] or an
//! [`ApiError`].

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::body::{RawBody, RequestId};
use super::error::{ApiError, ErrorKind};
use super::lookup::{
    loaded_default, loaded_production, loaded_version, model_name, not_loaded, unknown_model,
};
use super::pipeline::{self, Origin, Wire};
use super::reply;
use super::state::AppState;
use super::status::{DetailResponse, ModelsResponse, ShadowJson};
use crate::registry::Registry;

/// `GET|POST /healthcheck`: liveness, with the reference server's text. A POST body is read
/// and dropped: hyper cannot reuse a keep-alive connection whose request body was left unread.
pub async fn healthcheck(_body: RawBody) -> Response {
    reply::text("Server is up!")
}

/// `GET /ready`: 200 once every production model this server serves is loaded (a version the
/// store holds but nobody can load is listed as refused instead of holding the replica out of
/// the Service; a model named by `--model` always waits), else 503 naming what is missing.
pub async fn ready(State(state): State<AppState>) -> Result<Response, ApiError> {
    let readiness = state.registry.readiness();
    if !readiness.ready() {
        return Err(not_ready(&state, &readiness));
    }
    let loaded: serde_json::Map<String, serde_json::Value> = readiness
        .loaded
        .iter()
        .map(|(name, version)| (name.clone(), version.to_string().into()))
        .collect();
    let refused: serde_json::Map<String, serde_json::Value> = readiness
        .refused
        .into_iter()
        .map(|(name, why)| (name, why.into()))
        .collect();
    Ok(reply::json(
        StatusCode::OK,
        &serde_json::json!({ "status": "ready", "models": loaded, "refused": refused }),
    ))
}

/// Why the server is not ready: each model still waited for (the first few), or why there is
/// nothing to serve at all.
fn not_ready(state: &AppState, readiness: &crate::registry::Readiness) -> ApiError {
    const NAMED: usize = 5;
    if readiness.waiting.is_empty() {
        let why = match state.registry.store_status().error {
            Some(e) => format!("the store cannot be read: {e}"),
            None if readiness.refused.is_empty() => {
                "the store holds no production model yet: run `limen train` and `limen validate`"
                    .to_owned()
            }
            None => {
                "no production version in the store can be loaded; GET /models says why".to_owned()
            }
        };
        return ApiError::new(ErrorKind::NotLoaded, format!("not ready: {why}"));
    }
    let mut reasons: Vec<String> = readiness
        .waiting
        .iter()
        .take(NAMED)
        .map(|name| not_loaded(state, name).message)
        .collect();
    if readiness.waiting.len() > NAMED {
        reasons.push(format!("and {} more", readiness.waiting.len() - NAMED));
    }
    ApiError::new(
        ErrorKind::NotLoaded,
        format!("not ready: {}", reasons.join("; ")),
    )
}

/// `POST /predict`: score with the default model's production version.
pub async fn predict(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    body: RawBody,
) -> Result<Response, ApiError> {
    let loaded = loaded_default(&state)?;
    let origin = Origin {
        route: "/predict",
        shadowed: true,
        request_id,
    };
    pipeline::score(&state, loaded, body, origin, Wire::Predict).await
}

/// `POST /explain`: `/predict`'s answer for the default model, with each instance's logit
/// decomposed into a baseline and per-feature contributions.
pub async fn explain(State(state): State<AppState>, body: RawBody) -> Result<Response, ApiError> {
    let loaded = loaded_default(&state)?;
    pipeline::score(&state, loaded, body, unlogged("/explain"), Wire::Explain).await
}

/// `POST /models/{name}/explain`: as `/explain`, with model `name`'s production version.
pub async fn model_explain(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: RawBody,
) -> Result<Response, ApiError> {
    let name = model_name(path)?;
    let loaded = loaded_production(&state, &name)?;
    let origin = unlogged("/models/{name}/explain");
    pipeline::score(&state, loaded, body, origin, Wire::Explain).await
}

/// Explanations are neither shadowed nor logged: they answer a person, not production traffic.
fn unlogged(route: &'static str) -> Origin {
    Origin {
        route,
        shadowed: false,
        request_id: None,
    }
}

/// `GET /version`: the version of the default model being served, as plain text.
pub async fn version(State(state): State<AppState>) -> Result<Response, ApiError> {
    let loaded = loaded_default(&state)?;
    Ok(reply::text(loaded.version.to_string()))
}

/// `GET /models`: every model in the store, what is served, and what went wrong.
pub async fn models(State(state): State<AppState>) -> Result<Response, ApiError> {
    let models = state.read_store(Registry::report).await?;
    let body = ModelsResponse {
        default_model: state.default_model.to_string(),
        store: state.registry.store_status().into(),
        models: models.into_iter().map(Into::into).collect(),
    };
    Ok(reply::json(StatusCode::OK, &body))
}

/// `POST /models/{name}/predict`: score with that model's production version.
pub async fn model_predict(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RequestId(request_id): RequestId,
    body: RawBody,
) -> Result<Response, ApiError> {
    let name = model_name(path)?;
    let loaded = loaded_production(&state, &name)?;
    let origin = Origin {
        route: "/models/{name}/predict",
        shadowed: true,
        request_id,
    };
    pipeline::score(&state, loaded, body, origin, Wire::Predict).await
}

/// `POST /models/{name}/versions/{version}/predict`: score with any complete version on disk,
/// loaded on demand and kept in a bounded cache. Not shadowed: the request names its version.
pub async fn version_predict(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    RequestId(request_id): RequestId,
    body: RawBody,
) -> Result<Response, ApiError> {
    let loaded = loaded_version(&state, path).await?;
    let origin = Origin {
        route: "/models/{name}/versions/{version}/predict",
        shadowed: false,
        request_id,
    };
    pipeline::score(&state, loaded, body, origin, Wire::Predict).await
}

/// `GET /models/{name}`: metadata, pointers, versions on disk and load state of one model.
pub async fn model_detail(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = model_name(path)?;
    let lookup = name.clone();
    let detail = state
        .read_store(move |registry| registry.detail(&lookup))
        .await?
        .ok_or_else(|| unknown_model(&state, &name))?
        .map_err(|e| {
            ApiError::new(
                ErrorKind::StoreUnavailable,
                format!("cannot list the versions of {name}: {e}"),
            )
        })?;
    let shadow = detail
        .status
        .shadow
        .map(|version| ShadowJson::new(version, state.shadow.totals(&name, version)));
    Ok(reply::json(
        StatusCode::OK,
        &DetailResponse::new(&detail, shadow),
    ))
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    state.registry.publish_psi();
    let text = state.metrics.render(
        state.registry.seconds_since_scan(),
        state.registry.store_readable(),
    );
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
    ApiError::new(
        ErrorKind::NoRoute,
        format!(
            "no route for {method} {}; try POST /predict, POST /explain, POST /models/{{name}}/predict, GET /models, \
             GET /healthcheck, GET /ready, GET /version, GET /metrics, or the Open Inference Protocol \
             under /v2 (GET /v2, POST /v2/models/{{name}}/infer)",
            uri.path()
        ),
    )
}

/// A known path with the wrong method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
