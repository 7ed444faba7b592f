//! The one table from failures to HTTP statuses, and the `{"error": "…"}` body every failure has.
//!
//! A 4xx says exactly what was wrong with the request; a 5xx says only that the server failed,
//! and its cause is logged once, here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::{InputError, InputErrorKind};

/// A request that could not be answered with a prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// A failure of the server itself: the cause is logged, the client learns nothing of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error; the cause is in the server log",
        )
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        let status = match e.kind {
            InputErrorKind::Malformed => StatusCode::BAD_REQUEST,
            InputErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}
