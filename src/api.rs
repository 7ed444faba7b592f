//! The `/predict` wire format, shared by the HTTP server and `limen predict`.
//!
//! A request is a JSON object mapping feature names to numbers or numeric strings (extra keys are
//! ignored), or `{"instances": [{…}, …]}` for a batch. Decoding borrows from the request body and
//! only looks at the values of the model's own features, so a large or odd extra key costs a scan,
//! not an allocation per node. Every way a body can be wrong maps to an [`InputError`] whose kind
//! picks the HTTP status.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::{Model, PredictError, Prediction};

/// The batch key: an object holding it is a batch request.
pub const INSTANCES: &str = "instances";

/// One instance as sent: feature name → undecoded JSON value.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Instance<'a>(#[serde(borrow)] HashMap<Cow<'a, str>, &'a RawValue>);

/// A decoded `/predict` body, still borrowing from it.
#[derive(Debug)]
pub enum PredictRequest<'a> {
    Single(Instance<'a>),
    Batch(Vec<Instance<'a>>),
}

/// Whether the body was unreadable (400) or readable but unusable for this model (422).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputErrorKind {
    /// Not JSON, or not an object, or `instances` not an array of objects.
    Malformed,
    /// A missing feature, or a value that is not a finite number.
    Unprocessable,
}

/// What was wrong with a `/predict` body, in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub kind: InputErrorKind,
    pub message: String,
}

impl InputError {
    fn malformed(message: String) -> Self {
        Self {
            kind: InputErrorKind::Malformed,
            message,
        }
    }

    fn unprocessable(message: String) -> Self {
        Self {
            kind: InputErrorKind::Unprocessable,
            message,
        }
    }
}

impl<'a> PredictRequest<'a> {
    /// Parses a body. Fails with [`InputErrorKind::Malformed`] unless it is a JSON object (or a
    /// batch object whose `instances` is an array of objects).
    pub fn parse(body: &'a [u8]) -> Result<Self, InputError> {
        let object: Instance<'a> = serde_json::from_slice(body).map_err(|e| {
            use serde_json::error::Category;
            let what = match e.classify() {
                Category::Data => "the body must be a JSON object mapping feature names to numbers",
                Category::Eof if body.iter().all(u8::is_ascii_whitespace) => {
                    "the body is empty; send a JSON object such as {\"petal_width\": 2.1}"
                }
                _ => "the body is not valid JSON",
            };
            InputError::malformed(format!("{what} ({e})"))
        })?;
        match object.0.get(INSTANCES) {
            None => Ok(Self::Single(object)),
            Some(raw) => {
                let instances: Vec<Instance<'a>> =
                    serde_json::from_str(raw.get()).map_err(|e| {
                        InputError::malformed(format!(
                            "\"instances\" must be an array of JSON objects ({e})"
                        ))
                    })?;
                if instances.is_empty() {
                    return Err(InputError::unprocessable(
                        "\"instances\" is empty; send at least one instance".to_owned(),
                    ));
                }
                Ok(Self::Batch(instances))
            }
        }
    }
}

impl Instance<'_> {
    /// The model's feature values in its order, or a 422 naming the first bad feature.
    pub fn row(&self, features: &[String]) -> Result<Vec<f64>, InputError> {
        features
            .iter()
            .map(|name| match self.0.get(name.as_str()) {
                Some(raw) => decode_number(name, raw),
                None => Err(InputError::unprocessable(format!(
                    "missing feature {name:?}; this model needs: {}",
                    features.join(", ")
                ))),
            })
            .collect()
    }
}

/// A number, or a string holding one, that is finite.
fn decode_number(name: &str, raw: &RawValue) -> Result<f64, InputError> {
    let text = raw.get();
    let bad = |why: String| {
        Err(InputError::unprocessable(format!(
            "feature {name:?}: {why}"
        )))
    };
    let value = match text.as_bytes().first() {
        Some(b'"') => {
            let s: Cow<str> = serde_json::from_str(text)
                .map_err(|e| InputError::malformed(format!("feature {name:?}: {e}")))?;
            match s.trim().parse::<f64>() {
                Ok(v) => v,
                Err(_) => return bad(format!("{:?} is not a number", truncate(&s))),
            }
        }
        Some(b'-' | b'0'..=b'9') => match text.parse::<f64>() {
            Ok(v) => v,
            Err(_) => return bad(format!("{} is not a number", truncate(text))),
        },
        Some(b't' | b'f') => return bad(format!("{text} is a boolean, not a number")),
        Some(b'n') => return bad("null is not a number".to_owned()),
        _ => return bad(format!("{} is not a number", truncate(text))),
    };
    if !value.is_finite() {
        return bad(format!(
            "{} is not a finite number",
            truncate(text.trim_matches('"'))
        ));
    }
    Ok(value)
}

fn truncate(s: &str) -> Cow<'_, str> {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => Cow::Owned(format!("{}…", &s[..i])),
        None => Cow::Borrowed(s),
    }
}

/// One scored instance as answered: the label, every class probability and, for a binary model,
/// `result`, the probability of the positive class (the reference server's field).
#[derive(Debug, Clone, Serialize)]
pub struct PredictionBody<'m> {
    pub label: &'m str,
    pub probabilities: Probabilities<'m>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<f64>,
}

/// Class → probability, serialized as a JSON object in the model's class order.
#[derive(Debug, Clone)]
pub struct Probabilities<'m> {
    classes: &'m [String],
    values: Vec<f64>,
}

impl Serialize for Probabilities<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (class, p) in self.classes.iter().zip(&self.values) {
            map.serialize_entry(class, p)?;
        }
        map.end()
    }
}

impl<'m> PredictionBody<'m> {
    pub fn new(model: &'m Model, prediction: Prediction) -> Self {
        let classes = model.classes();
        Self {
            label: &classes[prediction.class],
            result: model.positive_probability(&prediction),
            probabilities: Probabilities {
                classes,
                values: prediction.probabilities,
            },
        }
    }
}

/// The answer to a single-instance `/predict`.
#[derive(Debug, Clone, Serialize)]
pub struct PredictResponse<'m> {
    pub model: &'m str,
    pub version: String,
    #[serde(flatten)]
    pub prediction: PredictionBody<'m>,
}

/// The answer to a batch `/predict`.
#[derive(Debug, Clone, Serialize)]
pub struct BatchPredictResponse<'m> {
    pub model: &'m str,
    pub version: String,
    pub predictions: Vec<PredictionBody<'m>>,
}

fn score<'m>(
    model: &'m Model,
    instance: &Instance<'_>,
    observe: &mut impl FnMut(&[f64]),
) -> Result<PredictionBody<'m>, InputError> {
    let row = instance.row(model.feature_names())?;
    let prediction = model.predict(&row).map_err(|e| match e {
        PredictError::Width { .. } | PredictError::NonFinite => {
            InputError::unprocessable(e.to_string())
        }
    })?;
    observe(&row);
    Ok(PredictionBody::new(model, prediction))
}

/// Scores a parsed request and serializes the answer to JSON bytes; `observe` sees each row
/// that was scored (the server counts predictions and out-of-range inputs with it).
pub fn answer(
    model: &Model,
    request: &PredictRequest<'_>,
    mut observe: impl FnMut(&[f64]),
) -> Result<Vec<u8>, InputError> {
    let version = model.version().to_string();
    let bytes = match request {
        PredictRequest::Single(instance) => serde_json::to_vec(&PredictResponse {
            model: model.name(),
            version,
            prediction: score(model, instance, &mut observe)?,
        }),
        PredictRequest::Batch(instances) => {
            let predictions = instances
                .iter()
                .enumerate()
                .map(|(i, inst)| {
                    score(model, inst, &mut observe).map_err(|e| InputError {
                        kind: e.kind,
                        message: format!("instance {i}: {}", e.message),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            serde_json::to_vec(&BatchPredictResponse {
                model: model.name(),
                version,
                predictions,
            })
        }
    };
    // Strings and finite floats always serialize.
    Ok(bytes.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::binary_artifact;

    fn model() -> Model {
        Model::new(binary_artifact()).unwrap()
    }

    fn respond(body: &str) -> Result<serde_json::Value, InputError> {
        let m = model();
        let req = PredictRequest::parse(body.as_bytes())?;
        Ok(serde_json::from_slice(&answer(&m, &req, |_| {})?).unwrap())
    }

    #[test]
    fn the_reference_request_gets_the_reference_probability() {
        let v = respond(r#"{"petal_width": "2.1"}"#).unwrap();
        assert_eq!(v["result"], 0.8704417670566003);
        assert_eq!(v["label"], "virginica");
        assert_eq!(v["model"], "iris");
        assert_eq!(v["version"], "7");
        assert_eq!(v["probabilities"]["virginica"], 0.8704417670566003);
        assert_eq!(
            respond(r#"{"petal_width": 2.1, "extra": [1,{}]}"#).unwrap(),
            v
        );
    }

    #[test]
    fn batches_answer_in_order() {
        let v =
            respond(r#"{"instances": [{"petal_width": 0.2}, {"petal_width": "2.5"}]}"#).unwrap();
        let p = v["predictions"].as_array().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0]["label"], "not_virginica");
        assert_eq!(p[1]["label"], "virginica");
    }

    #[test]
    fn malformed_bodies_are_400s() {
        for body in [
            "",
            "   ",
            "{",
            "[1]",
            "\"x\"",
            "2.1",
            "null",
            "{\"instances\": 3}",
            "{\"instances\": [1]}",
        ] {
            let err = respond(body).unwrap_err();
            assert_eq!(err.kind, InputErrorKind::Malformed, "{body:?}: {err}");
        }
    }

    #[test]
    fn unusable_values_are_422s_that_name_the_feature() {
        for body in [
            r#"{}"#,
            r#"{"petal_width": "abc"}"#,
            r#"{"petal_width": "NaN"}"#,
            r#"{"petal_width": "inf"}"#,
            r#"{"petal_width": "-Infinity"}"#,
            r#"{"petal_width": 1e999}"#,
            r#"{"petal_width": "1e999"}"#,
            r#"{"petal_width": true}"#,
            r#"{"petal_width": null}"#,
            r#"{"petal_width": [2.1]}"#,
            r#"{"petal_width": {"v": 2.1}}"#,
            r#"{"instances": []}"#,
            r#"{"instances": [{"petal_width": 1}, {}]}"#,
        ] {
            let err = respond(body).unwrap_err();
            assert_eq!(err.kind, InputErrorKind::Unprocessable, "{body}: {err}");
            assert!(
                err.message.contains("petal_width") || err.message.contains("instances"),
                "{err}"
            );
        }
    }

    /// What the server would answer for `body`: Ok(200) or the input error's kind.
    fn outcome(body: &[u8]) -> Result<(), InputErrorKind> {
        let m = model();
        let req = PredictRequest::parse(body).map_err(|e| e.kind)?;
        answer(&m, &req, |_| {}).map(|_| ()).map_err(|e| e.kind)
    }

    #[test]
    fn hostile_bodies_get_an_answer_not_a_crash() {
        let deep_array = "[".repeat(10_000) + &"]".repeat(10_000);
        let deep_value = format!(r#"{{"petal_width": {deep_array}}}"#);
        let deep_extra = format!(r#"{{"petal_width": 1, "x": {deep_array}}}"#);
        let deep_batch = format!(r#"{{"instances": {deep_array}}}"#);
        let huge_string = format!(r#"{{"petal_width": "{}"}}"#, "9".repeat(1 << 20));
        let many = format!(
            r#"{{"instances": [{}{{}}]}}"#,
            r#"{"petal_width": 1},"#.repeat(50_000)
        );
        let cases: Vec<(&[u8], Result<(), InputErrorKind>)> = vec![
            (deep_array.as_bytes(), Err(InputErrorKind::Malformed)),
            // The value of a feature is only ever read as a number: nesting makes it "not a number".
            (deep_value.as_bytes(), Err(InputErrorKind::Unprocessable)),
            // An ignored extra key is skipped, however deep, without recursing.
            (deep_extra.as_bytes(), Ok(())),
            (deep_batch.as_bytes(), Err(InputErrorKind::Malformed)),
            // A million nines is a finite number too large for f64: refused, not rounded to inf.
            (huge_string.as_bytes(), Err(InputErrorKind::Unprocessable)),
            (many.as_bytes(), Err(InputErrorKind::Unprocessable)),
            (
                b"{\"petal_width\": 1, \"petal_width\": \"x\"}",
                Err(InputErrorKind::Unprocessable),
            ),
            (b"{\"petal_width\": \"x\", \"petal_width\": 2}", Ok(())),
            (
                b"{\"petal_width\": \"\xff\xfe\"}",
                Err(InputErrorKind::Malformed),
            ),
            (b"\xff\xfe{}", Err(InputErrorKind::Malformed)),
            (b"{\"petal_width\": 1e308}", Ok(())),
            (b"{\"petal_width\": -1e308}", Ok(())),
            (b"{\"petal_width\": 1e-400}", Ok(())),
        ];
        for (body, want) in cases {
            assert_eq!(outcome(body), want, "{:.80}", String::from_utf8_lossy(body));
        }
    }

    /// Any JSON value, nested a few levels, with keys that sometimes are the feature's name.
    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            any::<i64>().prop_map(|i| serde_json::json!(i)),
            ".{0,12}".prop_map(serde_json::Value::String),
            "-?[0-9]{1,400}(\\.[0-9]{0,5})?(e-?[0-9]{1,4})?".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            Just("petal_width".to_owned()),
                            Just("instances".to_owned()),
                            ".{0,6}"
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = outcome(&body);
        }

        #[test]
        fn arbitrary_json_never_panics_and_success_means_finite_probabilities(value in json_value()) {
            let body = serde_json::to_vec(&value).unwrap();
            let m = model();
            if let Ok(req) = PredictRequest::parse(&body) {
                if let Ok(bytes) = answer(&m, &req, |row| assert!(row.iter().all(|v| v.is_finite()))) {
                    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    let results: Vec<f64> = match v.get("predictions") {
                        Some(p) => p.as_array().unwrap().iter().map(|p| p["result"].as_f64().unwrap()).collect(),
                        None => vec![v["result"].as_f64().unwrap()],
                    };
                    proptest::prop_assert!(results.iter().all(|r| (0.0..=1.0).contains(r)));
                }
            }
        }
    }

    #[test]
    fn escaped_keys_and_padded_numeric_strings_are_understood() {
        let v = respond(r#"{"petal\u005fwidth": " 2.1 "}"#).unwrap();
        assert_eq!(v["result"], 0.8704417670566003);
    }
}
