//! The one scoring path of `/predict`, `/explain` and `/v2` infer (and their model and version
//! routes): admission, decoding and scoring in the request's wire format, then the inference log
//! and the shadow, and the same headers on every answer.
//!
//! In order: the request is counted against `--max-concurrent-requests` (429 past it); its body's
//! reservation in the memory budget grows by what decoding it can hold (from the body's size and
//! the model's widths), then by its answer's size once the rows are known (429 when either does
//! not fit); a large body is scored on the blocking pool, a few at a time. Only once the answer
//! is made are its rows counted (predictions, out-of-range values, drift) and handed to the
//! inference log and the shadow, which reserve their own bytes or drop and count. The answer
//! keeps its reservation until hyper has sent it.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::body::{RawBody, REQUEST_ID_HEADER};
use super::error::ApiError;
use super::reply::{self, APPLICATION_JSON, BLOCKING_BODY_BYTES, MODEL_VERSION_HEADER};
use super::state::AppState;
use crate::api;
use crate::budget::Reservation;
use crate::inference_log::Record;
use crate::oip::{self, InferRequest};
use crate::registry::LoadedModel;

/// The wire format of a scoring request.
#[derive(Debug, Clone, Copy)]
pub enum Wire {
    /// `/predict`: a JSON object or `{"instances": […]}`.
    Predict,
    /// `/explain`: `/predict`'s body, answered with each instance's contributions.
    Explain,
    /// The Open Inference Protocol, with `Inference-Header-Content-Length` when binary tensor
    /// data follows the JSON.
    Infer { header_length: Option<usize> },
}

/// Where a scoring request came from, for the shadow and the inference log.
pub struct Origin {
    pub route: &'static str,
    /// Whether the candidate may score it too (not for requests that name a version).
    pub shadowed: bool,
    /// Set when the inference log is on (see [`super::body::RequestId`]).
    pub request_id: Option<String>,
}

/// A scored request.
struct Scored {
    answer: Vec<u8>,
    /// The decoded rows, row-major in the model's feature order.
    rows: Vec<f64>,
    /// The texts of their unseen categories, for the inference log.
    unseen: Vec<String>,
    /// Whether the request was a batch.
    batch: bool,
    /// The JSON part's length when binary tensor data follows it.
    json_length: Option<usize>,
}

const HEADER_LENGTH: HeaderName = HeaderName::from_static(oip::HEADER_LENGTH);

/// Scores `body` with `loaded` in the `wire` format and answers with the `X-Model-Version`
/// header (and `X-Request-Id` when the inference log is on).
pub async fn score(
    state: &AppState,
    loaded: Arc<LoadedModel>,
    RawBody(body, mut held): RawBody,
    origin: Origin,
    wire: Wire,
) -> Result<Response, ApiError> {
    let _in_flight = state.admit()?;
    held.grow(decode_bytes(&loaded, wire, body.len()))
        .map_err(|e| ApiError::over_budget(&e))?;
    let candidate = if origin.shadowed {
        state.shadow_for(&loaded)
    } else {
        None
    };
    let logged = origin.request_id.is_some() && state.log.sample();
    // Explanations cost more per row than predictions: off the async threads from a smaller size.
    let blocking = match wire {
        Wire::Explain => BLOCKING_BODY_BYTES / 4,
        Wire::Predict | Wire::Infer { .. } => BLOCKING_BODY_BYTES,
    };
    let (scored, held) = if body.len() > blocking {
        let _turn = state.scorer().await?;
        let scorer = Arc::clone(&loaded);
        tokio::task::spawn_blocking(move || {
            let scored = run(&scorer, wire, &body, &mut held);
            drop(body);
            // This thread may wait a while for its next batch: give back what this one freed;
            // the workers that free its answer once it is sent will do the same when idle.
            crate::budget::release_idle_memory();
            crate::budget::note_large_work();
            (scored, held)
        })
        .await
        .map_err(|e| ApiError::internal(&e))?
    } else {
        (run(&loaded, wire, &body, &mut held), held)
    };
    let request_id = origin.request_id;
    let echo = request_id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok());
    let scored = match scored {
        Ok(scored) => scored,
        Err(e) => {
            loaded
                .errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let (true, Some(id)) = (logged, request_id) {
                state.log.submit(Record {
                    production: loaded,
                    candidate: None,
                    request_id: id,
                    route: origin.route,
                    rows: Vec::new(),
                    unseen: Vec::new(),
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
    let version = loaded.template.version_header();
    let Scored {
        answer,
        rows,
        unseen,
        batch,
        json_length,
    } = scored;
    hand_on(
        state,
        loaded,
        candidate,
        logged,
        request_id,
        origin.route,
        (rows, unseen),
        batch,
    );

    let mut response = Response::new(Body::from(reply::reserved(answer, held)));
    let headers = response.headers_mut();
    match json_length {
        None => {
            headers.insert(header::CONTENT_TYPE, APPLICATION_JSON);
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
    Ok(response)
}

/// The rows of an answered request, to the inference log and the shadow (each reserves its own
/// bytes or drops and counts).
#[allow(clippy::too_many_arguments)]
fn hand_on(
    state: &AppState,
    loaded: Arc<LoadedModel>,
    candidate: Option<Arc<LoadedModel>>,
    logged: bool,
    request_id: Option<String>,
    route: &'static str,
    (rows, unseen): (Vec<f64>, Vec<String>),
    batch: bool,
) {
    let request_id = request_id.filter(|_| logged);
    let (for_log, for_shadow) = match (&request_id, &candidate) {
        (Some(_), Some(_)) => (Some(rows.clone()), Some(rows)),
        (Some(_), None) => (Some(rows), None),
        (None, Some(_)) => (None, Some(rows)),
        (None, None) => (None, None),
    };
    if let (Some(candidate), Some(rows)) = (&candidate, for_shadow) {
        state
            .shadow
            .submit(Arc::clone(&loaded), Arc::clone(candidate), rows);
    }
    if let (Some(rows), Some(id)) = (for_log, request_id) {
        state.log.submit(Record {
            production: loaded,
            candidate,
            request_id: id,
            route,
            rows,
            unseen,
            batch,
            status: 200,
            error: None,
            at: SystemTime::now(),
        });
    }
}

/// The most bytes decoding a body of `len` bytes for `loaded` can hold before the rows are
/// known: the `/predict` rows bound, or for the Open Inference Protocol the parsed request's
/// strings (the tensors are bounded once their shapes are read).
fn decode_bytes(loaded: &LoadedModel, wire: Wire, len: usize) -> usize {
    match wire {
        Wire::Predict | Wire::Explain => loaded.template.decode_bytes(len),
        Wire::Infer { .. } => len.saturating_add(4096),
    }
}

/// Decodes and scores `body`, growing `held` by what the tensors and the answer take before
/// they are allocated; counts the rows once the answer is made.
fn run(
    loaded: &LoadedModel,
    wire: Wire,
    body: &[u8],
    held: &mut Reservation,
) -> Result<Scored, ApiError> {
    let over = |e: crate::budget::OverBudget| ApiError::over_budget(&e);
    let model = &loaded.model;
    let scored = match wire {
        Wire::Predict | Wire::Explain => {
            let decoded = api::decode(body, model.schema())?;
            let explain = matches!(wire, Wire::Explain);
            let answer_bytes = if explain {
                loaded.template.explain_bytes(decoded.rows)
            } else {
                loaded.template.answer_bytes(decoded.rows)
            };
            held.grow(answer_bytes).map_err(over)?;
            let answer = if explain {
                api::respond_explained(model, &loaded.template, &decoded, &loaded.classes)?
            } else {
                api::respond(model, &loaded.template, &decoded, &loaded.classes)?
            };
            Scored {
                answer,
                batch: decoded.batch,
                rows: decoded.values,
                unseen: decoded.unseen,
                json_length: None,
            }
        }
        Wire::Infer { header_length } => {
            let request = InferRequest::parse(body, header_length)?;
            let outputs = request.outputs()?;
            // Refuse an answer that would be too large before decoding its rows. A claim larger
            // than the body (every row takes at least a byte) is a malformed request: `rows`
            // says so.
            let claimed = oip::claimed_rows(&request);
            if claimed <= body.len() {
                crate::input::check_answer_size(claimed, loaded.infer.row_bytes(&outputs))?;
            }
            let id = request.id.as_deref().map_or(0, str::len);
            let answer_bytes = loaded
                .infer
                .answer_bytes(claimed.min(body.len()), &outputs, id);
            held.grow(request.decode_bytes().saturating_add(answer_bytes))
                .map_err(over)?;
            let (n, rows) = request.rows(model.schema())?;
            let answer = loaded.infer.respond(
                model,
                request.id.as_deref(),
                &outputs,
                n,
                &rows,
                &loaded.classes,
            )?;
            Scored {
                answer: answer.body,
                rows,
                unseen: Vec::new(),
                batch: true,
                json_length: answer.json_length,
            }
        }
    };
    let width = model.feature_names().len().max(1);
    for row in scored.rows.chunks_exact(width) {
        loaded.observe_row(row);
    }
    Ok(scored)
}
