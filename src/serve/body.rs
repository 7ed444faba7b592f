//! Our own body extractor: the raw bytes of a request, whatever its `Content-Type`.
//!
//! Users send `curl -X POST -d '{…}'`, which curl labels `application/x-www-form-urlencoded`;
//! axum's `Json` would refuse it with a 415. This reads the body as bytes, refuses one larger
//! than `--max-body` before buffering it (from `Content-Length`, or while reading a chunked one).
//! A body that trickles in is cut by the request deadline (`serve::track`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use http_body_util::BodyExt as _;

use super::error::{ApiError, ErrorKind};
use super::state::AppState;

/// The request body, at most `max_body` bytes.
pub struct RawBody(pub Bytes);

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
        // Frames are counted as they arrive, so a chunked body over the limit is refused after
        // at most `limit` bytes; a one-frame body (the usual case) is passed on without a copy.
        // A body that trickles in is cut by the request deadline around every handler.
        let mut body = req.into_body();
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
            if let Some(joined) = joined.as_mut() {
                joined.extend_from_slice(&data);
            } else if let Some(first) = single.take() {
                let mut both = Vec::with_capacity(first.len() + data.len());
                both.extend_from_slice(&first);
                both.extend_from_slice(&data);
                joined = Some(both);
            } else {
                single = Some(data);
            }
        }
        Ok(Self(joined.map(Bytes::from).or(single).unwrap_or_default()))
    }
}
