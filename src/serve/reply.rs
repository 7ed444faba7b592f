//! Building answers: JSON and text responses, the version header, and when scoring leaves the
//! async threads.

use axum::body::Bytes;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use crate::budget::Reservation;

/// Bodies larger than this are scored on the blocking pool, off the async threads.
pub const BLOCKING_BODY_BYTES: usize = 64 * 1024;

/// The header that names the version behind every prediction (a constant name: inserting it
/// does not parse it again per answer).
pub const MODEL_VERSION_HEADER: HeaderName = HeaderName::from_static("x-model-version");

pub const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
pub const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// `body` as a JSON response with `status`.
pub fn json(status: StatusCode, body: &impl Serialize) -> Response {
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

/// `text` as a `text/plain` 200.
pub fn text(text: impl Into<String>) -> Response {
    ([(header::CONTENT_TYPE, TEXT_PLAIN)], text.into()).into_response()
}

/// `bytes` as a body that keeps `held` (its reservation in the memory budget) until hyper has
/// sent it and dropped it. What was reserved beyond the buffer's own allocation is given back
/// now.
pub fn reserved(bytes: Vec<u8>, mut held: Reservation) -> Bytes {
    held.shrink_to(bytes.capacity());
    Bytes::from_owner(Owned { bytes, _held: held })
}

struct Owned {
    bytes: Vec<u8>,
    _held: Reservation,
}

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}
