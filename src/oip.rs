//! The Open Inference Protocol (KServe "v2") REST wire format: metadata documents, and the
//! decoding of `/v2/models/{name}/infer` tensors into rows of features.
//!
//! Inputs come in either of two forms: one tensor `[N, n_features]` in the model's feature order
//! (any name), or one tensor per feature, named after it, of shape `[N]` (or `[N, 1]`). Data may be
//! flat (row-major) or nested. FP32, FP64 and the integer datatypes are accepted; integers are
//! converted. Outputs are `label` (BYTES, `[N]`) and `probabilities` (FP64, `[N, n_classes]`).
//! Every problem with a request is an [`OipError`], answered as a 400 `{"error": "…"}`.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::Model;

/// The output tensors a model produces.
pub const OUTPUT_LABEL: &str = "label";
pub const OUTPUT_PROBABILITIES: &str = "probabilities";
/// The platform limen reports for its models.
pub const PLATFORM: &str = "linfa_logistic";
/// The name metadata gives the `[N, n_features]` input tensor.
pub const INPUT_MATRIX: &str = "input";

/// A request the protocol cannot accept; always a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OipError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, OipError> {
    Err(OipError(message.into()))
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
            extensions: Vec::new(),
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
            platform: PLATFORM,
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
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Option<IgnoredAny>,
    #[serde(borrow)]
    pub inputs: Vec<RequestInput<'a>>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestOutput>>,
}

#[derive(Debug, Deserialize)]
pub struct RequestInput<'a> {
    pub name: String,
    pub shape: Vec<u64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Option<IgnoredAny>,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

#[derive(Debug, Deserialize)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<IgnoredAny>,
}

impl<'a> InferRequest<'a> {
    /// Parses a request body (the JSON shape only; tensors are checked by [`InferRequest::rows`]).
    pub fn parse(body: &'a [u8]) -> Result<Self, OipError> {
        serde_json::from_slice(body)
            .map_err(|e| OipError(format!("invalid inference request: {e}")))
    }

    /// The requested outputs, in order; all of them when the request names none.
    pub fn outputs(&self) -> Result<Vec<Output>, OipError> {
        let Some(requested) = &self.outputs else {
            return Ok(vec![Output::Label, Output::Probabilities]);
        };
        requested
            .iter()
            .map(|o| match o.name.as_str() {
                OUTPUT_LABEL => Ok(Output::Label),
                OUTPUT_PROBABILITIES => Ok(Output::Probabilities),
                other => err(format!(
                    "unknown output {other:?}; this model produces {OUTPUT_LABEL:?} and {OUTPUT_PROBABILITIES:?}"
                )),
            })
            .collect()
    }

    /// The feature rows (`N × n_features`, row-major) for `features`, from either input form.
    pub fn rows(&self, features: &[String]) -> Result<(usize, Vec<f64>), OipError> {
        let f = features.len();
        match self.inputs.as_slice() {
            [] => err("the request has no inputs"),
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
                let data = decode_data(one, dtype, element_count(&one.shape, &one.name)?)?;
                Ok((n, data))
            }
            inputs => {
                let mut columns: Vec<Option<Vec<f64>>> = vec![None; f];
                let mut n = None;
                for input in inputs {
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
                    columns[idx] = Some(decode_data(input, dtype, batch_size(rows)?)?);
                }
                let missing: Vec<&str> = features
                    .iter()
                    .zip(&columns)
                    .filter(|(_, c)| c.is_none())
                    .map(|(name, _)| name.as_str())
                    .collect();
                if !missing.is_empty() {
                    return err(format!("missing input(s): {}", missing.join(", ")));
                }
                let n = batch_size(n.unwrap_or_default())?;
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
    /// Inclusive range of an integer type.
    Int(i128, i128),
}

impl DataType {
    fn parse(name: &str, input: &str) -> Result<Self, OipError> {
        Ok(match name {
            "FP32" => Self::Fp32,
            "FP64" => Self::Fp64,
            "INT8" => Self::Int(i8::MIN.into(), i8::MAX.into()),
            "INT16" => Self::Int(i16::MIN.into(), i16::MAX.into()),
            "INT32" => Self::Int(i32::MIN.into(), i32::MAX.into()),
            "INT64" => Self::Int(i64::MIN.into(), i64::MAX.into()),
            "UINT8" => Self::Int(0, u8::MAX.into()),
            "UINT16" => Self::Int(0, u16::MAX.into()),
            "UINT32" => Self::Int(0, u32::MAX.into()),
            "UINT64" => Self::Int(0, u64::MAX.into()),
            other => {
                return err(format!(
                    "input {input:?} has datatype {other:?}; use FP32, FP64 or an INT/UINT type"
                ))
            }
        })
    }
}

fn batch_size(n: u64) -> Result<usize, OipError> {
    match usize::try_from(n) {
        Ok(0) => err("the batch is empty (a dimension of 0)"),
        Ok(n) => Ok(n),
        Err(_) => err(format!("batch size {n} is too large")),
    }
}

/// The number of elements `shape` holds, refusing products that overflow.
fn element_count(shape: &[u64], input: &str) -> Result<usize, OipError> {
    shape
        .iter()
        .try_fold(1u64, |acc, d| acc.checked_mul(*d))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| OipError(format!("input {input:?}: shape {shape:?} is too large")))
}

/// Flattens `input.data` (flat or nested) into exactly `expected` values of `dtype`.
fn decode_data(
    input: &RequestInput,
    dtype: DataType,
    expected: usize,
) -> Result<Vec<f64>, OipError> {
    let mut out = Vec::with_capacity(expected.min(1 << 16));
    let seed = Flatten {
        out: &mut out,
        dtype,
        limit: expected,
    };
    let mut de = serde_json::Deserializer::from_str(input.data.get());
    seed.deserialize(&mut de)
        .map_err(|e| OipError(format!("input {:?}: {e}", input.name)))?;
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

/// Pushes every number of a (nested) JSON array onto `out`, converting to `dtype`; stops with an
/// error past `limit` values, so a lying shape cannot make it buffer without bound.
struct Flatten<'o> {
    out: &'o mut Vec<f64>,
    dtype: DataType,
    limit: usize,
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
        let v = match self.dtype {
            DataType::Fp32 => v as f32 as f64,
            _ => v,
        };
        if !v.is_finite() {
            return Err(E::custom(format!(
                "{v} is not a finite {:?} value",
                self.dtype
            )));
        }
        self.out.push(v);
        Ok(())
    }

    fn push_int<E: de::Error>(&mut self, v: i128) -> Result<(), E> {
        if let DataType::Int(lo, hi) = self.dtype {
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
        if matches!(self.dtype, DataType::Int(..)) {
            return Err(E::custom(format!(
                "{v} is not an integer, as the input's datatype requires"
            )));
        }
        self.push(v)
    }
}

/// Scores `rows` and renders the inference response.
pub fn infer_response(
    model: &Model,
    id: Option<&str>,
    outputs: &[Output],
    n: usize,
    rows: &[f64],
) -> Result<Vec<u8>, OipError> {
    #[derive(Serialize)]
    struct Response<'a> {
        model_name: &'a str,
        model_version: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        outputs: Vec<ResponseOutput<'a>>,
    }
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Data<'a> {
        Labels(Vec<&'a str>),
        Numbers(Vec<f64>),
    }
    #[derive(Serialize)]
    struct ResponseOutput<'a> {
        name: &'static str,
        shape: Vec<usize>,
        datatype: &'static str,
        data: Data<'a>,
    }

    let n_features = model.feature_names().len();
    let n_classes = model.classes().len();
    let mut labels = Vec::with_capacity(n);
    let mut probabilities = Vec::with_capacity(n * n_classes);
    for (i, row) in rows.chunks_exact(n_features).enumerate() {
        let p = model
            .predict(row)
            .map_err(|e| OipError(format!("row {i}: {e}")))?;
        labels.push(model.classes()[p.class].as_str());
        probabilities.extend_from_slice(&p.probabilities);
    }
    let mut labels = Some(labels);
    let mut probabilities = Some(probabilities);
    let outputs = outputs
        .iter()
        .map(|o| match o {
            Output::Label => ResponseOutput {
                name: OUTPUT_LABEL,
                shape: vec![n],
                datatype: "BYTES",
                data: Data::Labels(labels.take().unwrap_or_default()),
            },
            Output::Probabilities => ResponseOutput {
                name: OUTPUT_PROBABILITIES,
                shape: vec![n, n_classes],
                datatype: "FP64",
                data: Data::Numbers(probabilities.take().unwrap_or_default()),
            },
        })
        .collect();
    let response = Response {
        model_name: model.name(),
        model_version: model.version().to_string(),
        id,
        outputs,
    };
    Ok(serde_json::to_vec(&response).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn rows(body: &str, names: &[&str]) -> Result<(usize, Vec<f64>), OipError> {
        InferRequest::parse(body.as_bytes())?.rows(&features(names))
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
            assert!(e.0.contains(why), "{body}: {e} lacks {why:?}");
        }
    }

    fn infer(body: &[u8]) -> Result<Vec<u8>, OipError> {
        let model = Model::new(crate::model::tests::binary_artifact()).unwrap();
        let request = InferRequest::parse(body)?;
        let outputs = request.outputs()?;
        let (n, rows) = request.rows(model.feature_names())?;
        infer_response(&model, request.id.as_deref(), &outputs, n, &rows)
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
        let req = InferRequest::parse(br#"{"inputs": [], "outputs": [{"name": "probabilities"}]}"#)
            .unwrap();
        assert_eq!(req.outputs().unwrap(), vec![Output::Probabilities]);
        let req =
            InferRequest::parse(br#"{"inputs": [], "outputs": [{"name": "logits"}]}"#).unwrap();
        assert!(req.outputs().is_err());
        let req = InferRequest::parse(br#"{"inputs": []}"#).unwrap();
        assert_eq!(
            req.outputs().unwrap(),
            vec![Output::Label, Output::Probabilities]
        );
    }
}
