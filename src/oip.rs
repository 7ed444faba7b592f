//! The Open Inference Protocol (KServe "v2") REST wire format: metadata documents, and the
//! decoding of `/v2/models/{name}/infer` tensors into rows of features.
//!
//! Inputs come in either of two forms: one tensor `[N, n_features]` in the model's feature order
//! (any name), or one tensor per feature, named after it, of shape `[N]` (or `[N, 1]`). Data may be
//! flat (row-major) or nested. FP32, FP64 and the integer datatypes are accepted; integers are
//! converted. Outputs are `label` (BYTES, `[N]`) and `probabilities` (FP64, `[N, n_classes]`).
//! Every problem with a request is an [`InputError`] of the kinds `/predict` uses too: the
//! tensor's structure (shape, datatype, length, names) is [`InputErrorKind::Malformed`]; a missing
//! feature, an empty batch, a non-finite value or an unscorable row have their own kinds.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use smallvec::SmallVec;

use crate::input::{check_answer_size, InputError, InputErrorKind};
use crate::model::{ClassTally, Encoder, Model, Schema};

/// The output tensors a model produces.
pub const OUTPUT_LABEL: &str = "label";
pub const OUTPUT_PROBABILITIES: &str = "probabilities";
/// The name metadata gives the `[N, n_features]` input tensor.
pub const INPUT_MATRIX: &str = "input";

/// At most 40 characters of a client's string, for an error message.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A malformed request: the protocol's structure was not followed.
fn err<T>(message: impl Into<String>) -> Result<T, InputError> {
    Err(InputError::malformed(message))
}

/// `GET /v2`.
#[derive(Debug, Serialize)]
pub struct ServerMetadata {
    pub name: &'static str,
    pub version: &'static str,
    pub extensions: Vec<&'static str>,
}

impl Default for ServerMetadata {
    fn default() -> Self {
        Self {
            name: "limen",
            version: env!("CARGO_PKG_VERSION"),
            extensions: vec!["binary_tensor_data"],
        }
    }
}

/// A tensor's description in model metadata.
#[derive(Debug, Serialize)]
pub struct MetadataTensor {
    pub name: String,
    pub datatype: &'static str,
    /// -1 marks the batch dimension.
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}[/versions/{v}]`.
#[derive(Debug, Serialize)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<MetadataTensor>,
    pub outputs: Vec<MetadataTensor>,
}

impl ModelMetadata {
    pub fn new(model: &Model, versions: Vec<String>) -> Self {
        let n_features = model.feature_names().len() as i64;
        let n_classes = model.classes().len() as i64;
        Self {
            name: model.name().to_owned(),
            versions,
            platform: model.kind().platform(),
            inputs: vec![MetadataTensor {
                name: INPUT_MATRIX.to_owned(),
                datatype: "FP64",
                shape: vec![-1, n_features],
            }],
            outputs: vec![
                MetadataTensor {
                    name: OUTPUT_LABEL.to_owned(),
                    datatype: "BYTES",
                    shape: vec![-1],
                },
                MetadataTensor {
                    name: OUTPUT_PROBABILITIES.to_owned(),
                    datatype: "FP64",
                    shape: vec![-1, n_classes],
                },
            ],
        }
    }
}

/// `POST /v2/models/{name}[/versions/{v}]/infer`, still borrowing the tensors' data.
#[derive(Debug, Deserialize)]
pub struct InferRequest<'a> {
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub parameters: Parameters,
    /// Usually one tensor (the matrix form): kept inline.
    #[serde(borrow)]
    pub inputs: SmallVec<[RequestInput<'a>; 1]>,
    #[serde(borrow, default)]
    pub outputs: Option<Vec<RequestOutput<'a>>>,
    /// The bytes after the JSON header (Triton's binary tensor data extension).
    #[serde(skip)]
    binary: &'a [u8],
}

/// The parameters limen reads (those of the binary tensor data extension); others are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Parameters {
    /// On an input: its data is this many bytes of the binary section, not a JSON `data`.
    #[serde(default)]
    pub binary_data_size: Option<u64>,
    /// On a requested output: answer it in the binary section.
    #[serde(default)]
    pub binary_data: Option<bool>,
    /// On the request: answer every output in the binary section.
    #[serde(default)]
    pub binary_data_output: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct RequestInput<'a> {
    /// Names and datatypes borrow from the body unless they contain escapes.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// Almost always one or two dimensions: kept inline.
    pub shape: SmallVec<[u64; 2]>,
    #[serde(borrow)]
    pub datatype: Cow<'a, str>,
    #[serde(default)]
    pub parameters: Parameters,
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
pub struct RequestOutput<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(default)]
    pub parameters: Parameters,
}

/// The name of the header that says how long the JSON part of a body is when binary tensor
/// data follows it (requests and responses alike).
pub const HEADER_LENGTH: &str = "inference-header-content-length";

impl<'a> InferRequest<'a> {
    /// Parses a request body (the JSON shape only; tensors are checked by [`InferRequest::rows`]).
    /// With `header_length` (from `Inference-Header-Content-Length`) the body is that many bytes
    /// of JSON followed by the binary tensor data.
    pub fn parse(body: &'a [u8], header_length: Option<usize>) -> Result<Self, InputError> {
        let (json, binary) = match header_length {
            None => (body, &body[..0]),
            Some(n) if n <= body.len() => body.split_at(n),
            Some(n) => {
                return err(format!(
                    "{HEADER_LENGTH} is {n}, but the body has only {} bytes",
                    body.len()
                ))
            }
        };
        // Checking the whole body once is cheaper than serde_json checking each string in it.
        let json = std::str::from_utf8(json).map_err(|e| {
            InputError::malformed(format!("invalid inference request: it is not UTF-8: {e}"))
        })?;
        let mut request: Self = serde_json::from_str(json)
            .map_err(|e| InputError::malformed(format!("invalid inference request: {e}")))?;
        request.binary = binary;
        Ok(request)
    }

    /// The requested outputs, in order, each with whether to answer it as binary data; all of
    /// them, as JSON unless the request asks otherwise, when the request names none.
    pub fn outputs(&self) -> Result<Outputs, InputError> {
        let all_binary = self.parameters.binary_data_output == Some(true);
        let Some(requested) = &self.outputs else {
            return Ok(SmallVec::from_buf([
                (Output::Label, all_binary),
                (Output::Probabilities, all_binary),
            ]));
        };
        let mut outputs = Outputs::new();
        for o in requested {
            let binary = all_binary || o.parameters.binary_data == Some(true);
            let output = match &*o.name {
                OUTPUT_LABEL => Output::Label,
                OUTPUT_PROBABILITIES => Output::Probabilities,
                _ => {
                    return err(format!(
                        "unknown output {:?}; this model produces {OUTPUT_LABEL:?} and {OUTPUT_PROBABILITIES:?}",
                        truncate(&o.name)
                    ))
                }
            };
            // Each output is answered once: a repeated name would multiply the answer.
            if outputs.iter().any(|(seen, _)| *seen == output) {
                return err(format!("output {:?} is asked for twice", o.name));
            }
            outputs.push((output, binary));
        }
        Ok(outputs)
    }

    /// Each input's slice of the binary section, in input order, checked to add up exactly
    /// (kept inline for up to four inputs).
    fn binary_slices(&self) -> Result<SmallVec<[Option<&'a [u8]>; 4]>, InputError> {
        let mut rest = self.binary;
        let mut slices = SmallVec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            slices.push(match input.parameters.binary_data_size {
                None => None,
                Some(size) => {
                    let size = usize::try_from(size).ok().filter(|s| *s <= rest.len()).ok_or_else(|| {
                        InputError::malformed(format!(
                            "input {:?}: binary_data_size {size} runs past the {} bytes of binary data",
                            input.name,
                            self.binary.len()
                        ))
                    })?;
                    let (mine, others) = rest.split_at(size);
                    rest = others;
                    Some(mine)
                }
            });
        }
        if !rest.is_empty() {
            return err(format!(
                "{} bytes of binary data belong to no input (binary_data_size)",
                rest.len()
            ));
        }
        Ok(slices)
    }

    /// The most bytes [`InferRequest::rows`] can hold for this request: per input, the values
    /// its shape claims but no more than its data can carry (a JSON number and its comma take 2
    /// bytes; binary data its datatype's width), 8 bytes each, twice over for a vector grown by
    /// doubling, and once more for the rows assembled from per-feature inputs.
    pub fn decode_bytes(&self) -> usize {
        let mut values = 0usize;
        let mut binary = self.binary.len();
        for input in &self.inputs {
            let claimed = element_count(&input.shape, &input.name).unwrap_or(usize::MAX);
            let carried = match input.parameters.binary_data_size {
                Some(size) => {
                    let width =
                        DataType::parse(&input.datatype, &input.name).map_or(1, DataType::width);
                    let size = usize::try_from(size).unwrap_or(usize::MAX).min(binary);
                    binary -= size;
                    size / width
                }
                None => input.data.map_or(0, |d| d.get().len() / 2 + 1),
            };
            values = values.saturating_add(claimed.min(carried));
        }
        values.saturating_mul(24).saturating_add(1024)
    }

    /// The feature rows (`N × n_features`, row-major) for `features`, from either input form.
    pub fn rows(&self, schema: Schema<'_>) -> Result<(usize, Vec<f64>), InputError> {
        let features = schema.features;
        let f = features.len();
        let binary = self.binary_slices()?;
        match self.inputs.as_slice() {
            [] => Err(InputError::new(
                InputErrorKind::MissingFeature,
                format!(
                    "the request has no inputs; send one tensor [N, {f}] or one tensor [N] per feature: {}",
                    features.join(", ")
                ),
            )),
            [one] if one.shape.len() == 2 => {
                let dtype = DataType::parse(&one.datatype, &one.name)?;
                let (n, cols) = (one.shape[0], one.shape[1]);
                if cols != f as u64 {
                    return err(format!(
                        "input {:?} has shape {:?}, but this model takes {f} features ({}); send shape [N, {f}]",
                        one.name,
                        one.shape,
                        features.join(", ")
                    ));
                }
                let n = batch_size(n)?;
                if dtype == DataType::Bytes {
                    return err(format!(
                        "input {:?} is BYTES; text goes in one BYTES tensor [N] per categorical feature, beside one tensor [N] per numeric one",
                        one.name
                    ));
                }
                let mut data = decode_data(
                    one,
                    dtype,
                    element_count(&one.shape, &one.name)?,
                    binary[0],
                    schema.missing,
                )?;
                if let Some(encoder) = schema.encoder {
                    // A category sent as a number is known by the text it prints as.
                    for row in data.chunks_exact_mut(f) {
                        for (i, v) in row.iter_mut().enumerate() {
                            if encoder.is_categorical(i) {
                                *v = by_text(encoder, i, *v);
                            }
                        }
                    }
                }
                Ok((n, data))
            }
            inputs => {
                let mut columns: SmallVec<[Option<Vec<f64>>; 4]> = SmallVec::from_elem(None, f);
                let mut n = None;
                for (input, bytes) in inputs.iter().zip(&binary) {
                    let Some(idx) = features.iter().position(|name| *name == input.name) else {
                        return err(format!(
                            "unknown input {:?}; send one tensor [N, {f}] or one tensor [N] per feature: {}",
                            input.name,
                            features.join(", ")
                        ));
                    };
                    if columns[idx].is_some() {
                        return err(format!("input {:?} is given twice", input.name));
                    }
                    let rows = match input.shape.as_slice() {
                        [rows] | [rows, 1] => *rows,
                        _ => {
                            return err(format!(
                                "input {:?} has shape {:?}; a per-feature input has shape [N]",
                                input.name, input.shape
                            ))
                        }
                    };
                    if n.is_some_and(|n| n != rows) {
                        return err(format!(
                            "input {:?} has {rows} rows but another input has {}; every input needs the same batch size",
                            input.name,
                            n.unwrap_or_default()
                        ));
                    }
                    n = Some(rows);
                    let dtype = DataType::parse(&input.datatype, &input.name)?;
                    let categorical = schema.encoder.filter(|e| e.is_categorical(idx));
                    let column = match (dtype, categorical) {
                        (DataType::Bytes, Some(encoder)) => {
                            decode_text(input, batch_size(rows)?, *bytes, encoder, idx)?
                        }
                        (DataType::Bytes, None) => {
                            return Err(InputError::new(
                                InputErrorKind::InvalidValue,
                                format!(
                                    "input {:?} is BYTES, but this feature takes numbers; send FP32 or FP64",
                                    input.name
                                ),
                            ))
                        }
                        (_, encoder) => {
                            let mut values = decode_data(
                                input,
                                dtype,
                                batch_size(rows)?,
                                *bytes,
                                schema.missing,
                            )?;
                            if let Some(encoder) = encoder {
                                for v in &mut values {
                                    *v = by_text(encoder, idx, *v);
                                }
                            }
                            values
                        }
                    };
                    columns[idx] = Some(column);
                }
                let missing: Vec<&str> = features
                    .iter()
                    .zip(&columns)
                    .filter(|(_, c)| c.is_none())
                    .map(|(name, _)| name.as_str())
                    .collect();
                if !missing.is_empty() {
                    return Err(InputError::new(
                        InputErrorKind::MissingFeature,
                        format!("missing input(s): {}", missing.join(", ")),
                    ));
                }
                let n = batch_size(n.unwrap_or_default())?;
                if let [Some(column)] = columns.as_mut_slice() {
                    // One feature: its column is the rows.
                    return Ok((n, std::mem::take(column)));
                }
                let mut data = Vec::with_capacity(n * f);
                for row in 0..n {
                    for column in columns.iter().flatten() {
                        data.push(column[row]);
                    }
                }
                Ok((n, data))
            }
        }
    }
}

/// The outputs a request asks for, in order, each with whether it is answered as binary data:
/// at most one of each, so at most two, kept inline.
pub type Outputs = SmallVec<[(Output, bool); 2]>;

/// An output tensor a request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Label,
    Probabilities,
}

/// A tensor element type limen accepts as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataType {
    Fp32,
    Fp64,
    /// Text: a categorical feature's values (JSON strings, or in binary each a 4-byte
    /// little-endian length and its UTF-8 bytes).
    Bytes,
    /// An integer type: its inclusive range, its width in bytes, and whether it is signed.
    Int {
        lo: i128,
        hi: i128,
        bytes: usize,
        signed: bool,
    },
}

impl DataType {
    fn parse(name: &str, input: &str) -> Result<Self, InputError> {
        let int = |bytes: usize, signed: bool| {
            let bits = 8 * bytes as u32;
            let (lo, hi) = if signed {
                (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
            } else {
                (0, (1i128 << bits) - 1)
            };
            Self::Int {
                lo,
                hi,
                bytes,
                signed,
            }
        };
        Ok(match name {
            "FP32" => Self::Fp32,
            "FP64" => Self::Fp64,
            "BYTES" => Self::Bytes,
            "INT8" => int(1, true),
            "INT16" => int(2, true),
            "INT32" => int(4, true),
            "INT64" => int(8, true),
            "UINT8" => int(1, false),
            "UINT16" => int(2, false),
            "UINT32" => int(4, false),
            "UINT64" => int(8, false),
            other => {
                return err(format!(
                    "input {input:?} has datatype {other:?}; use FP32, FP64 or an INT/UINT type (BYTES for a categorical feature)"
                ))
            }
        })
    }

    /// Bytes per element in the binary section (for BYTES, the least: its length prefix).
    fn width(self) -> usize {
        match self {
            Self::Fp32 | Self::Bytes => 4,
            Self::Fp64 => 8,
            Self::Int { bytes, .. } => bytes,
        }
    }

    /// One little-endian element of the binary section.
    fn decode(self, le: &[u8]) -> f64 {
        let mut buf = [0u8; 16];
        buf[..le.len()].copy_from_slice(le);
        match self {
            Self::Bytes => f64::NAN,
            Self::Fp32 => f32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as f64,
            Self::Fp64 => f64::from_le_bytes([
                buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7],
            ]),
            Self::Int { bytes, signed, .. } => {
                if signed && le[bytes - 1] & 0x80 != 0 {
                    buf[bytes..].fill(0xff); // sign extension
                }
                i128::from_le_bytes(buf) as f64
            }
        }
    }
}

fn batch_size(n: u64) -> Result<usize, InputError> {
    match usize::try_from(n) {
        Ok(0) => Err(InputError::new(
            InputErrorKind::EmptyBatch,
            "the batch is empty (a dimension of 0)",
        )),
        Ok(n) => Ok(n),
        Err(_) => err(format!("batch size {n} is too large")),
    }
}

/// The number of elements `shape` holds, refusing products that overflow.
fn element_count(shape: &[u64], input: &str) -> Result<usize, InputError> {
    shape
        .iter()
        .try_fold(1u64, |acc, d| acc.checked_mul(*d))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            InputError::malformed(format!("input {input:?}: shape {shape:?} is too large"))
        })
}

/// Exactly `expected` values of `dtype` from the input's binary data if it has some, else from
/// its JSON `data` (flat or nested). With `missing` (a model that scores missing values), a
/// floating-point NaN or a JSON `null` is a missing value.
fn decode_data(
    input: &RequestInput,
    dtype: DataType,
    expected: usize,
    binary: Option<&[u8]>,
    missing: bool,
) -> Result<Vec<f64>, InputError> {
    if let Some(bytes) = binary {
        if input.data.is_some() {
            return err(format!(
                "input {:?} has both \"data\" and binary data (binary_data_size); send one",
                input.name
            ));
        }
        if bytes.len() != expected.saturating_mul(dtype.width()) {
            return err(format!(
                "input {:?}: shape {:?} of {} needs {} bytes of binary data, binary_data_size is {}",
                input.name,
                input.shape,
                input.datatype,
                expected.saturating_mul(dtype.width()),
                bytes.len()
            ));
        }
        let values: Vec<f64> = bytes
            .chunks_exact(dtype.width())
            .map(|e| dtype.decode(e))
            .collect();
        return finite(input, dtype, values, missing);
    }
    let Some(data) = input.data else {
        return err(format!(
            "input {:?} has neither \"data\" nor a binary_data_size parameter",
            input.name
        ));
    };
    let mut out = Vec::with_capacity(expected.min(1 << 16));
    let seed = Flatten {
        out: &mut out,
        dtype,
        limit: expected,
        missing,
    };
    let mut de = serde_json::Deserializer::from_str(data.get());
    seed.deserialize(&mut de)
        .map_err(|e| InputError::malformed(format!("input {:?}: {e}", input.name)))?;
    if out.len() != expected {
        return err(format!(
            "input {:?}: shape {:?} needs {expected} values, data has {}",
            input.name,
            input.shape,
            out.len()
        ));
    }
    finite(input, dtype, out, missing)
}

/// A category sent as a number, known by the text it prints as; NaN (missing) stays.
fn by_text(encoder: &Encoder, i: usize, v: f64) -> f64 {
    if v.is_nan() {
        v
    } else {
        encoder.code(i, &format!("{v}"))
    }
}

/// Exactly `expected` codes of feature `i`'s categories from a BYTES input: its binary data
/// (each element a 4-byte little-endian length, then that many UTF-8 bytes) or its JSON `data`
/// (strings, flat or nested; `null` is a missing value; a number is known by its text).
fn decode_text(
    input: &RequestInput,
    expected: usize,
    binary: Option<&[u8]>,
    encoder: &Encoder,
    i: usize,
) -> Result<Vec<f64>, InputError> {
    let mut out = Vec::with_capacity(expected.min(1 << 16));
    if let Some(mut bytes) = binary {
        if input.data.is_some() {
            return err(format!(
                "input {:?} has both \"data\" and binary data (binary_data_size); send one",
                input.name
            ));
        }
        while !bytes.is_empty() {
            let bad = || {
                InputError::malformed(format!(
                    "input {:?}: its binary BYTES data is not a sequence of 4-byte lengths and UTF-8 texts",
                    input.name
                ))
            };
            let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(bad)?;
            let len = u32::from_le_bytes(*len) as usize;
            let text = rest.get(..len).ok_or_else(bad)?;
            let text = std::str::from_utf8(text).map_err(|_| bad())?;
            if out.len() == expected {
                return err(format!(
                    "input {:?}: its binary data holds more than the {expected} values of shape {:?}",
                    input.name, input.shape
                ));
            }
            out.push(encoder.code(i, text));
            bytes = &rest[len..];
        }
    } else {
        let Some(data) = input.data else {
            return err(format!(
                "input {:?} has neither \"data\" nor a binary_data_size parameter",
                input.name
            ));
        };
        let seed = FlattenText {
            out: &mut out,
            encoder,
            feature: i,
            limit: expected,
        };
        let mut de = serde_json::Deserializer::from_str(data.get());
        seed.deserialize(&mut de)
            .map_err(|e| InputError::malformed(format!("input {:?}: {e}", input.name)))?;
    }
    if out.len() != expected {
        return err(format!(
            "input {:?}: shape {:?} needs {expected} values, data has {}",
            input.name,
            input.shape,
            out.len()
        ));
    }
    Ok(out)
}

/// Pushes the code of every text of a (nested) JSON array onto `out`; stops with an error past
/// `limit` values.
struct FlattenText<'o> {
    out: &'o mut Vec<f64>,
    encoder: &'o Encoder,
    feature: usize,
    limit: usize,
}

impl FlattenText<'_> {
    fn push<E: de::Error>(&mut self, code: f64) -> Result<(), E> {
        if self.out.len() >= self.limit {
            return Err(E::custom(format!(
                "more values than its shape's {}",
                self.limit
            )));
        }
        self.out.push(code);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for FlattenText<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FlattenText<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("texts, in a flat or nested array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(FlattenText {
                out: &mut *self.out,
                encoder: self.encoder,
                feature: self.feature,
                limit: self.limit,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        let code = self.encoder.code(self.feature, v.trim());
        self.push(code)
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        let code = by_text(self.encoder, self.feature, v as f64);
        self.push(code)
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        let code = by_text(self.encoder, self.feature, v as f64);
        self.push(code)
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        let code = by_text(self.encoder, self.feature, v);
        self.push(code)
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.push(f64::NAN)
    }
}

/// `values`, unless one is not finite (NaN or infinite, sent as such or overflowing FP32): the
/// same invalid value `/predict` refuses. With `missing`, NaN is a missing value and passes;
/// an infinity never does.
fn finite(
    input: &RequestInput,
    dtype: DataType,
    values: Vec<f64>,
    missing: bool,
) -> Result<Vec<f64>, InputError> {
    match values
        .iter()
        .find(|v| !(v.is_finite() || (missing && v.is_nan())))
    {
        Some(bad) => Err(InputError::new(
            InputErrorKind::InvalidValue,
            format!(
                "input {:?}: {bad} is not a finite {dtype:?} value",
                input.name
            ),
        )),
        None => Ok(values),
    }
}

/// Pushes every number of a (nested) JSON array onto `out`, converting to `dtype`; stops with an
/// error past `limit` values, so a lying shape cannot make it buffer without bound.
struct Flatten<'o> {
    out: &'o mut Vec<f64>,
    dtype: DataType,
    limit: usize,
    /// Whether `null` is read as a missing value (NaN) of a floating-point input.
    missing: bool,
}

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Flatten<'_> {
    fn push<E: de::Error>(&mut self, v: f64) -> Result<(), E> {
        if self.out.len() >= self.limit {
            return Err(E::custom(format!(
                "more values than the shape's {}",
                self.limit
            )));
        }
        // A value that overflows FP32 becomes infinite here, and is refused by `finite`.
        let v = match self.dtype {
            DataType::Fp32 => v as f32 as f64,
            _ => v,
        };
        self.out.push(v);
        Ok(())
    }

    fn push_int<E: de::Error>(&mut self, v: i128) -> Result<(), E> {
        if let DataType::Int { lo, hi, .. } = self.dtype {
            if v < lo || v > hi {
                return Err(E::custom(format!(
                    "{v} is out of range for the input's datatype"
                )));
            }
        }
        self.push(v as f64)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("numbers, in a flat or nested array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Flatten {
                out: &mut *self.out,
                dtype: self.dtype,
                limit: self.limit,
                missing: self.missing,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.push_int(v.into())
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.push_int(v.into())
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        if matches!(self.dtype, DataType::Int { .. }) {
            return Err(E::custom(format!(
                "{v} is not an integer, as the input's datatype requires"
            )));
        }
        self.push(v)
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        match self.dtype {
            DataType::Int { .. } => Err(E::custom(
                "null in an integer input; send missing values in an FP32 or FP64 input",
            )),
            _ if self.missing => self.push(f64::NAN),
            _ => Err(E::custom(
                "null is not a number (this model scores no missing value)",
            )),
        }
    }
}

/// The batch size the request's first input claims, before any data is decoded: enough to
/// refuse an answer that would be too large without first building the rows.
pub fn claimed_rows(request: &InferRequest) -> usize {
    request
        .inputs
        .first()
        .and_then(|i| i.shape.first())
        .map_or(0, |&n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// A rendered inference response: the JSON, then any binary output data; `json_length` is set
/// (for `Inference-Header-Content-Length`) when binary data follows.
#[derive(Debug)]
pub struct InferResponse {
    pub body: Vec<u8>,
    pub json_length: Option<usize>,
}

/// The fixed parts of one model's inference responses, rendered once when it is loaded, so an
/// answer is written by copying them around the scored numbers, as `/predict`'s template in
/// `api` does.
#[derive(Debug)]
pub struct InferTemplate {
    /// `{"model_name":…,"model_version":"…"`
    head: Vec<u8>,
    /// Per class, its label as a JSON string.
    labels: Vec<Vec<u8>>,
    /// The longest label as JSON (quoted, escaped) and as raw bytes (binary outputs).
    longest_json_label: usize,
    longest_label: usize,
    n_classes: usize,
}

impl InferTemplate {
    pub fn new(model: &Model) -> Self {
        let json = |s: &str| serde_json::to_vec(s).expect("a string always serializes");
        let mut head = b"{\"model_name\":".to_vec();
        head.extend_from_slice(&json(model.name()));
        head.extend_from_slice(format!(",\"model_version\":\"{}\"", model.version()).as_bytes());
        let labels: Vec<Vec<u8>> = model.classes().iter().map(|c| json(c)).collect();
        Self {
            head,
            longest_json_label: labels.iter().map(Vec::len).max().unwrap_or(0),
            longest_label: model.classes().iter().map(String::len).max().unwrap_or(0),
            n_classes: model.classes().len(),
            labels,
        }
    }

    /// The most bytes one row's outputs take in an answer: as JSON, each probability at its
    /// longest (24 bytes and a comma) and the longest label escaped and quoted, with a comma; as
    /// binary data, 8 bytes per probability and the longest label with its 4-byte length.
    pub fn row_bytes(&self, outputs: &[(Output, bool)]) -> usize {
        outputs
            .iter()
            .map(|&(output, binary)| match (output, binary) {
                (Output::Label, false) => self.longest_json_label + 1,
                (Output::Label, true) => self.longest_label + 4,
                (Output::Probabilities, false) => self.n_classes * 25,
                (Output::Probabilities, true) => self.n_classes * 8,
            })
            .sum()
    }

    /// The most bytes answering `n` rows holds at once: the answer, and the classes and
    /// probabilities it is written from.
    pub fn answer_bytes(&self, n: usize, outputs: &[(Output, bool)], id: usize) -> usize {
        let working = 8 + 8 * self.n_classes;
        n.max(1)
            .saturating_mul(self.row_bytes(outputs) + working)
            .saturating_add(self.head.len() + 6 * id + 512)
    }

    /// Scores `rows` (`n` of them) with `model`, the model this template was rendered from, and
    /// writes the response: `{"model_name", "model_version", "id"?, "outputs": [{"name",
    /// "shape", "datatype", "parameters"?, "data"?}…]}`, binary outputs after the JSON.
    pub fn respond(
        &self,
        model: &Model,
        id: Option<&str>,
        outputs: &[(Output, bool)],
        n: usize,
        rows: &[f64],
        tally: &ClassTally,
    ) -> Result<InferResponse, InputError> {
        let n_features = model.feature_names().len();
        let n_classes = model.classes().len();
        // Bounds the buffers below by the request's size.
        let row_bytes = self.row_bytes(outputs);
        check_answer_size(n, row_bytes)?;
        let mut classes: SmallVec<[usize; 8]> = SmallVec::with_capacity(n);
        let mut probabilities = Vec::with_capacity(n * n_classes);
        for (i, row) in rows.chunks_exact(n_features).enumerate() {
            let class = model.predict_append(row, &mut probabilities).map_err(|e| {
                InputError::new(InputErrorKind::Unscorable, format!("row {i}: {e}"))
            })?;
            tally.count(class);
            classes.push(class);
        }

        // Sized once for everything written below (the id escaped at worst 6 bytes a byte), so
        // neither buffer grows: what `answer_bytes` reserved is what they take.
        let id_bytes = id.map_or(0, |id| 6 * id.len());
        let mut body = Vec::with_capacity(self.head.len() + 160 + id_bytes + n * row_bytes);
        let binary_rows: Vec<(Output, bool)> = outputs.iter().copied().filter(|o| o.1).collect();
        let mut binary = Vec::with_capacity(n * self.row_bytes(&binary_rows));
        body.extend_from_slice(&self.head);
        if let Some(id) = id {
            body.extend_from_slice(b",\"id\":");
            write_json(&mut body, id);
        }
        body.extend_from_slice(b",\"outputs\":[");
        for (i, &(output, as_binary)) in outputs.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"name\":\"");
            match output {
                Output::Label => {
                    body.extend_from_slice(OUTPUT_LABEL.as_bytes());
                    body.extend_from_slice(b"\",\"shape\":[");
                    write_json(&mut body, &n);
                    body.extend_from_slice(b"],\"datatype\":\"BYTES\"");
                }
                Output::Probabilities => {
                    body.extend_from_slice(OUTPUT_PROBABILITIES.as_bytes());
                    body.extend_from_slice(b"\",\"shape\":[");
                    write_json(&mut body, &n);
                    body.push(b',');
                    write_json(&mut body, &n_classes);
                    body.extend_from_slice(b"],\"datatype\":\"FP64\"");
                }
            }
            if as_binary {
                let start = binary.len();
                match output {
                    // BYTES elements: a 4-byte little-endian length, then the bytes.
                    Output::Label => {
                        for &class in &classes {
                            let label = model.classes()[class].as_bytes();
                            binary.extend_from_slice(&(label.len() as u32).to_le_bytes());
                            binary.extend_from_slice(label);
                        }
                    }
                    Output::Probabilities => {
                        for p in &probabilities {
                            binary.extend_from_slice(&p.to_le_bytes());
                        }
                    }
                }
                body.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
                write_json(&mut body, &(binary.len() - start));
                body.extend_from_slice(b"}}");
                continue;
            }
            body.extend_from_slice(b",\"data\":[");
            match output {
                Output::Label => {
                    for (j, &class) in classes.iter().enumerate() {
                        if j > 0 {
                            body.push(b',');
                        }
                        body.extend_from_slice(&self.labels[class]);
                    }
                }
                Output::Probabilities => {
                    for (j, p) in probabilities.iter().enumerate() {
                        if j > 0 {
                            body.push(b',');
                        }
                        write_json(&mut body, p);
                    }
                }
            }
            body.extend_from_slice(b"]}");
        }
        body.extend_from_slice(b"]}");
        let json_length = (!binary.is_empty()).then_some(body.len());
        body.extend_from_slice(&binary);
        Ok(InferResponse { body, json_length })
    }
}

/// One JSON value as serde_json writes it (strings escaped, floats in shortest round-trip form).
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Strings, integers and floats always serialize, and writing into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn rows(body: &str, names: &[&str]) -> Result<(usize, Vec<f64>), InputError> {
        let features = features(names);
        let schema = Schema {
            features: &features,
            missing: false,
            encoder: None,
        };
        InferRequest::parse(body.as_bytes(), None)?.rows(schema)
    }

    #[test]
    fn a_matrix_input_is_read_flat_or_nested() {
        let flat = r#"{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]}"#;
        let nested = r#"{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}]}"#;
        for body in [flat, nested] {
            assert_eq!(
                rows(body, &["a", "b"]).unwrap(),
                (2, vec![1.0, 2.0, 3.0, 4.0])
            );
        }
    }

    #[test]
    fn per_feature_inputs_are_assembled_in_model_order() {
        let body = r#"{"inputs": [
            {"name": "b", "shape": [2], "datatype": "INT32", "data": [3, 4]},
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.5, 2.5]}]}"#;
        assert_eq!(
            rows(body, &["a", "b"]).unwrap(),
            (2, vec![1.5, 3.0, 2.5, 4.0])
        );
        // One feature named as itself with shape [N, 1] is per-feature too.
        let one =
            r#"{"inputs": [{"name": "a", "shape": [2, 1], "datatype": "FP64", "data": [1, 2]}]}"#;
        assert_eq!(rows(one, &["a"]).unwrap(), (2, vec![1.0, 2.0]));
    }

    #[test]
    fn every_malformed_request_is_refused_with_a_reason() {
        let cases = [
            ("{}", "inputs"),
            (r#"{"inputs": []}"#, "no inputs"),
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}"#,
                "takes 2 features",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3]}]}"#,
                "needs 4 values, data has 3",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2, 3]}]}"#,
                "more values",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}]}"#,
                "one BYTES tensor [N] per categorical feature",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "STRING", "data": ["a", "b"]}]}"#,
                "datatype",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": ["1", 2]}]}"#,
                "numbers",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT8", "data": [1, 300]}]}"#,
                "out of range",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT32", "data": [1, 2.5]}]}"#,
                "not an integer",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 1e39]}]}"#,
                "finite",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [0, 2], "datatype": "FP64", "data": []}]}"#,
                "empty",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [9223372036854775807, 2], "datatype": "FP64", "data": []}]}"#,
                "needs 18446744073709551614 values",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [18446744073709551615, 2], "datatype": "FP64", "data": []}]}"#,
                "too large",
            ),
            (
                r#"{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]}"#,
                "missing input(s): b",
            ),
            (
                r#"{"inputs": [{"name": "c", "shape": [1], "datatype": "FP64", "data": [1]}]}"#,
                "unknown input",
            ),
            (
                r#"{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}, {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]}"#,
                "twice",
            ),
            (
                r#"{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}, {"name": "b", "shape": [2], "datatype": "FP64", "data": [1, 2]}]}"#,
                "same batch size",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [-1, 2], "datatype": "FP64", "data": [1, 2]}]}"#,
                "invalid",
            ),
        ];
        for (body, why) in cases {
            let e = rows(body, &["a", "b"]).unwrap_err();
            assert!(e.message.contains(why), "{body}: {e} lacks {why:?}");
        }
    }

    fn infer(body: &[u8]) -> Result<Vec<u8>, InputError> {
        let model = Model::new(crate::model::tests::binary_artifact()).unwrap();
        let request = InferRequest::parse(body, None)?;
        let outputs = request.outputs()?;
        let (n, rows) = request.rows(model.schema())?;
        InferTemplate::new(&model)
            .respond(
                &model,
                request.id.as_deref(),
                &outputs,
                n,
                &rows,
                &ClassTally::default(),
            )
            .map(|r| r.body)
    }

    #[test]
    fn answers_are_the_documented_json_for_every_output_form() {
        let mut artifact = crate::model::tests::binary_artifact();
        // Labels and ids that need escaping.
        artifact.classes = vec!["not \"v\"".into(), "v<é>\n\\".into()];
        artifact.positive_class = Some("v<é>\n\\".into());
        let model = Model::new(artifact).unwrap();
        let template = InferTemplate::new(&model);
        let rows = [2.1, 0.2, 1.7];
        let mut labels = Vec::new();
        let mut probabilities = Vec::new();
        let mut buffer = Vec::new();
        for row in rows.chunks(1) {
            let class = model.predict_into(row, &mut buffer).unwrap();
            labels.push(model.classes()[class].clone());
            probabilities.extend_from_slice(&buffer);
        }
        let label =
            serde_json::json!({"name": "label", "shape": [3], "datatype": "BYTES", "data": labels});
        let probs = serde_json::json!({"name": "probabilities", "shape": [3, 2], "datatype": "FP64", "data": probabilities});
        let both = [(Output::Label, false), (Output::Probabilities, false)];
        let answer = template
            .respond(
                &model,
                Some("a \"b\"\u{1}"),
                &both,
                3,
                &rows,
                &ClassTally::default(),
            )
            .unwrap();
        assert_eq!(answer.json_length, None);
        let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        let expected = serde_json::json!({"model_name": "iris", "model_version": "7",
            "id": "a \"b\"\u{1}", "outputs": [label, probs]});
        assert_eq!(value, expected);
        // Field order as documented (serde_json's Value does not keep it).
        let text = String::from_utf8(answer.body).unwrap();
        assert!(
            text.starts_with(r#"{"model_name":"iris","model_version":"7","id":"#),
            "{text}"
        );

        let one = [(Output::Probabilities, false)];
        let answer = template
            .respond(&model, None, &one, 3, &rows, &ClassTally::default())
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        let expected =
            serde_json::json!({"model_name": "iris", "model_version": "7", "outputs": [probs]});
        assert_eq!(value, expected);

        let binary = [(Output::Probabilities, true), (Output::Label, false)];
        let answer = template
            .respond(&model, None, &binary, 3, &rows, &ClassTally::default())
            .unwrap();
        let split = answer.json_length.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&answer.body[..split]).unwrap();
        let expected = serde_json::json!({"model_name": "iris", "model_version": "7", "outputs": [
            {"name": "probabilities", "shape": [3, 2], "datatype": "FP64", "parameters": {"binary_data_size": 48}},
            label]});
        assert_eq!(value, expected);
        let floats: Vec<f64> = answer.body[split..]
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(floats, probabilities);

        let empty = template
            .respond(&model, None, &both, 0, &[], &ClassTally::default())
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&empty.body).unwrap();
        assert_eq!(value["outputs"][1]["data"], serde_json::json!([]));
    }

    #[test]
    fn hostile_tensors_are_refused_without_allocating_their_claimed_size() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let bodies = [
            format!(r#"{{"inputs": [{{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": {deep}}}]}}"#),
            // Claims 10^18 rows: refused by count, never allocated.
            r#"{"inputs": [{"name": "x", "shape": [1000000000000000000, 1], "datatype": "FP64", "data": [1]}]}"#.to_owned(),
            r#"{"inputs": [{"name": "petal_width", "shape": [1000000000000000000], "datatype": "FP64", "data": [1]}]}"#.to_owned(),
            r#"{"inputs": [{"name": "x", "shape": [18446744073709551615, 18446744073709551615], "datatype": "FP64", "data": []}]}"#.to_owned(),
            r#"{"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1e400]}]}"#.to_owned(),
            format!(r#"{{"inputs": [{{"name": "{}", "shape": [1], "datatype": "FP64", "data": [1]}}]}}"#, "n".repeat(1 << 20)),
        ];
        for body in &bodies {
            assert!(infer(body.as_bytes()).is_err(), "{body:.100}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = infer(&body);
        }

        #[test]
        fn arbitrary_tensors_are_answered_or_refused(
            shape in proptest::collection::vec(0u64..5, 0..4),
            big in proptest::prelude::any::<bool>(),
            datatype in proptest::sample::select(vec!["FP32", "FP64", "INT8", "UINT64", "BOOL", "BYTES", "fp64"]),
            name in proptest::sample::select(vec!["input", "petal_width", "other"]),
            data in proptest::collection::vec(-1e6f64..1e6, 0..12),
            nested in proptest::prelude::any::<bool>(),
        ) {
            let mut shape = shape;
            if big && !shape.is_empty() {
                shape[0] = u64::MAX / 3;
            }
            let data = if nested {
                serde_json::json!(data.chunks(2).map(|c| c.to_vec()).collect::<Vec<_>>())
            } else {
                serde_json::json!(data)
            };
            let body = serde_json::json!({
                "inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]
            });
            if let Ok(bytes) = infer(body.to_string().as_bytes()) {
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let n = v["outputs"][0]["shape"][0].as_u64().unwrap();
                proptest::prop_assert_eq!(v["outputs"][1]["data"].as_array().unwrap().len() as u64, 2 * n);
            }
        }
    }

    #[test]
    fn outputs_can_be_selected_and_unknown_ones_are_refused() {
        let parse = |body: &'static [u8]| InferRequest::parse(body, None).unwrap();
        let req = parse(br#"{"inputs": [], "outputs": [{"name": "probabilities"}]}"#);
        assert_eq!(*req.outputs().unwrap(), [(Output::Probabilities, false)]);
        let req = parse(br#"{"inputs": [], "outputs": [{"name": "logits"}]}"#);
        assert!(req.outputs().is_err());
        let req = parse(br#"{"inputs": []}"#);
        assert_eq!(
            *req.outputs().unwrap(),
            [(Output::Label, false), (Output::Probabilities, false)]
        );
        let req = parse(
            br#"{"inputs": [], "parameters": {"binary_data_output": true}, "outputs": [{"name": "label"}]}"#,
        );
        assert_eq!(*req.outputs().unwrap(), [(Output::Label, true)]);
    }

    #[test]
    fn a_categorical_feature_takes_bytes_as_json_or_binary_and_numbers_by_their_text() {
        let features = features(&["size", "colour"]);
        let encoder = crate::model::Encoder::new(&[
            crate::model::Column::Numeric { impute: 0.0 },
            crate::model::Column::Categorical {
                categories: vec!["7".into(), "blue".into(), "red".into()],
                other: vec![],
                missing: false,
                shares: vec![0.2, 0.4, 0.4],
            },
        ]);
        let schema = Schema {
            features: &features,
            missing: true,
            encoder: Some(&encoder),
        };
        let unseen = crate::model::encoding::UNSEEN;
        let json = r#"{"inputs": [{"name": "size", "shape": [3], "datatype": "FP64", "data": [1, null, 3]},
                                   {"name": "colour", "shape": [3], "datatype": "BYTES", "data": ["red", "green", null]}]}"#;
        let (n, rows) = InferRequest::parse(json.as_bytes(), None)
            .unwrap()
            .rows(schema)
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!((rows[0], rows[1], rows[3]), (1.0, 2.0, unseen));
        assert!(rows[2].is_nan() && rows[5].is_nan());
        // Binary: each text a 4-byte little-endian length and its bytes ("blue", "x": 13 bytes).
        let binary = |extra: &[u8]| {
            let head = format!(
                r#"{{"inputs": [{{"name": "size", "shape": [2], "datatype": "FP64", "data": [1, 2]}},
                    {{"name": "colour", "shape": [2], "datatype": "BYTES", "parameters": {{"binary_data_size": {}}}}}]}}"#,
                13 + extra.len()
            );
            let mut body = head.clone().into_bytes();
            for text in ["blue", "x"] {
                body.extend_from_slice(&(text.len() as u32).to_le_bytes());
                body.extend_from_slice(text.as_bytes());
            }
            body.extend_from_slice(extra);
            (body, head.len())
        };
        let (body, head) = binary(&[]);
        let request = InferRequest::parse(&body, Some(head)).unwrap();
        assert_eq!(request.rows(schema).unwrap().1, vec![1.0, 1.0, 2.0, unseen]);
        for extra in [&[0u8, 0, 0][..], &[1, 0, 0, 0, b'y'][..]] {
            let (body, head) = binary(extra);
            let request = InferRequest::parse(&body, Some(head)).unwrap();
            assert!(
                request.rows(schema).is_err(),
                "{extra:?} past the shape's values"
            );
        }
        // A number for a category is known by its text; BYTES for a number is refused.
        let number = r#"{"inputs": [{"name": "size", "shape": [1], "datatype": "FP64", "data": [1]},
                                     {"name": "colour", "shape": [1], "datatype": "INT32", "data": [7]}]}"#;
        let request = InferRequest::parse(number.as_bytes(), None).unwrap();
        assert_eq!(request.rows(schema).unwrap().1, vec![1.0, 0.0]);
        let wrong = r#"{"inputs": [{"name": "size", "shape": [1], "datatype": "BYTES", "data": ["big"]},
                                    {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]}]}"#;
        let err = InferRequest::parse(wrong.as_bytes(), None)
            .unwrap()
            .rows(schema)
            .unwrap_err();
        assert_eq!(err.kind, InputErrorKind::InvalidValue, "{}", err.message);
    }

    #[test]
    fn binary_tensor_data_is_read_and_written() {
        let model = Model::new(crate::model::tests::binary_artifact()).unwrap();
        let json = br#"{"inputs": [{"name": "input", "shape": [2, 1], "datatype": "FP32", "parameters": {"binary_data_size": 8}}],
                        "outputs": [{"name": "label", "parameters": {"binary_data": true}}, {"name": "probabilities"}]}"#;
        let mut body = json.to_vec();
        body.extend_from_slice(&2.1f32.to_le_bytes());
        body.extend_from_slice(&0.2f32.to_le_bytes());
        let request = InferRequest::parse(&body, Some(json.len())).unwrap();
        let (n, rows) = request.rows(model.schema()).unwrap();
        assert_eq!((n, rows.clone()), (2, vec![2.1f32 as f64, 0.2f32 as f64]));
        let answer = InferTemplate::new(&model)
            .respond(
                &model,
                None,
                &request.outputs().unwrap(),
                n,
                &rows,
                &ClassTally::default(),
            )
            .unwrap();
        let split = answer.json_length.unwrap();
        let head: serde_json::Value = serde_json::from_slice(&answer.body[..split]).unwrap();
        assert_eq!(
            head["outputs"][0]["parameters"]["binary_data_size"],
            4 + 9 + 4 + 13
        );
        assert!(head["outputs"][0].get("data").is_none());
        assert_eq!(head["outputs"][1]["data"].as_array().unwrap().len(), 4);
        let labels = &answer.body[split..];
        assert_eq!(&labels[..4], &9u32.to_le_bytes());
        assert_eq!(&labels[4..13], b"virginica");
        assert_eq!(&labels[17..], b"not_virginica");

        // Integers, signed, little-endian; and sizes that do not add up are refused.
        let json = br#"{"inputs": [{"name": "petal_width", "shape": [2], "datatype": "INT16", "parameters": {"binary_data_size": 4}}]}"#;
        let mut body = json.to_vec();
        body.extend_from_slice(&(-3i16).to_le_bytes());
        body.extend_from_slice(&2i16.to_le_bytes());
        let request = InferRequest::parse(&body, Some(json.len())).unwrap();
        assert_eq!(request.rows(model.schema()).unwrap(), (2, vec![-3.0, 2.0]));
        drop(request);
        body.push(0);
        let extra = InferRequest::parse(&body, Some(json.len())).unwrap();
        assert!(extra.rows(model.schema()).is_err());
        assert!(InferRequest::parse(&body, Some(body.len() + 1)).is_err());
    }

    #[test]
    fn a_tree_model_reads_nan_and_null_as_missing_values_and_never_an_infinity() {
        let tree = Model::new(crate::model::tree::tests::one_tree_artifact()).unwrap();
        let linear = Model::new(crate::model::tests::binary_artifact()).unwrap();
        let binary = |values: &[f32]| {
            let json = format!(
                r#"{{"inputs": [{{"name": "petal_width", "shape": [{}], "datatype": "FP32", "parameters": {{"binary_data_size": {}}}}}]}}"#,
                values.len(),
                4 * values.len()
            );
            let mut body = json.clone().into_bytes();
            for v in values {
                body.extend_from_slice(&v.to_le_bytes());
            }
            (body, json.len())
        };
        let (body, split) = binary(&[f32::NAN, 2.0]);
        let request = InferRequest::parse(&body, Some(split)).unwrap();
        let (n, rows) = request.rows(tree.schema()).unwrap();
        assert_eq!(n, 2);
        assert!(rows[0].is_nan() && rows[1] == 2.0, "{rows:?}");
        assert!(
            request.rows(linear.schema()).is_err(),
            "a linear model scores no NaN"
        );
        let (body, split) = binary(&[f32::INFINITY]);
        let request = InferRequest::parse(&body, Some(split)).unwrap();
        assert!(
            request.rows(tree.schema()).is_err(),
            "an infinity is never missing"
        );

        let json = br#"{"inputs": [{"name": "petal_width", "shape": [3], "datatype": "FP64", "data": [1, null, 3]}]}"#;
        let request = InferRequest::parse(json, None).unwrap();
        let (_, rows) = request.rows(tree.schema()).unwrap();
        assert!(rows[1].is_nan());
        assert!(request.rows(linear.schema()).is_err());
        let ints = br#"{"inputs": [{"name": "petal_width", "shape": [2], "datatype": "INT32", "data": [1, null]}]}"#;
        let request = InferRequest::parse(ints, None).unwrap();
        let err = request.rows(tree.schema()).unwrap_err();
        assert!(err.message.contains("integer input"), "{err}");
        // A feature the request lacks entirely is still refused.
        let none =
            br#"{"inputs": [{"name": "other", "shape": [1], "datatype": "FP64", "data": [1]}]}"#;
        assert!(InferRequest::parse(none, None)
            .unwrap()
            .rows(tree.schema())
            .is_err());
    }
}
