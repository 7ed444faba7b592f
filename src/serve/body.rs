//! Our own body extractor: the raw bytes of a request, whatever its `Content-Type`.
//!
//! Users send `curl -X POST -d '{…}'`, which curl labels `application/x-www-form-urlencoded`;
//! axum's `Json` would refuse it with a 415. This reads the body as bytes, refuses one larger
//! than `--max-body` before buffering it (from `Content-Length`, or while reading a chunked one).
//! A body that trickles in is cut by the request deadline (`serve::track`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};

use super::error::ApiError;
use super::AppState;

/// The request body, at most `max_body` bytes.
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.limits.max_body;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
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
        // A body that trickles in is cut by the request deadline around every handler.
        match axum::body::to_bytes(req.into_body(), limit).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(e) if is_length_limit(&e) => Err(too_large()),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            )),
        }
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}
