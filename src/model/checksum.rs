//! `model.json`'s checksum: SHA-256 over the file's canonical JSON form without its top-level
//! `checksum` field (compact, object keys sorted by byte order, numbers and strings as serde_json
//! writes them), computed while the file is parsed, token by token, never as a JSON tree.
//!
//! A `serde_json::Value` of a file takes about 16 bytes per byte of it (a 36 MB 1,000-tree model
//! would take 600 MB to verify); streaming holds the canonical bytes of the object being sorted
//! and nothing else: at most about twice the file.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use sha2::{Digest as _, Sha256};

/// What verifying a file needs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// `sha256:<hex>` of its canonical form.
    pub actual: String,
    /// Its top-level `checksum`, when that is a string.
    pub stated: Option<String>,
    /// Its top-level `format`, when that is a string.
    pub format: Option<String>,
}

/// Parses `bytes` as one JSON value (nothing after it but whitespace) and digests it. Duplicate
/// keys in an object are refused: which one a reader takes is a guess.
pub fn digest(bytes: &[u8]) -> Result<Digest, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut canonical = Vec::with_capacity(bytes.len().min(1 << 20));
    let mut top = Top::default();
    de::Deserializer::deserialize_any(
        &mut de,
        Canon {
            out: &mut canonical,
            top: Some(&mut top),
        },
    )?;
    de.end()?;
    Ok(Digest {
        actual: format!("sha256:{:x}", Sha256::digest(&canonical)),
        stated: top.checksum,
        format: top.format,
    })
}

/// The top-level fields the digest reports.
#[derive(Default)]
struct Top {
    checksum: Option<String>,
    format: Option<String>,
}

/// Writes one value's canonical form to `out`; at the top level (`top`), leaves out `checksum`
/// and notes `checksum` and `format`.
struct Canon<'o> {
    out: &'o mut Vec<u8>,
    top: Option<&'o mut Top>,
}

impl Canon<'_> {
    fn write<T: serde::Serialize + ?Sized>(self, value: &T) {
        // Strings and numbers always serialize, and writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, value);
    }
}

impl<'de> DeserializeSeed<'de> for Canon<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Canon<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.write(&v);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.write(&v);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.write(&v);
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.write(&v);
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.write(v);
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        loop {
            let at = self.out.len();
            if !first {
                self.out.push(b',');
            }
            let item = Canon {
                out: &mut *self.out,
                top: None,
            };
            if seq.next_element_seed(item)?.is_none() {
                self.out.truncate(at);
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Each member's canonical bytes, to be written in key order.
        let mut members: Vec<(String, Vec<u8>)> = Vec::new();
        let mut top = self.top;
        while let Some(key) = map.next_key::<String>()? {
            let mut bytes = Vec::new();
            map.next_value_seed(Canon {
                out: &mut bytes,
                top: None,
            })?;
            if let Some(top) = top.as_deref_mut() {
                let text = || serde_json::from_slice::<String>(&bytes).ok();
                match key.as_str() {
                    "checksum" => {
                        if top.checksum.replace(text().unwrap_or_default()).is_some() {
                            return Err(de::Error::custom("duplicate key \"checksum\""));
                        }
                        continue;
                    }
                    "format" => top.format = text(),
                    _ => {}
                }
            }
            members.push((key, bytes));
        }
        if let Some(top) = top {
            // A checksum that is not a string is no checksum.
            top.checksum = top.checksum.take().filter(|c| !c.is_empty());
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        if members.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(de::Error::custom("an object has a key twice"));
        }
        self.out.push(b'{');
        for (i, (key, bytes)) in members.into_iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            let _ = serde_json::to_writer(&mut *self.out, &key);
            self.out.push(b':');
            self.out.extend_from_slice(&bytes);
        }
        self.out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write as _;

    use serde_json::Value;

    use super::*;

    /// The canonical form built from a JSON tree, as limen computed it before streaming: the
    /// oracle the streamed digest must equal.
    pub(crate) fn checksum_of(value: &Value) -> String {
        let mut canonical = Vec::new();
        write_canonical(value, &mut canonical, true);
        format!("sha256:{:x}", Sha256::digest(&canonical))
    }

    fn write_canonical(value: &Value, out: &mut Vec<u8>, top: bool) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map
                    .keys()
                    .filter(|k| !(top && k.as_str() == "checksum"))
                    .collect();
                keys.sort();
                out.push(b'{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut *out, key);
                    out.push(b':');
                    write_canonical(&map[key.as_str()], out, false);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_canonical(item, out, false);
                }
                out.push(b']');
            }
            scalar => {
                let _ = write!(out, "{scalar}");
            }
        }
    }

    fn json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\\\\\"\u{e9}\u{1f600}\n]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z_]{0,4}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// `value` as JSON with every object's keys in reverse order and spaces between tokens: a
    /// layout no serializer of limen's writes, whose canonical form is still the same.
    fn write_reversed(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Object(map) => {
                out.extend_from_slice(b"{ ");
                for (i, (key, item)) in map.iter().rev().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b" , ");
                    }
                    let _ = serde_json::to_writer(&mut *out, key);
                    out.extend_from_slice(b" : ");
                    write_reversed(item, out);
                }
                out.extend_from_slice(b" }");
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b",\n");
                    }
                    write_reversed(item, out);
                }
                out.push(b']');
            }
            scalar => {
                let _ = write!(out, "{scalar}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn the_streamed_digest_is_the_tree_digest(value in json(), layout in 0..3) {
            let bytes = match layout {
                0 => serde_json::to_vec(&value).unwrap(),
                1 => serde_json::to_vec_pretty(&value).unwrap(),
                _ => {
                    let mut out = Vec::new();
                    write_reversed(&value, &mut out);
                    out
                }
            };
            let d = digest(&bytes).unwrap();
            proptest::prop_assert_eq!(d.actual, checksum_of(&value));
            let stated = value.get("checksum").and_then(Value::as_str).filter(|c| !c.is_empty());
            proptest::prop_assert_eq!(d.stated.as_deref(), stated);
            proptest::prop_assert_eq!(d.format.as_deref(), value.get("format").and_then(Value::as_str));
        }
    }

    #[test]
    fn a_key_twice_or_trailing_bytes_are_refused() {
        assert!(digest(br#"{"a": 1, "a": 2}"#).is_err());
        assert!(digest(br#"{"checksum": "x", "checksum": "x"}"#).is_err());
        assert!(digest(br#"{"a": {"b": 1, "b": 1}}"#).is_err());
        assert!(digest(br#"{"a": 1} x"#).is_err());
        assert!(digest(b"").is_err());
        let d = digest(br#"{"checksum": 5, "format": 7}"#).unwrap();
        assert_eq!((d.stated, d.format), (None, None));
    }
}
