//! What can be wrong with the input of a prediction, in one vocabulary shared by both wire
//! formats (`/predict` in [`crate::api`], the Open Inference Protocol in [`crate::oip`]). The same
//! failure has the same kind on every route, and `serve`'s one table turns a kind into a status.

/// The kinds of bad input, each with one HTTP status in `serve/error.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputErrorKind {
    /// Not readable as the wire format: not JSON, the wrong JSON shape or type, a tensor whose
    /// shape, datatype or length is inconsistent, an unknown input or output, a bad header.
    Malformed,
    /// Readable, but a feature the model needs is absent.
    MissingFeature,
    /// A feature's value is not a finite number (`"abc"`, `NaN`, `1e999`, `true`, `null`…).
    InvalidValue,
    /// A batch with no instances.
    EmptyBatch,
    /// Finite values the model still cannot score (its arithmetic overflows).
    Unscorable,
}

impl InputErrorKind {
    /// The kind's name in error bodies (`"kind"`), stable for clients to match on.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::MissingFeature => "missing_feature",
            Self::InvalidValue => "invalid_value",
            Self::EmptyBatch => "empty_batch",
            Self::Unscorable => "unscorable",
        }
    }
}

/// What was wrong with a request's input, in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub kind: InputErrorKind,
    pub message: String,
}

impl InputError {
    pub fn new(kind: InputErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(InputErrorKind::Malformed, message)
    }

    /// The same error, its message prefixed with where it happened (`instance 3: …`).
    pub fn context(self, at: impl std::fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{at}: {}", self.message),
        }
    }
}
