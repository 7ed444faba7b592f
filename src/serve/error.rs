//! The one table from failures to HTTP statuses, and the body every failure has:
//! `{"error": "…", "kind": "…"}`.
//!
//! Handlers never pick a status: they say what went wrong ([`ErrorKind`]) and [`ErrorKind::status`]
//! decides, so the same failure answers the same on `/predict`, `/models/…` and `/v2/…`. A 4xx
//! says exactly what was wrong with the request; a 5xx says only that the server failed, and its
//! cause is logged once, here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::input::{InputError, InputErrorKind};

/// Every way a request can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Something wrong with the prediction input (the body), in either wire format.
    Input(InputErrorKind),
    /// A model name or version in the URL that is not a valid one.
    InvalidPath,
    /// A request header with a value that cannot be used.
    InvalidHeader,
    /// The body could not be read off the connection.
    UnreadableBody,
    /// The body is larger than `--max-body`.
    BodyTooLarge,
    /// The request took longer than `--request-timeout`.
    Timeout,
    /// No route has this path.
    NoRoute,
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// The store holds no model of this name.
    UnknownModel,
    /// The model has no complete version of this number.
    UnknownVersion,
    /// The model exists but has no version loaded (none promoted, or its load failed).
    NotLoaded,
    /// The version exists but cannot be served (corrupt, or fails its warm-up).
    Unservable,
    /// The store cannot be read right now.
    StoreUnavailable,
    /// The server is at its memory budget or its limit of requests in flight: retry shortly.
    Overloaded,
    /// The route's group asks for a bearer token, and the request has none it accepts.
    Unauthorized,
    /// A failure of the server itself; its cause is in the log.
    Internal,
}

impl ErrorKind {
    /// The table: the one place a failure becomes a status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Input(InputErrorKind::Malformed)
            | Self::InvalidPath
            | Self::InvalidHeader
            | Self::UnreadableBody => StatusCode::BAD_REQUEST,
            Self::Input(
                InputErrorKind::MissingFeature
                | InputErrorKind::InvalidValue
                | InputErrorKind::EmptyBatch
                | InputErrorKind::Unscorable,
            ) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BodyTooLarge | Self::Input(InputErrorKind::BatchTooLarge) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NoRoute | Self::UnknownModel | Self::UnknownVersion => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotLoaded | Self::Unservable | Self::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind's name in error bodies, for clients to match on.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Input(kind) => kind.as_str(),
            Self::InvalidPath => "invalid_path",
            Self::InvalidHeader => "invalid_header",
            Self::UnreadableBody => "unreadable_body",
            Self::BodyTooLarge => "body_too_large",
            Self::Timeout => "timeout",
            Self::NoRoute => "no_route",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnknownModel => "unknown_model",
            Self::UnknownVersion => "unknown_version",
            Self::NotLoaded => "not_loaded",
            Self::Unservable => "unservable",
            Self::StoreUnavailable => "store_unavailable",
            Self::Overloaded => "overloaded",
            Self::Unauthorized => "unauthorized",
            Self::Internal => "internal",
        }
    }
}

/// A request that could not be answered as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// A 429: the memory budget cannot hold what this request would need now.
    pub fn over_budget(e: &crate::budget::OverBudget) -> Self {
        Self::new(
            ErrorKind::Overloaded,
            format!(
                "the server is at its memory budget ({:.0} MiB; this request needs {} KiB more): retry in a moment, or send smaller batches",
                e.total_mib(),
                e.asked.div_ceil(1024)
            ),
        )
    }

    /// A failure of the server itself: the cause is logged, the client learns nothing of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            ErrorKind::Internal,
            "internal server error; the cause is in the server log",
        )
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        Self::new(ErrorKind::Input(e.kind), e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            kind: &'static str,
        }
        let body = serde_json::to_string(&Body {
            error: &self.message,
            kind: self.kind.as_str(),
        })
        .expect("two strings always serialize");
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self.kind {
            // Load passes in well under a second; clients and proxies that honour it back off.
            ErrorKind::Overloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ErrorKind::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"limen\""),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_error_has_one_status_whatever_the_route() {
        use InputErrorKind::*;
        for (kind, status) in [
            (Malformed, 400),
            (MissingFeature, 422),
            (InvalidValue, 422),
            (EmptyBatch, 422),
            (Unscorable, 422),
            (BatchTooLarge, 413),
        ] {
            assert_eq!(ErrorKind::Input(kind).status().as_u16(), status, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn the_body_names_the_error_and_its_kind() {
        let response = ApiError::new(ErrorKind::UnknownModel, "no model \"x\"").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "no model \"x\"", "kind": "unknown_model"})
        );
    }
}
