//! Our own body extractor: the raw bytes of a request, whatever its `Content-Type`.
//!
//! Users send `curl -X POST -d '{…}'`, which curl labels `application/x-www-form-urlencoded`;
//! axum's `Json` would refuse it with a 415. This reads the body as bytes, refuses one larger
//! than `--max-body` before buffering it (from `Content-Length`, or while reading a chunked one),
//! and reserves its bytes from the memory budget before they arrive (429 when they do not fit).
//! A body that trickles in is cut by the request deadline (`serve::track`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderName};
use http_body_util::BodyExt as _;

use super::error::{ApiError, ErrorKind};
use super::state::AppState;
use crate::budget::Reservation;

/// The request body, at most `max_body` bytes, and its reservation in the memory budget (which
/// the scoring pipeline grows for what the body decodes to and its answer).
pub struct RawBody(pub Bytes, pub Reservation);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.limits.max_body;
        let too_large = || {
            ApiError::new(
                ErrorKind::BodyTooLarge,
                format!("the request body is larger than the limit of {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        // Within the limit, so it fits a usize. A chunked body reserves frame by frame.
        let mut body = req.into_body();
        let mut held = match state.reserve(declared.map_or(0, |len| len as usize)) {
            Ok(held) => held,
            Err(overloaded) => return Err(drained(body, limit, overloaded).await),
        };
        let reserved_up_front = declared.is_some();
        // Frames are counted as they arrive, so a chunked body over the limit is refused after
        // at most `limit` bytes; a one-frame body (the usual case) is passed on without a copy.
        // A body that trickles in is cut by the request deadline around every handler.
        let mut single: Option<Bytes> = None;
        let mut joined: Option<Vec<u8>> = None;
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::new(
                    ErrorKind::UnreadableBody,
                    format!("could not read the request body: {e}"),
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            total += data.len();
            if total > limit {
                return Err(too_large());
            }
            if !reserved_up_front {
                // Without a length the joined copy grows by doubling: twice the frame.
                if let Err(e) = held.grow(2 * data.len()) {
                    drop((single, joined, held));
                    return Err(drained(body, limit - total, ApiError::over_budget(&e)).await);
                }
            }
            if let Some(joined) = joined.as_mut() {
                joined.extend_from_slice(&data);
            } else if let Some(first) = single.take() {
                // Sized for the whole declared body at once (reserved above), so it never grows.
                let capacity = declared.map_or(0, |len| len as usize);
                let mut both = Vec::with_capacity(capacity.max(first.len() + data.len()));
                both.extend_from_slice(&first);
                both.extend_from_slice(&data);
                joined = Some(both);
            } else {
                single = Some(data);
            }
        }
        Ok(Self(
            joined.map(Bytes::from).or(single).unwrap_or_default(),
            held,
        ))
    }
}

/// `error`, once the rest of `body` (at most `limit` bytes) has been read and dropped frame by
/// frame: a client refused with a 429 then reads the answer on a connection that stays open,
/// instead of a broken pipe halfway through its upload.
async fn drained(mut body: axum::body::Body, limit: usize, error: ApiError) -> ApiError {
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen > limit {
                break;
            }
        }
    }
    error
}

/// The request's id for the inference log: the client's `X-Request-Id` if it sent a usable one
/// (1 to 128 visible ASCII characters), else a new random one; `None` when the log is off, so
/// a server that does not log pays nothing. Echoed back on the answer.
pub struct RequestId(pub Option<String>);

/// The header that carries a request's id, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

impl FromRequestParts<AppState> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if !state.log.enabled() {
            return Ok(Self(None));
        }
        let sent = parts
            .headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()));
        Ok(Self(Some(sent.map_or_else(
            crate::inference_log::new_request_id,
            str::to_owned,
        ))))
    }
}
