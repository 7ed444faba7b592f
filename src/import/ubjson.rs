//! UBJSON (Universal Binary JSON, the format of XGBoost's `save_model("model.ubj")`) turned into
//! JSON text, which the XGBoost reader then reads like a `.json` model. A small reader of our own:
//! the UBJSON crates on crates.io (`serde_ub_json`, `serde_ubj`, 0.x) cannot deserialize numbers
//! or containers through `deserialize_any` and allocate what a count claims before reading it.
//!
//! The file is untrusted: nesting is capped ([`MAX_DEPTH`]), every length and count is checked
//! against the bytes that remain before anything is read or reserved, and the JSON written is
//! capped ([`MAX_OUTPUT`]) so that a typed container of zero-byte elements (`[$Z#L…`) cannot
//! inflate a small file. Every number UBJSON holds is written exactly: integers as integers,
//! float32 and float64 in their shortest round-trip form (so XGBoost's float32 thresholds come
//! back bit for bit).

use std::fmt::Write as _;

/// Deepest nesting of arrays and objects read (an XGBoost model nests 6 deep).
pub const MAX_DEPTH: usize = 64;
/// The most JSON written (a `.ubj` model's JSON is about 2 × its size).
pub const MAX_OUTPUT: usize = 1 << 30;

/// Why a file is not UBJSON limen can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not UBJSON at byte {at}: {why}")]
pub struct UbjsonError {
    pub at: usize,
    pub why: String,
}

/// `bytes` (one UBJSON value) as JSON text.
pub fn to_json(bytes: &[u8]) -> Result<Vec<u8>, UbjsonError> {
    let cap = MAX_OUTPUT.min(bytes.len().saturating_mul(8).saturating_add(1 << 20));
    let mut reader = Reader {
        bytes,
        at: 0,
        out: Vec::with_capacity(bytes.len().saturating_mul(2).min(cap)),
        cap,
    };
    let marker = reader.byte()?;
    reader.value(marker, 0)?;
    if reader.at != bytes.len() {
        return Err(reader.error("bytes after the value"));
    }
    Ok(reader.out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    out: Vec<u8>,
    cap: usize,
}

impl Reader<'_> {
    fn error(&self, why: &str) -> UbjsonError {
        UbjsonError {
            at: self.at,
            why: why.to_owned(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], UbjsonError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.error("it ends early"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, UbjsonError> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], UbjsonError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn emit(&mut self, s: &[u8]) -> Result<(), UbjsonError> {
        if self.out.len() + s.len() > self.cap {
            return Err(self.error("its JSON would pass the size limit"));
        }
        self.out.extend_from_slice(s);
        Ok(())
    }

    /// An integer length or count (any integer marker), which must be ≥ 0.
    fn length(&mut self) -> Result<usize, UbjsonError> {
        let marker = self.byte()?;
        let n: i64 = match marker {
            b'i' => i64::from(i8::from_be_bytes(self.array()?)),
            b'U' => i64::from(self.byte()?),
            b'I' => i64::from(i16::from_be_bytes(self.array()?)),
            b'l' => i64::from(i32::from_be_bytes(self.array()?)),
            b'L' => i64::from_be_bytes(self.array()?),
            _ => return Err(self.error("a length must be an integer")),
        };
        usize::try_from(n).map_err(|_| self.error("a negative length"))
    }

    /// A string's bytes (after its `S` or as an object key), as a JSON string.
    fn string(&mut self) -> Result<(), UbjsonError> {
        let n = self.length()?;
        let at = self.at;
        let raw = self.take(n)?;
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(UbjsonError {
                at,
                why: "a string is not UTF-8".into(),
            });
        };
        let quoted = serde_json::to_vec(text).map_err(|e| self.error(&e.to_string()))?;
        self.emit(&quoted)
    }

    fn number(&mut self, text: &str) -> Result<(), UbjsonError> {
        self.emit(text.as_bytes())
    }

    fn float(&mut self, x: f64, shortest: String) -> Result<(), UbjsonError> {
        if !x.is_finite() {
            return Err(self.error("a number is not finite (JSON has no NaN or infinity)"));
        }
        self.number(&shortest)
    }

    /// The value whose type marker is `marker`.
    fn value(&mut self, marker: u8, depth: usize) -> Result<(), UbjsonError> {
        match marker {
            b'Z' => self.emit(b"null"),
            b'T' => self.emit(b"true"),
            b'F' => self.emit(b"false"),
            b'i' => {
                let v = i8::from_be_bytes(self.array()?);
                self.number(&v.to_string())
            }
            b'U' => {
                let v = self.byte()?;
                self.number(&v.to_string())
            }
            b'I' => {
                let v = i16::from_be_bytes(self.array()?);
                self.number(&v.to_string())
            }
            b'l' => {
                let v = i32::from_be_bytes(self.array()?);
                self.number(&v.to_string())
            }
            b'L' => {
                let v = i64::from_be_bytes(self.array()?);
                self.number(&v.to_string())
            }
            b'd' => {
                let v = f32::from_be_bytes(self.array()?);
                self.float(f64::from(v), format!("{v:e}"))
            }
            b'D' => {
                let v = f64::from_be_bytes(self.array()?);
                self.float(v, format!("{v:e}"))
            }
            b'H' => {
                let n = self.length()?;
                let raw = self.take(n)?;
                let text = std::str::from_utf8(raw)
                    .ok()
                    .filter(|t| serde_json::from_str::<serde_json::Number>(t).is_ok())
                    .map(str::to_owned);
                match text {
                    Some(text) => self.number(&text),
                    None => Err(self.error("a high-precision number is not a number")),
                }
            }
            b'C' => {
                let c = self.byte()?;
                if !c.is_ascii() {
                    return Err(self.error("a char must be ASCII"));
                }
                let mut s = String::new();
                let _ = write!(s, "{}", serde_json::Value::from(char::from(c).to_string()));
                self.emit(s.as_bytes())
            }
            b'S' => self.string(),
            b'[' | b'{' => self.container(marker == b'{', depth + 1),
            _ => Err(self.error(&format!("unknown type marker 0x{marker:02x}"))),
        }
    }

    /// An array or an object after its opening marker, with the optional `$type` and `#count`.
    fn container(&mut self, object: bool, depth: usize) -> Result<(), UbjsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error(&format!("nested deeper than {MAX_DEPTH}")));
        }
        let mut typed = None;
        if self.peek() == Some(b'$') {
            self.at += 1;
            let t = self.byte()?;
            if matches!(t, b'[' | b'{' | b'$' | b'#') {
                return Err(self.error("containers of containers cannot be typed"));
            }
            typed = Some(t);
        }
        let count = if self.peek() == Some(b'#') {
            self.at += 1;
            Some(self.length()?)
        } else if typed.is_some() {
            return Err(self.error("a typed container needs a count"));
        } else {
            None
        };
        if let Some(n) = count {
            // Each element takes at least one byte unless it is typed with no payload.
            let least = match typed {
                Some(b'Z' | b'T' | b'F' | b'N') => 0,
                _ => 1,
            };
            if n.saturating_mul(least) > self.bytes.len() - self.at {
                return Err(self.error("a count claims more elements than the file holds"));
            }
        }
        self.emit(if object { b"{" } else { b"[" })?;
        let mut i = 0usize;
        loop {
            match count {
                Some(n) if i == n => break,
                None => {
                    // Skip no-ops; stop at the closing marker.
                    while self.peek() == Some(b'N') {
                        self.at += 1;
                    }
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        self.at += 1;
                        break;
                    }
                }
                _ => {}
            }
            if i > 0 {
                self.emit(b",")?;
            }
            if object {
                self.string()?;
                self.emit(b":")?;
            }
            let marker = match typed {
                Some(t) => t,
                None => self.byte()?,
            };
            self.value(marker, depth)?;
            i += 1;
        }
        self.emit(if object { b"}" } else { b"]" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(&to_json(bytes).unwrap()).unwrap()
    }

    #[test]
    fn every_kind_of_value_and_container_reads_as_its_json() {
        // {"a": [1, -2, 300, 1.5f32, 2.25, "x", true, null], "b": typed float32 [0.1, 2]}
        let mut b = vec![b'{'];
        b.extend([b'U', 1, b'a', b'[']);
        b.extend([b'U', 1, b'i', 0xFE, b'I', 0x01, 0x2C]);
        b.push(b'd');
        b.extend(1.5f32.to_be_bytes());
        b.push(b'D');
        b.extend(2.25f64.to_be_bytes());
        b.extend([b'S', b'U', 1, b'x', b'T', b'Z', b']']);
        b.extend([b'U', 1, b'b', b'[', b'$', b'd', b'#', b'U', 2]);
        b.extend(0.1f32.to_be_bytes());
        b.extend(2.0f32.to_be_bytes());
        b.push(b'}');
        let v = json(&b);
        assert_eq!(
            v["a"],
            serde_json::json!([1, -2, 300, 1.5, 2.25, "x", true, null])
        );
        // The float32 comes back bit for bit.
        let back = v["b"][0].as_f64().unwrap() as f32;
        assert_eq!(back.to_bits(), 0.1f32.to_bits());
        assert_eq!(v["b"][1], 2.0);
    }

    #[test]
    fn hostile_files_are_refused_without_allocating_what_they_claim() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("ends early", vec![b'[', b'U', 1]),
            (
                "huge count",
                vec![
                    b'[', b'#', b'L', 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                ],
            ),
            ("negative length", vec![b'S', b'i', 0xFF]),
            ("zero-size bomb", {
                let mut b = vec![b'[', b'$', b'Z', b'#', b'L'];
                b.extend(1_000_000_000_000i64.to_be_bytes());
                b
            }),
            ("deep", vec![b'['; MAX_DEPTH + 2]),
            ("unknown marker", vec![b'?']),
            ("trailing", vec![b'Z', b'Z']),
            ("nan", {
                let mut b = vec![b'D'];
                b.extend(f64::NAN.to_be_bytes());
                b
            }),
        ];
        for (what, bytes) in cases {
            assert!(to_json(&bytes).is_err(), "{what}");
        }
    }
}
