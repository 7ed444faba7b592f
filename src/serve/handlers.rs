//! The `/predict` family, `/models`, `/metrics`, health and the fallbacks. Each handler reads the
//! registry (never a file) and answers through the wire types of [`crate::api`] or an
//! [`ApiError`].

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::body::{RawBody, RequestId, REQUEST_ID_HEADER};
use super::error::{ApiError, ErrorKind};
use super::lookup::{loaded_default, loaded_production, loaded_version, model_name, unknown_model};
use super::reply::{self, APPLICATION_JSON, BLOCKING_BODY_BYTES, MODEL_VERSION_HEADER};
use super::state::AppState;
use super::status::{DetailResponse, ModelsResponse, ShadowJson};
use crate::api;
use crate::inference_log::Record;
use crate::registry::{LoadedModel, Registry};

/// `GET|POST /healthcheck`: liveness, with the reference server's text. A POST body is read
/// and dropped: hyper cannot reuse a keep-alive connection whose request body was left unread.
pub async fn healthcheck(_body: RawBody) -> Response {
    reply::text("Server is up!")
}

/// `GET /ready`: 200 once the default model's production version is loaded, else 503.
pub async fn ready(State(state): State<AppState>) -> Result<Response, ApiError> {
    let loaded = loaded_default(&state)?;
    Ok(reply::json(
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
    RequestId(request_id): RequestId,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let loaded = loaded_default(&state)?;
    let origin = Origin {
        route: "/predict",
        shadowed: Shadowed::Yes,
        request_id,
    };
    predict_with(&state, loaded, body, origin).await
}

/// Whether a route's requests may be shadowed: those that name a version are not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shadowed {
    Yes,
    No,
}

/// Where a scoring request came from, for the shadow and the inference log.
struct Origin {
    route: &'static str,
    shadowed: Shadowed,
    /// Set when the inference log is on (see [`RequestId`]).
    request_id: Option<String>,
}

/// Scores `body` with `loaded` and answers with the JSON and the `X-Model-Version` header (and
/// `X-Request-Id` when the inference log is on). A sampled request's rows go to the shadow queue
/// and the inference log after the answer is made: neither touches the answer.
async fn predict_with(
    state: &AppState,
    loaded: Arc<LoadedModel>,
    body: Bytes,
    mut origin: Origin,
) -> Result<Response, ApiError> {
    let version = loaded.template.version_header();
    let candidate = match origin.shadowed {
        Shadowed::Yes => state.shadow_for(&loaded),
        Shadowed::No => None,
    };
    let logged = origin.request_id.is_some() && state.log.sample();
    let keep_rows = candidate.is_some() || logged;
    let scored = if body.len() > BLOCKING_BODY_BYTES {
        let scorer = Arc::clone(&loaded);
        tokio::task::spawn_blocking(move || score(&scorer, &body, keep_rows))
            .await
            .map_err(|e| ApiError::internal(&e))?
    } else {
        score(&loaded, &body, keep_rows)
    };
    let request_id = origin
        .request_id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok());
    let (answer, rows) = match scored {
        Ok(scored) => scored,
        Err(e) => {
            if logged {
                log_failure(state, loaded, origin, &e);
            }
            let mut response = e.into_response();
            if let Some(id) = request_id {
                response.headers_mut().insert(REQUEST_ID_HEADER, id);
            }
            return Ok(response);
        }
    };
    if let Some(rows) = rows {
        let width = loaded.model.feature_names().len().max(1);
        let batch = rows.len() > width;
        let (for_log, for_shadow) = match (logged, &candidate) {
            (true, Some(_)) => (Some(rows.clone()), Some(rows)),
            (true, None) => (Some(rows), None),
            (false, _) => (None, Some(rows)),
        };
        if let (Some(candidate), Some(rows)) = (&candidate, for_shadow) {
            state
                .shadow
                .submit(Arc::clone(&loaded), Arc::clone(candidate), rows);
        }
        if let (Some(rows), Some(id)) = (for_log, origin.request_id.take()) {
            state.log.submit(Record {
                production: Arc::clone(&loaded),
                candidate,
                request_id: id,
                route: origin.route,
                rows,
                batch,
                status: 200,
                error: None,
                at: SystemTime::now(),
            });
        }
    }
    let mut response = Response::new(Body::from(answer));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, APPLICATION_JSON);
    headers.insert(MODEL_VERSION_HEADER, version);
    if let Some(id) = request_id {
        headers.insert(REQUEST_ID_HEADER, id);
    }
    Ok(response)
}

/// Logs a request that failed: its status and error, no features.
fn log_failure(state: &AppState, loaded: Arc<LoadedModel>, origin: Origin, e: &ApiError) {
    if let Some(id) = origin.request_id {
        state.log.submit(Record {
            production: loaded,
            candidate: None,
            request_id: id,
            route: origin.route,
            rows: Vec::new(),
            batch: false,
            status: e.status().as_u16(),
            error: Some(e.message.clone()),
            at: SystemTime::now(),
        });
    }
}

/// The answer, and the scored rows when `keep_rows` (for the shadow).
fn score(
    loaded: &LoadedModel,
    body: &[u8],
    keep_rows: bool,
) -> Result<(Vec<u8>, Option<Vec<f64>>), ApiError> {
    let mut rows = keep_rows.then(Vec::new);
    let answer = api::answer(&loaded.model, &loaded.template, body, |row| {
        loaded.observe_row(row);
        if let Some(rows) = rows.as_mut() {
            rows.extend_from_slice(row);
        }
    })?;
    Ok((answer, rows))
}

/// `POST /explain`: `/predict`'s answer for the default model, with each instance's logit
/// decomposed into a baseline and per-feature contributions.
pub async fn explain(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let loaded = loaded_default(&state)?;
    explain_with(loaded, body).await
}

/// `POST /models/{name}/explain`: as `/explain`, with model `name`'s production version.
pub async fn model_explain(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let name = model_name(path)?;
    let loaded = loaded_production(&state, &name)?;
    explain_with(loaded, body).await
}

async fn explain_with(loaded: Arc<LoadedModel>, body: Bytes) -> Result<Response, ApiError> {
    let version = loaded.template.version_header();
    // Explanations cost more per row than predictions: off the async threads from a smaller size.
    let big = body.len() > BLOCKING_BODY_BYTES / 4;
    let explain = move || {
        api::explain(&loaded.model, &body, |row| loaded.observe_row(row)).map_err(ApiError::from)
    };
    let answer = if big {
        tokio::task::spawn_blocking(explain)
            .await
            .map_err(|e| ApiError::internal(&e))??
    } else {
        explain()?
    };
    let mut response = Response::new(Body::from(answer));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, APPLICATION_JSON);
    headers.insert(MODEL_VERSION_HEADER, version);
    Ok(response)
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
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let name = model_name(path)?;
    let loaded = loaded_production(&state, &name)?;
    let origin = Origin {
        route: "/models/{name}/predict",
        shadowed: Shadowed::Yes,
        request_id,
    };
    predict_with(&state, loaded, body, origin).await
}

/// `POST /models/{name}/versions/{version}/predict`: score with any complete version on disk,
/// loaded on demand and kept in a bounded cache.
pub async fn version_predict(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    RequestId(request_id): RequestId,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let loaded = loaded_version(&state, path).await?;
    let origin = Origin {
        route: "/models/{name}/versions/{version}/predict",
        shadowed: Shadowed::No,
        request_id,
    };
    predict_with(&state, loaded, body, origin).await
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
        .ok_or_else(|| unknown_model(&name))?
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
