//! What can be wrong with the input of a prediction, in one vocabulary shared by both wire
//! formats (`/predict` in `api`, the Open Inference Protocol in `oip`, both above this module).
//! The same failure has the same kind on every route, and `serve`'s one table turns a kind into a
//! status.

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
    /// A batch whose answer would be larger than [`MAX_ANSWER_BYTES`].
    BatchTooLarge,
}

/// The largest answer one request may get. Checked from the batch size before anything is
/// scored, so one request's memory stays bounded (the answer, the body and the decoded rows stay
/// under 32 MiB together): a 1 MiB body of the reference model's instances (58,000 of them) is
/// answered; larger batches are refused with how many instances fit.
pub const MAX_ANSWER_BYTES: usize = 12 * 1024 * 1024;

/// Refuses a batch of `rows` whose answer, at up to `row_bytes` each, would pass
/// [`MAX_ANSWER_BYTES`].
pub fn check_answer_size(rows: usize, row_bytes: usize) -> Result<(), InputError> {
    let row_bytes = row_bytes.max(1);
    if rows.saturating_mul(row_bytes) <= MAX_ANSWER_BYTES {
        return Ok(());
    }
    Err(InputError::new(
        InputErrorKind::BatchTooLarge,
        format!(
            "the answer to {rows} instances would pass the {} MiB limit of one answer; send at most {} instances per request",
            MAX_ANSWER_BYTES >> 20,
            MAX_ANSWER_BYTES / row_bytes
        ),
    ))
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
            Self::BatchTooLarge => "batch_too_large",
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
