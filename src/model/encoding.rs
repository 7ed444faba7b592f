//! How a raw feature value becomes model inputs: `model.json`'s `preprocessing`, one entry per
//! feature, written by the trainer and applied by every route through [`Model`](super::Model).
//!
//! A *raw row* holds one `f64` per feature. A numeric feature's slot is its value, NaN when it
//! is missing (imputed here). A categorical feature's slot is a *code*: the index of its text
//! among the entry's `categories` followed by its `other` names, NaN when missing, and
//! [`UNSEEN`] (any value that is not a known code) for text the model never saw in training,
//! which scores like scikit-learn's `OneHotEncoder(handle_unknown="ignore")`: every indicator 0.
//! Decoding a request turns text into codes with the [`Encoder`] built at load, so scoring never
//! touches a string.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// The code of a category the model never saw in training (any negative code scores the same).
pub const UNSEEN: f64 = -1.0;

/// The most model inputs (indicators and numbers) a model's preprocessing may expand to.
pub const MAX_INPUTS: usize = 65_536;

/// The longest category name a model may hold, in bytes.
pub const MAX_CATEGORY_BYTES: usize = 1024;

/// How one feature's raw value becomes model inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Column {
    /// A number: one model input; a missing value becomes `impute` (raw units, before any
    /// scaling), scikit-learn's `SimpleImputer` statistic.
    Numeric { impute: f64 },
    /// Text: one indicator per entry of `categories` (sorted, as scikit-learn's
    /// `OneHotEncoder`), then one for every name in `other` together (categories too rare in
    /// training, `--min-category-count`) when there are any, then one for a missing value when
    /// the training rows had one.
    Categorical {
        categories: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        other: Vec<String>,
        /// Whether a missing value has its own indicator (else it scores as unseen).
        missing: bool,
        /// The share of training rows of each indicator, in indicator order: the drift
        /// reference and the baseline explanations start from.
        shares: Vec<f64>,
    },
}

impl Column {
    /// How many model inputs this feature becomes.
    pub fn width(&self) -> usize {
        match self {
            Self::Numeric { .. } => 1,
            Self::Categorical {
                categories,
                other,
                missing,
                ..
            } => categories.len() + usize::from(!other.is_empty()) + usize::from(*missing),
        }
    }

    pub fn is_categorical(&self) -> bool {
        matches!(self, Self::Categorical { .. })
    }

    /// The model input (offset within this feature's inputs) that `value` sets to 1 for a
    /// categorical feature; `None` when no indicator is set (unseen, or missing without its own
    /// indicator).
    pub fn indicator(&self, value: f64) -> Option<usize> {
        let Self::Categorical {
            categories,
            other,
            missing,
            ..
        } = self
        else {
            return None;
        };
        let (k, o) = (categories.len(), other.len());
        if value.is_nan() {
            return missing.then_some(k + usize::from(o > 0));
        }
        if value < 0.0 || value.fract() != 0.0 {
            return None;
        }
        let code = value as usize;
        if code < k {
            Some(code)
        } else if code < k + o {
            Some(k)
        } else {
            None
        }
    }

    /// The name of code `value` (`None` for missing or unseen): what the inference log writes.
    pub fn name(&self, value: f64) -> Option<&str> {
        let Self::Categorical {
            categories, other, ..
        } = self
        else {
            return None;
        };
        if value.is_nan() || value < 0.0 || value.fract() != 0.0 {
            return None;
        }
        let code = value as usize;
        match code.checked_sub(categories.len()) {
            None => categories.get(code),
            Some(o) => other.get(o),
        }
        .map(String::as_str)
    }
}

/// The text a category is known by: trimmed, and a number written the way Rust prints the value
/// (`1.50` and `1.5` are one category, `007` is `7`), so a column read as numbers and the same
/// column read as text name their categories alike.
pub fn category_key(text: &str) -> Cow<'_, str> {
    let text = text.trim();
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Cow::Owned(format!("{v}")),
        _ => Cow::Borrowed(text),
    }
}

/// The lookup a request's text goes through: per feature, its category names to codes.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    /// Per feature: `None` for a number, else its names (categories then `other`) to codes.
    lookups: Vec<Option<HashMap<String, u32>>>,
}

impl Encoder {
    pub fn new(columns: &[Column]) -> Self {
        let lookups = columns
            .iter()
            .map(|c| match c {
                Column::Numeric { .. } => None,
                Column::Categorical {
                    categories, other, ..
                } => Some(
                    categories
                        .iter()
                        .chain(other)
                        .enumerate()
                        .map(|(i, name)| (name.clone(), i as u32))
                        .collect(),
                ),
            })
            .collect();
        Self { lookups }
    }

    /// Whether feature `i` takes text.
    pub fn is_categorical(&self, i: usize) -> bool {
        matches!(self.lookups.get(i), Some(Some(_)))
    }

    /// The code of `text` for feature `i`: its category, or [`UNSEEN`].
    pub fn code(&self, i: usize, text: &str) -> f64 {
        let Some(Some(lookup)) = self.lookups.get(i) else {
            return UNSEEN;
        };
        match lookup.get(text) {
            Some(&code) => f64::from(code),
            None => match category_key(text) {
                Cow::Owned(key) => lookup.get(&key).map_or(UNSEEN, |&c| f64::from(c)),
                Cow::Borrowed(_) => UNSEEN,
            },
        }
    }
}

/// Checks `columns` against the features and the weights' width: one entry per feature, finite
/// imputation values, distinct and bounded category names, shares of the right length in
/// [0, 1], and an expanded width equal to `inputs`.
pub fn check(columns: &[Column], features: usize, inputs: usize) -> Result<(), ModelError> {
    let schema = |msg: String| Err(ModelError::Schema(msg));
    if columns.len() != features {
        return schema(format!(
            "preprocessing has {} entries for {features} features",
            columns.len()
        ));
    }
    let mut width = 0usize;
    for (i, column) in columns.iter().enumerate() {
        let at = |what: &str| {
            ModelError::Schema(format!("preprocessing of feature number {}: {what}", i + 1))
        };
        match column {
            Column::Numeric { impute } => {
                if !impute.is_finite() {
                    return Err(at("its imputation value must be a finite number"));
                }
            }
            Column::Categorical {
                categories,
                other,
                shares,
                ..
            } => {
                if categories.is_empty() && other.is_empty() {
                    return Err(at("a categorical feature needs at least one category"));
                }
                let mut seen = std::collections::HashSet::new();
                for name in categories.iter().chain(other) {
                    if name.len() > MAX_CATEGORY_BYTES {
                        return Err(at(&format!(
                            "a category name is longer than {MAX_CATEGORY_BYTES} bytes"
                        )));
                    }
                    if !seen.insert(name.as_str()) {
                        return Err(at("a category name repeats an earlier one"));
                    }
                }
                let fit = shares.len() == column.width()
                    && shares
                        .iter()
                        .all(|s| s.is_finite() && (0.0..=1.0).contains(s))
                    && (shares.iter().sum::<f64>() - 1.0).abs() <= 1e-6;
                if !fit {
                    return Err(at(&format!(
                        "it needs {} indicator shares in [0, 1] summing to 1, has {}",
                        column.width(),
                        shares.len()
                    )));
                }
            }
        }
        width = width.saturating_add(column.width());
        if width > MAX_INPUTS {
            return schema(format!(
                "preprocessing expands to more than {MAX_INPUTS} model inputs"
            ));
        }
    }
    if width != inputs {
        return schema(format!(
            "preprocessing expands the features to {width} model inputs, but the weights take {inputs}"
        ));
    }
    Ok(())
}

/// Expands raw `row` into model inputs (`out`, cleared first): imputed numbers and indicators.
/// The trainer's design matrix is built this way, row by row.
pub fn expand(columns: &[Column], row: &[f64], out: &mut Vec<f64>) {
    out.clear();
    for (column, &x) in columns.iter().zip(row) {
        match column {
            Column::Numeric { impute } => out.push(if x.is_nan() { *impute } else { x }),
            Column::Categorical { .. } => {
                let start = out.len();
                out.resize(start + column.width(), 0.0);
                if let Some(j) = column.indicator(x) {
                    out[start + j] = 1.0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn island() -> Column {
        Column::Categorical {
            categories: vec!["Biscoe".into(), "Dream".into()],
            other: vec!["Torgersen".into()],
            missing: true,
            shares: vec![0.5, 0.3, 0.1, 0.1],
        }
    }

    #[test]
    fn codes_pick_one_indicator_and_unseen_text_picks_none() {
        let c = island();
        assert_eq!(c.width(), 4);
        assert_eq!(c.indicator(0.0), Some(0));
        assert_eq!(c.indicator(1.0), Some(1));
        assert_eq!(c.indicator(2.0), Some(2), "an `other` name");
        assert_eq!(c.indicator(f64::NAN), Some(3), "missing has its own");
        for unseen in [UNSEEN, 3.0, 0.5, 1e300, f64::INFINITY] {
            assert_eq!(c.indicator(unseen), None, "{unseen}");
        }
        let encoder = Encoder::new(&[Column::Numeric { impute: 1.0 }, c.clone()]);
        assert_eq!(encoder.code(1, "Dream"), 1.0);
        assert_eq!(encoder.code(1, "Torgersen"), 2.0);
        assert_eq!(encoder.code(1, "Mars"), UNSEEN);
        assert_eq!(c.name(2.0), Some("Torgersen"));
        assert_eq!(c.name(UNSEEN), None);
        let mut row = Vec::new();
        expand(
            &[Column::Numeric { impute: 7.0 }, c],
            &[f64::NAN, 1.0],
            &mut row,
        );
        assert_eq!(row, vec![7.0, 0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn numbers_as_categories_are_known_by_their_value() {
        let c = Column::Categorical {
            categories: vec!["1.5".into(), "7".into()],
            other: vec![],
            missing: false,
            shares: vec![0.5, 0.5],
        };
        let encoder = Encoder::new(&[c]);
        assert_eq!(encoder.code(0, "1.50"), 0.0);
        assert_eq!(encoder.code(0, "007"), 1.0);
        assert_eq!(category_key(" a b "), "a b");
    }

    #[test]
    fn preprocessing_that_does_not_fit_the_weights_is_refused() {
        let columns = [Column::Numeric { impute: 0.0 }, island()];
        assert!(check(&columns, 2, 5).is_ok());
        assert!(check(&columns, 2, 4).is_err(), "width");
        assert!(check(&columns, 3, 5).is_err(), "entries");
        let mut bad = island();
        if let Column::Categorical { shares, .. } = &mut bad {
            shares.pop();
        }
        assert!(check(&[bad], 1, 4).is_err(), "shares");
        let mut forged = island();
        if let Column::Categorical { shares, .. } = &mut forged {
            shares[0] = 0.9;
        }
        assert!(
            check(&[forged], 1, 4).is_err(),
            "shares that do not sum to 1"
        );
        let repeated = Column::Categorical {
            categories: vec!["a".into()],
            other: vec!["a".into()],
            missing: false,
            shares: vec![1.0, 0.0],
        };
        assert!(check(&[repeated], 1, 2).is_err());
        assert!(check(&[Column::Numeric { impute: f64::NAN }], 1, 1).is_err());
    }
}
