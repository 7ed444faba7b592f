//! The `/predict` wire format, shared by the HTTP server and `limen predict`.
//!
//! A request is a JSON object mapping feature names to numbers or numeric strings (extra keys are
//! ignored), or `{"instances": [{…}, …]}` for a batch. It is decoded in one pass for a given
//! model: keys are borrowed from the body, only the model's own features are read (as raw JSON
//! text, so `1e999` is "not finite" rather than a parse error), and everything else is skipped
//! without building a value. The answer is written through a [`Template`] rendered once per
//! model, so a prediction costs a few float formats, not a JSON serializer walk. Every way a body
//! can be wrong maps to an [`InputError`] whose kind picks the HTTP status; a JSON syntax error
//! always wins over a bad value found earlier in the same body.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use axum::http::HeaderValue;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::input::check_answer_size;
pub use crate::input::{InputError, InputErrorKind};
use crate::model::{ClassTally, Model, PredictError, Schema};

/// The batch key: an object holding it is a batch request.
pub const INSTANCES: &str = "instances";

/// The parts of a model's answers that never change, rendered once: the JSON of the model name,
/// version, each label and each class key, and the `X-Model-Version` header's value. The
/// inference log writes its lines from the same parts (and the feature keys), so a model's
/// names are escaped once, when it is loaded.
#[derive(Debug, Clone)]
pub struct Template {
    /// The version as a header value (cloning it shares the bytes).
    version_header: HeaderValue,
    /// `{"model":…,"version":"…",`
    head: Vec<u8>,
    /// Per class: `"label":"…","probabilities":{`
    labels: Vec<Vec<u8>>,
    /// Per class: `"…":`
    keys: Vec<Vec<u8>>,
    /// Per feature: `"…":` (the inference log's lines name the features they were asked).
    features: Vec<Vec<u8>>,
    /// Per feature: for a category, each name as JSON (codes index it), for the log's lines.
    names: Vec<Option<Vec<Vec<u8>>>>,
    /// Whether some feature takes text (a body's unseen texts are then kept).
    categorical: bool,
    /// Binary models also answer `result`, the probability of the positive class.
    binary: bool,
    /// Whether an explanation decomposes one logit (a binary logistic model's, a binary tree
    /// ensemble's margin) rather than one per class.
    single_logit: bool,
    /// The most bytes one instance's answer can take (every float at its longest).
    row_bytes: usize,
    /// The same for an explained instance.
    explain_row_bytes: usize,
    /// The fewest body bytes one instance can take: each feature's key, quoted, a colon, a
    /// one-digit value and a comma, in braces.
    min_instance_bytes: usize,
}

impl Template {
    pub fn new(model: &Model) -> Self {
        let json = |s: &str| serde_json::to_string(s).expect("a string always serializes");
        Self {
            version_header: HeaderValue::from(model.version()),
            head: format!(
                "{{\"model\":{},\"version\":\"{}\",",
                json(model.name()),
                model.version()
            )
            .into_bytes(),
            labels: model
                .classes()
                .iter()
                .map(|c| format!("\"label\":{},\"probabilities\":{{", json(c)).into_bytes())
                .collect(),
            keys: model
                .classes()
                .iter()
                .map(|c| format!("{}:", json(c)).into_bytes())
                .collect(),
            features: model
                .feature_names()
                .iter()
                .map(|f| format!("{}:", json(f)).into_bytes())
                .collect(),
            names: (0..model.feature_names().len())
                .map(|i| match model.preprocessing().and_then(|c| c.get(i)) {
                    Some(crate::model::Column::Categorical {
                        categories, other, ..
                    }) => Some(
                        categories
                            .iter()
                            .chain(other)
                            .map(|c| json(c).into_bytes())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect(),
            categorical: model
                .preprocessing()
                .is_some_and(|c| c.iter().any(|c| c.is_categorical())),
            binary: model.positive_probability_index().is_some(),
            single_logit: model.logits() == 1,
            row_bytes: 0,
            explain_row_bytes: 0,
            min_instance_bytes: 3 + model
                .feature_names()
                .iter()
                .map(|f| f.len() + 5)
                .sum::<usize>(),
        }
        .with_row_bytes()
    }

    /// The value of the `X-Model-Version` header of every answer of this model.
    pub fn version_header(&self) -> HeaderValue {
        self.version_header.clone()
    }

    /// The version as it appears in the answers, without quotes.
    pub fn version(&self) -> &[u8] {
        self.version_header.as_bytes()
    }

    /// `"model":…,"version":"…",`: the answers' first fields, without the opening brace.
    pub fn model_fields(&self) -> &[u8] {
        self.head.get(1..).unwrap_or_default()
    }

    /// `{"name":value,…}` for the model's features and `row`'s values, in feature order.
    pub fn write_features(&self, out: &mut Vec<u8>, row: &[f64]) {
        out.push(b'{');
        write_pairs(out, &self.features, row);
        out.push(b'}');
    }

    /// `{"name":value,…}` for the model's features and a decoded `row`, in feature order: a
    /// category by its name (an unseen one by the text sent, from `unseen`), a missing value
    /// as `null`. What the inference log's lines carry, and training from it reads back.
    pub fn write_inputs(&self, out: &mut Vec<u8>, row: &[f64], unseen: &[String]) {
        out.push(b'{');
        for (i, (key, &v)) in self.features.iter().zip(row).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            match self.names.get(i).and_then(Option::as_ref) {
                None => write_f64(out, v),
                Some(_) if v.is_nan() => out.extend_from_slice(b"null"),
                Some(names) => {
                    let name = match unseen_index(v) {
                        Some(k) => unseen
                            .get(k)
                            .map(|t| serde_json::to_vec(t).unwrap_or_default()),
                        None if v >= 0.0 && v.fract() == 0.0 => names.get(v as usize).cloned(),
                        None => None,
                    };
                    match name {
                        Some(name) => out.extend_from_slice(&name),
                        None => out.extend_from_slice(b"null"),
                    }
                }
            }
        }
        out.push(b'}');
    }

    fn with_row_bytes(mut self) -> Self {
        // The longest f64 serde_json writes is 24 bytes (-2.2250738585072014e-308).
        const FLOAT: usize = 24;
        let label = self.labels.iter().map(Vec::len).max().unwrap_or(0);
        let keys: usize = self.keys.iter().map(|k| k.len() + 1 + FLOAT).sum();
        let result = if self.binary { 10 + FLOAT } else { 0 };
        self.row_bytes = 4 + label + keys + result;
        // `,"logit":…,"baseline_logit":…,"contributions":{…}`: one number and one map of the
        // features each for a binary model, per class for a multinomial one.
        let features: usize = self.features.iter().map(|f| f.len() + 1 + FLOAT).sum();
        let key_names: usize = self.keys.iter().map(Vec::len).sum();
        let classes = self.keys.len();
        self.explain_row_bytes = self.row_bytes
            + if self.single_logit {
                9 + FLOAT + 18 + FLOAT + 18 + features + 1
            } else {
                11 + 2 * keys + 20 + 18 + key_names + classes * (3 + features) + 1
            };
        self
    }

    /// The most bytes decoding a `/predict` body of `len` bytes can hold besides the body: the
    /// rows (at most one per `min_instance_bytes` of body, growing a vector by
    /// doubling), each instance's feature slots, and an unescaped copy of a string value.
    pub fn decode_bytes(&self, len: usize) -> usize {
        let features = self.features.len();
        let rows = len / self.min_instance_bytes.max(1) + 1;
        // Unseen category texts are kept: each at most its own text in the body, in a String
        // (24 bytes) of a vector grown by doubling; a JSON string and its separator take 3
        // bytes at least, so a body holds at most len / 3 of them.
        let unseen = if self.categorical {
            len.saturating_add(MAX_UNSEEN_KEPT.min(len / 3 + 1) * 48)
        } else {
            0
        };
        len.saturating_add(rows.saturating_mul(features).saturating_mul(16))
            .saturating_add(features * 64)
            .saturating_add(unseen)
    }

    /// The most bytes the answer to `rows` instances can take (allocated at this size at once).
    pub fn answer_bytes(&self, rows: usize) -> usize {
        rows.max(1)
            .saturating_mul(self.row_bytes + 1)
            .saturating_add(self.head.len() + 32)
    }

    /// The same for an explanation of `rows` instances.
    pub fn explain_bytes(&self, rows: usize) -> usize {
        rows.max(1)
            .saturating_mul(self.explain_row_bytes + 1)
            .saturating_add(self.head.len() + 32)
    }

    /// `"label":…,"probabilities":{…}`, without braces around it.
    pub fn write_label(&self, out: &mut Vec<u8>, class: usize, probabilities: &[f64]) {
        out.extend_from_slice(&self.labels[class]);
        write_pairs(out, &self.keys, probabilities);
        out.push(b'}');
    }

    /// `"label":…,"probabilities":{…}[,"result":…]`, without braces around it.
    fn write_prediction(&self, out: &mut Vec<u8>, class: usize, probabilities: &[f64]) {
        self.write_label(out, class, probabilities);
        if self.binary {
            out.extend_from_slice(b",\"result\":");
            write_f64(out, probabilities[1]);
        }
    }
}

/// `key value, key value, …` for rendered keys (`"…":`) and values, in order.
fn write_pairs(out: &mut Vec<u8>, keys: &[Vec<u8>], values: &[f64]) {
    for (i, (key, v)) in keys.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key);
        write_f64(out, *v);
    }
}

/// A float as serde_json writes it (shortest round-trip form).
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    // Writing a finite f64 into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &v);
}

/// Decodes `body` for `model` and writes the answer (what `limen predict` prints): [`decode`]
/// then [`respond`].
pub fn answer(model: &Model, template: &Template, body: &[u8]) -> Result<Vec<u8>, InputError> {
    let decoded = decode(body, model.schema())?;
    respond(model, template, &decoded, &ClassTally::default())
}

/// The answer to decoded rows: `{"model", "version", "label", "probabilities", "result"?}` for
/// one instance, `{"model", "version", "predictions": […]}` for a batch. Refused (413) when it
/// would pass the answer size limit; written into one buffer of [`Template::answer_bytes`].
pub fn respond(
    model: &Model,
    template: &Template,
    decoded: &Decoded,
    tally: &ClassTally,
) -> Result<Vec<u8>, InputError> {
    each_row(
        template,
        decoded,
        template.row_bytes,
        |row, out, probabilities| {
            let class = score_row(model, row, probabilities)?;
            tally.count(class);
            template.write_prediction(out, class, probabilities);
            Ok(())
        },
    )
}

/// Decodes `body` like [`answer`] and explains every instance ([`respond_explained`]).
pub fn explain(model: &Model, template: &Template, body: &[u8]) -> Result<Vec<u8>, InputError> {
    let decoded = decode(body, model.schema())?;
    respond_explained(model, template, &decoded, &ClassTally::default())
}

/// The `/predict` fields of every instance plus `logit`, `baseline_logit` and `contributions`
/// (feature → weight × (x − training mean), in feature order); for a multinomial model each of
/// the three is per class. `baseline_logit` plus the contributions is `logit`. Written from the
/// template's escaped names into one buffer of [`Template::explain_bytes`].
pub fn respond_explained(
    model: &Model,
    template: &Template,
    decoded: &Decoded,
    tally: &ClassTally,
) -> Result<Vec<u8>, InputError> {
    each_row(
        template,
        decoded,
        template.explain_row_bytes,
        |row, out, _| {
            let e = model.explain(row).map_err(unscorable)?;
            tally.count(e.prediction.class);
            template.write_prediction(out, e.prediction.class, &e.prediction.probabilities);
            if template.single_logit {
                out.extend_from_slice(b",\"logit\":");
                write_f64(out, e.logits[0]);
                out.extend_from_slice(b",\"baseline_logit\":");
                write_f64(out, e.baseline[0]);
                out.extend_from_slice(b",\"contributions\":");
                template.write_features(out, &e.contributions[0]);
            } else {
                let per_class = |out: &mut Vec<u8>, values: &[f64]| {
                    out.push(b'{');
                    write_pairs(out, &template.keys, values);
                    out.push(b'}');
                };
                out.extend_from_slice(b",\"logit\":");
                per_class(out, &e.logits);
                out.extend_from_slice(b",\"baseline_logit\":");
                per_class(out, &e.baseline);
                out.extend_from_slice(b",\"contributions\":{");
                for (k, (key, parts)) in template.keys.iter().zip(&e.contributions).enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key);
                    template.write_features(out, parts);
                }
                out.push(b'}');
            }
            Ok(())
        },
    )
}

fn unscorable(e: PredictError) -> InputError {
    match e {
        PredictError::Width { .. } | PredictError::NonFinite => {
            InputError::new(InputErrorKind::Unscorable, e.to_string())
        }
        PredictError::Text { .. } => InputError::new(InputErrorKind::InvalidValue, e.to_string()),
    }
}

fn score_row(
    model: &Model,
    row: &[f64],
    probabilities: &mut Vec<f64>,
) -> Result<usize, InputError> {
    model.predict_into(row, probabilities).map_err(unscorable)
}

/// The answer's frame around `write_row` for each instance: the model's head, then the one
/// instance's fields or `"predictions":[{…},…]`, in a buffer sized for `row_bytes` per row.
fn each_row(
    template: &Template,
    decoded: &Decoded,
    row_bytes: usize,
    mut write_row: impl FnMut(&[f64], &mut Vec<u8>, &mut Vec<f64>) -> Result<(), InputError>,
) -> Result<Vec<u8>, InputError> {
    check_answer_size(decoded.rows, row_bytes)?;
    if decoded.batch && decoded.rows == 0 {
        return Err(InputError::new(
            InputErrorKind::EmptyBatch,
            "\"instances\" is empty; send at least one instance",
        ));
    }
    let width = template.features.len().max(1);
    let mut out = Vec::with_capacity(
        (decoded.rows.max(1) * (row_bytes + 1)).saturating_add(template.head.len() + 32),
    );
    out.extend_from_slice(&template.head);
    let mut probabilities = Vec::with_capacity(template.keys.len());
    if decoded.batch {
        out.extend_from_slice(b"\"predictions\":[");
        for (i, row) in decoded.values.chunks_exact(width).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            write_row(row, &mut out, &mut probabilities)
                .map_err(|e| e.context(format_args!("instance {i}")))?;
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    } else {
        write_row(&decoded.values, &mut out, &mut probabilities)?;
        out.push(b'}');
    }
    Ok(out)
}

/// A decoded body: `rows × features` values, row-major, in the model's feature order.
#[derive(Debug)]
pub struct Decoded {
    /// Whether the body was a batch (`instances`).
    pub batch: bool,
    pub rows: usize,
    /// Numbers, NaN for a missing value; for a category, its code ([`unseen_code`] for text the
    /// model never saw).
    pub values: Vec<f64>,
    /// The text of each unseen category, which [`unseen_code`] indexes: kept so the inference
    /// log records what was sent (a model retrained from the log learns it).
    pub unseen: Vec<String>,
}

/// The code of the `k`th unseen category of a request: negative, so it scores as unseen.
pub fn unseen_code(k: usize) -> f64 {
    -1.0 - k as f64
}

/// The index into [`Decoded::unseen`] of an unseen code, if `code` is one.
pub fn unseen_index(code: f64) -> Option<usize> {
    (code <= -1.0 && code.fract() == 0.0).then(|| (-code - 1.0) as usize)
}

/// Unseen category texts one request keeps for the inference log; past it (or past
/// [`MAX_CATEGORY_BYTES`] a text) they still score as unseen, and are logged as unseen.
pub const MAX_UNSEEN_KEPT: usize = 4096;

use crate::model::encoding::MAX_CATEGORY_BYTES;

/// Decodes a `/predict` body for a model of `schema`.
pub fn decode(body: &[u8], schema: Schema<'_>) -> Result<Decoded, InputError> {
    // Checking the whole body once is cheaper than serde_json checking each string in it.
    let body = std::str::from_utf8(body).map_err(|e| {
        InputError::malformed(format!("the body is not valid JSON (it is not UTF-8: {e})"))
    })?;
    let mut de = serde_json::Deserializer::from_str(body);
    let unseen = RefCell::new(Vec::new());
    let parsed = TopLevel {
        schema,
        unseen: &unseen,
    }
    .deserialize(&mut de)
    .and_then(|decoded| de.end().map(|()| decoded));
    match parsed {
        Ok(decoded) => decoded,
        Err(e) => {
            use serde_json::error::Category;
            let example = example(schema);
            let message = match e.classify() {
                Category::Data => format!("{e}; send a JSON object such as {example}"),
                Category::Eof if body.bytes().all(|b| b.is_ascii_whitespace()) => {
                    format!("the body is empty; send a JSON object such as {example}")
                }
                _ if looks_form_encoded(body) => format!(
                    "the body is form-encoded (name=value), not JSON; send a JSON object such as {example}"
                ),
                _ => format!("the body is not valid JSON ({e}); send a JSON object such as {example}"),
            };
            Err(InputError::malformed(message))
        }
    }
}

/// A body this model would accept, for error messages: its first three features, each 1.0.
fn example(schema: Schema<'_>) -> String {
    let mut pairs: Vec<String> = schema
        .features
        .iter()
        .take(3)
        .map(|f| format!("{}: 1.0", serde_json::Value::from(f.as_str())))
        .collect();
    if schema.features.len() > 3 {
        pairs.push("…".to_owned());
    }
    format!("{{{}}}", pairs.join(", "))
}

/// `name=value&name=value`: what `curl -d a=1` or an HTML form sends.
fn looks_form_encoded(body: &str) -> bool {
    let body = body.trim();
    !body.is_empty()
        && !body.starts_with(['{', '['])
        && body.split('&').all(|pair| {
            pair.split_once('=')
                .is_some_and(|(name, _)| !name.is_empty() && !name.contains(char::is_whitespace))
        })
}

/// What a feature's value decoded to: deferred, so a syntax error later in the body still wins.
type Slot = Option<Result<f64, InputError>>;

/// Where a request's unseen category texts are kept while it is decoded.
type Unseen = RefCell<Vec<String>>;

/// The top-level object: a single instance, or a batch under `instances`.
struct TopLevel<'f> {
    schema: Schema<'f>,
    unseen: &'f Unseen,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Result<Decoded, InputError>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Result<Decoded, InputError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the body to be a JSON object mapping feature names to numbers")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut slots: Vec<Slot> = vec![None; self.schema.features.len()];
        let mut batch: Option<Result<(usize, Vec<f64>), InputError>> = None;
        let mut batches = 0;
        while let Some(Key(key)) = map.next_key()? {
            if key == INSTANCES {
                batches += 1;
                batch = Some(map.next_value_seed(Instances {
                    schema: self.schema,
                    unseen: self.unseen,
                })?);
            } else {
                read_field(&mut map, &key, self.schema, &mut slots, self.unseen)?;
            }
        }
        // Which instance would be meant is a guess: refuse rather than pick one.
        if batches > 1 {
            return Ok(Err(InputError::malformed(
                "\"instances\" appears twice; send one batch",
            )));
        }
        if batch.is_some() && slots.iter().any(Option::is_some) {
            return Ok(Err(InputError::malformed(
                "the body has both \"instances\" and top-level features; send one instance or a batch, not both",
            )));
        }
        let unseen = self.unseen.take();
        Ok(match batch {
            Some(Ok((rows, values))) => Ok(Decoded {
                batch: true,
                rows,
                values,
                unseen,
            }),
            Some(Err(e)) => Err(e),
            None => {
                let mut values = Vec::with_capacity(self.schema.features.len());
                collect_row(slots, self.schema, &mut values).map(|()| Decoded {
                    batch: false,
                    rows: 1,
                    values,
                    unseen,
                })
            }
        })
    }
}

/// Reads the value of `key`: decoded if it is one of `features`, skipped (unparsed) otherwise.
fn read_field<'de, A: MapAccess<'de>>(
    map: &mut A,
    key: &str,
    schema: Schema<'_>,
    slots: &mut [Slot],
    unseen: &Unseen,
) -> Result<(), A::Error> {
    let raw: &RawValue = map.next_value()?;
    if let Some(i) = schema.features.iter().position(|f| f == key) {
        slots[i] = Some(match slots[i] {
            // Which value would be meant is a guess (JSON leaves it open): refuse.
            Some(_) => Err(InputError::malformed(format!(
                "feature {key:?} appears twice; send each feature once"
            ))),
            None => match schema.encoder {
                Some(encoder) if encoder.is_categorical(i) => {
                    decode_category(key, raw, |text| match encoder.code(i, text) {
                        code if code >= 0.0 => code,
                        _ => {
                            let mut kept = unseen.borrow_mut();
                            if kept.len() < MAX_UNSEEN_KEPT && text.len() <= MAX_CATEGORY_BYTES {
                                kept.push(text.to_owned());
                                unseen_code(kept.len() - 1)
                            } else {
                                crate::model::encoding::UNSEEN
                            }
                        }
                    })
                }
                _ => decode_number(key, raw, schema.missing),
            },
        });
    }
    Ok(())
}

/// A category: text (or a number, known by the text it prints as) through `code`; `null` is a
/// missing value.
fn decode_category(
    name: &str,
    raw: &RawValue,
    code: impl FnOnce(&str) -> f64,
) -> Result<f64, InputError> {
    let text = raw.get();
    let bad = |why: String| {
        Err(InputError::new(
            InputErrorKind::InvalidValue,
            format!("feature {name:?}: {why}"),
        ))
    };
    match text.as_bytes().first() {
        Some(b'"') => {
            let s: Cow<str> = serde_json::from_str(text)
                .map_err(|e| InputError::malformed(format!("feature {name:?}: {e}")))?;
            Ok(code(s.trim()))
        }
        Some(b'-' | b'0'..=b'9') => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(code(&format!("{v}"))),
            _ => bad(format!("{} is not a finite number", truncate(text))),
        },
        Some(b'n') => Ok(f64::NAN),
        Some(b't' | b'f') => bad(format!(
            "{text} is a boolean; this feature takes a category (text)"
        )),
        _ => bad("this feature takes a category (text), a number or null".to_owned()),
    }
}

/// The feature values of one instance in model order, or the first problem with them. For a
/// model with preprocessing an absent feature is a missing value, but an instance carrying
/// none of the model's features is refused (every key misspelt, say).
fn collect_row(slots: Vec<Slot>, schema: Schema<'_>, out: &mut Vec<f64>) -> Result<(), InputError> {
    let features = schema.features;
    if schema.encoder.is_some() && slots.iter().all(Option::is_none) {
        return Err(InputError::new(
            InputErrorKind::MissingFeature,
            format!(
                "the instance has none of this model's features: {}",
                features.join(", ")
            ),
        ));
    }
    for (slot, name) in slots.into_iter().zip(features) {
        match slot {
            Some(value) => out.push(value?),
            None if schema.encoder.is_some() => out.push(f64::NAN),
            None => {
                return Err(InputError::new(
                    InputErrorKind::MissingFeature,
                    format!(
                        "missing feature {name:?}; this model needs: {}",
                        features.join(", ")
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// The `instances` array: objects, each read like a single instance.
struct Instances<'f> {
    schema: Schema<'f>,
    unseen: &'f Unseen,
}

impl<'de> DeserializeSeed<'de> for Instances<'_> {
    type Value = Result<(usize, Vec<f64>), InputError>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Instances<'_> {
    type Value = Result<(usize, Vec<f64>), InputError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"instances\" to be an array of JSON objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::new();
        let mut rows = 0;
        let mut first_error = None;
        while let Some(row) = seq.next_element_seed(Instance {
            schema: self.schema,
            out: &mut values,
            unseen: self.unseen,
        })? {
            if let (Err(e), None) = (row, &first_error) {
                first_error = Some(e.context(format_args!("instance {rows}")));
            }
            rows += 1;
        }
        Ok(match first_error {
            Some(e) => Err(e),
            None => Ok((rows, values)),
        })
    }
}

/// One object of `instances`, appended to `out`.
struct Instance<'f, 'o> {
    schema: Schema<'f>,
    out: &'o mut Vec<f64>,
    unseen: &'f Unseen,
}

impl<'de> DeserializeSeed<'de> for Instance<'_, '_> {
    type Value = Result<(), InputError>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Instance<'_, '_> {
    type Value = Result<(), InputError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("each of \"instances\" to be a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut slots: Vec<Slot> = vec![None; self.schema.features.len()];
        while let Some(Key(key)) = map.next_key()? {
            read_field(&mut map, &key, self.schema, &mut slots, self.unseen)?;
        }
        // A row that fails fails the whole request, so its partial values do not matter.
        Ok(collect_row(slots, self.schema, self.out))
    }
}

/// An object key, borrowed from the body unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A number, or a string holding one, that is finite; or, for a model that scores missing
/// values, `null` (as NaN).
fn decode_number(name: &str, raw: &RawValue, missing: bool) -> Result<f64, InputError> {
    let text = raw.get();
    let bad = |why: String| {
        Err(InputError::new(
            InputErrorKind::InvalidValue,
            format!("feature {name:?}: {why}"),
        ))
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
        Some(b'n') if missing => return Ok(f64::NAN),
        Some(b'n') => {
            return bad("null is not a number (this model scores no missing value)".to_owned())
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_is_not_an_object_says_what_this_model_takes() {
        let features = ["bill_length".to_owned(), "island code".to_owned()];
        let schema = Schema {
            features: &features,
            missing: false,
            encoder: None,
        };
        let example = r#"{"bill_length": 1.0, "island code": 1.0}"#;
        for (body, says) in [
            (
                "bill_length=2.1&flipper=3",
                "form-encoded (name=value), not JSON",
            ),
            ("[1, 2]", "invalid type: sequence"),
            ("\"x\"", "invalid type: string"),
            ("  ", "the body is empty"),
            ("{\"bill_length\": ", "not valid JSON"),
        ] {
            let message = decode(body.as_bytes(), schema).unwrap_err().message;
            assert!(
                message.contains(says) && message.ends_with(example) && !message.starts_with('('),
                "{body}: {message}"
            );
        }
    }
    use crate::model::tests::binary_artifact;

    fn model() -> Model {
        Model::new(binary_artifact()).unwrap()
    }

    fn respond(body: &str) -> Result<serde_json::Value, InputError> {
        let m = model();
        let bytes = answer(&m, &Template::new(&m), body.as_bytes())?;
        Ok(serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn unseen_texts_are_kept_up_to_their_cap_within_what_decoding_reserves() {
        let model = Model::new(crate::model::tests::mixed_artifact()).unwrap();
        let template = Template::new(&model);
        for n in [1, 100, 3000, 6000] {
            let instances: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"petal_width": 1, "island": "u{i}"}}"#))
                .collect();
            let body = format!(r#"{{"instances": [{}]}}"#, instances.join(","));
            let decoded = decode(body.as_bytes(), model.schema()).unwrap();
            assert_eq!(decoded.unseen.len(), n.min(MAX_UNSEEN_KEPT), "{n}");
            let held = decoded.values.capacity() * 8
                + decoded.unseen.capacity() * std::mem::size_of::<String>()
                + decoded.unseen.iter().map(String::capacity).sum::<usize>();
            assert!(
                held <= template.decode_bytes(body.len()),
                "{n}: {held} > {}",
                template.decode_bytes(body.len())
            );
        }
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
    fn the_answer_is_compact_json_in_a_fixed_key_order() {
        let m = model();
        let bytes = answer(&m, &Template::new(&m), br#"{"petal_width": "2.1"}"#).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"model":"iris","version":"7","label":"virginica","probabilities":{"not_virginica":0.12955823294339974,"virginica":0.8704417670566003},"result":0.8704417670566003}"#
        );
        let bytes = answer(
            &m,
            &Template::new(&m),
            br#"{"instances": [{"petal_width": 0}]}"#,
        )
        .unwrap();
        assert!(String::from_utf8(bytes).unwrap().starts_with(
            r#"{"model":"iris","version":"7","predictions":[{"label":"not_virginica","probabilities":{"not_virginica":0.99"#
        ));
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
        use InputErrorKind::*;
        for (body, kind) in [
            (r#"{}"#, MissingFeature),
            (r#"{"petal_width": "abc"}"#, InvalidValue),
            (r#"{"petal_width": "NaN"}"#, InvalidValue),
            (r#"{"petal_width": "inf"}"#, InvalidValue),
            (r#"{"petal_width": "-Infinity"}"#, InvalidValue),
            (r#"{"petal_width": 1e999}"#, InvalidValue),
            (r#"{"petal_width": "1e999"}"#, InvalidValue),
            (r#"{"petal_width": true}"#, InvalidValue),
            (r#"{"petal_width": null}"#, InvalidValue),
            (r#"{"petal_width": [2.1]}"#, InvalidValue),
            (r#"{"petal_width": {"v": 2.1}}"#, InvalidValue),
            (r#"{"instances": []}"#, EmptyBatch),
            (r#"{"instances": [{"petal_width": 1}, {}]}"#, MissingFeature),
        ] {
            let err = respond(body).unwrap_err();
            assert_eq!(err.kind, kind, "{body}: {err}");
            assert!(
                err.message.contains("petal_width") || err.message.contains("instances"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_tree_model_reads_null_as_a_missing_value_and_still_needs_every_feature() {
        let m = Model::new(crate::model::tree::tests::one_tree_artifact()).unwrap();
        let template = Template::new(&m);
        let answer_of = |body: &str| {
            answer(&m, &template, body.as_bytes())
                .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
        };
        // The root sends missing values left, to the leaf that x = 0.5 reaches.
        let missing = answer_of(r#"{"petal_width": null}"#).unwrap();
        assert_eq!(missing, answer_of(r#"{"petal_width": 0.5}"#).unwrap());
        assert_ne!(missing, answer_of(r#"{"petal_width": 5}"#).unwrap());
        let batch =
            answer_of(r#"{"instances": [{"petal_width": null}, {"petal_width": 5}]}"#).unwrap();
        assert_eq!(batch["predictions"].as_array().unwrap().len(), 2);
        // Only `null` is missing: a NaN spelled as a string, or an absent key, is still refused.
        for (body, kind) in [
            (r#"{"petal_width": "NaN"}"#, InputErrorKind::InvalidValue),
            (r#"{"petal_width": "null"}"#, InputErrorKind::InvalidValue),
            (r#"{"petal_width": "inf"}"#, InputErrorKind::InvalidValue),
            (r#"{}"#, InputErrorKind::MissingFeature),
            (
                r#"{"instances": [{"petal_width": null}, {}]}"#,
                InputErrorKind::MissingFeature,
            ),
        ] {
            assert_eq!(answer_of(body).unwrap_err().kind, kind, "{body}");
        }
        // The explanation of a missing value follows the same default side.
        let explained = explain(&m, &template, br#"{"petal_width": null}"#).unwrap();
        let explained: serde_json::Value = serde_json::from_slice(&explained).unwrap();
        assert_eq!(explained["label"], missing["label"]);
    }

    /// What the server would answer for `body`: Ok(200) or the input error's kind.
    fn outcome(body: &[u8]) -> Result<(), InputErrorKind> {
        let m = model();
        answer(&m, &Template::new(&m), body)
            .map(|_| ())
            .map_err(|e| e.kind)
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
            (deep_value.as_bytes(), Err(InputErrorKind::InvalidValue)),
            // An ignored extra key is skipped, however deep, without recursing.
            (deep_extra.as_bytes(), Ok(())),
            (deep_batch.as_bytes(), Err(InputErrorKind::Malformed)),
            // A million nines is a finite number too large for f64: refused, not rounded to inf.
            (huge_string.as_bytes(), Err(InputErrorKind::InvalidValue)),
            (many.as_bytes(), Err(InputErrorKind::MissingFeature)),
            (
                b"{\"petal_width\": 1, \"petal_width\": \"x\"}",
                Err(InputErrorKind::Malformed),
            ),
            (
                b"{\"petal_width\": \"x\", \"petal_width\": 2}",
                Err(InputErrorKind::Malformed),
            ),
            (
                b"{\"petal_width\": 1, \"instances\": [{\"petal_width\": 2}]}",
                Err(InputErrorKind::Malformed),
            ),
            (
                b"{\"instances\": [], \"instances\": [{\"petal_width\": 2}]}",
                Err(InputErrorKind::Malformed),
            ),
            // Keys that are not features are ignored, repeated or not.
            (b"{\"x\": 1, \"x\": 2, \"petal_width\": 2}", Ok(())),
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
            let template = Template::new(&m);
            if let Ok(decoded) = decode(&body, m.schema()) {
                proptest::prop_assert!(decoded.values.iter().all(|v| v.is_finite()));
            }
            if let Ok(bytes) = answer(&m, &template, &body) {
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let results: Vec<f64> = match v.get("predictions") {
                    Some(p) => p.as_array().unwrap().iter().map(|p| p["result"].as_f64().unwrap()).collect(),
                    None => vec![v["result"].as_f64().unwrap()],
                };
                proptest::prop_assert!(results.iter().all(|r| (0.0..=1.0).contains(r)));
            }
        }
    }

    #[test]
    fn escaped_keys_and_padded_numeric_strings_are_understood() {
        let v = respond(r#"{"petal\u005fwidth": " 2.1 "}"#).unwrap();
        assert_eq!(v["result"], 0.8704417670566003);
    }
}
