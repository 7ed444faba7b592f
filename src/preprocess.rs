//! Preprocessing between a table and a model: fitted on training rows (the imputation value of
//! every column of numbers, the categories of every column of text), and applied to any rows a
//! model scores. Rows of a [`Dataset`] hold their own codes (indices into the table's
//! `vocab`); a model holds its own ([`Column`]): [`Recoder`] turns one into the other, by
//! name, so a category the model never saw scores as unseen and nothing depends on the order in
//! which a file happened to list its values.

use ndarray::Array2;

use crate::data::Dataset;
use crate::model::encoding::{Encoder, UNSEEN};
use crate::model::{Column, Impute, Model, PredictError};

/// How preprocessing is fitted (`--impute`, `--min-category-count`, `--max-categories`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepParams {
    pub impute: Impute,
    /// Categories with fewer training rows are folded into one indicator (1: none are).
    pub min_category_count: u64,
    /// The most categories (after folding) a column may keep.
    pub max_categories: usize,
}

impl Default for PrepParams {
    fn default() -> Self {
        Self {
            impute: Impute::Median,
            min_category_count: 1,
            max_categories: crate::data::DEFAULT_MAX_CATEGORIES,
        }
    }
}

/// Why preprocessing could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    #[error("column {column:?} is missing in every training row; leave it out of --features")]
    AllMissing { column: String },
    #[error("column {column:?} has {count} categories with at least {min} training rows each, more than --max-categories {max}; it looks like an identifier: leave it out of --features, raise --min-category-count to fold rare ones, or raise --max-categories")]
    TooManyCategories {
        column: String,
        count: usize,
        min: u64,
        max: usize,
    },
}

/// Fits each feature's preprocessing on every row of `data` (the training rows).
pub fn fit(data: &Dataset, params: &PrepParams) -> Result<Vec<Column>, PrepError> {
    let n = data.rows().max(1) as f64;
    let mut columns = Vec::with_capacity(data.feature_names.len());
    for (j, name) in data.feature_names.iter().enumerate() {
        let values = data.x.column(j);
        let all_missing = || PrepError::AllMissing {
            column: name.clone(),
        };
        match data.vocab.get(j).and_then(Option::as_ref) {
            None => {
                let mut present: Vec<f64> =
                    values.iter().copied().filter(|v| !v.is_nan()).collect();
                if present.is_empty() {
                    return Err(all_missing());
                }
                let impute = match params.impute {
                    Impute::Zero => 0.0,
                    Impute::Mean => present.iter().sum::<f64>() / present.len() as f64,
                    Impute::Median => median(&mut present),
                };
                columns.push(Column::Numeric { impute });
            }
            Some(vocab) => {
                let mut counts = vec![0u64; vocab.len()];
                let mut missing = 0u64;
                for &v in values {
                    match code_of(v, vocab.len()) {
                        Some(c) => counts[c] += 1,
                        None => missing += 1,
                    }
                }
                let mut categories: Vec<(&String, u64)> = Vec::new();
                let mut other: Vec<(&String, u64)> = Vec::new();
                for (name, &count) in vocab.iter().zip(&counts) {
                    if count >= params.min_category_count {
                        categories.push((name, count));
                    } else if count > 0 {
                        other.push((name, count));
                    }
                }
                if categories.is_empty() && other.is_empty() {
                    return Err(all_missing());
                }
                if categories.len() > params.max_categories {
                    return Err(PrepError::TooManyCategories {
                        column: name.clone(),
                        count: categories.len(),
                        min: params.min_category_count,
                        max: params.max_categories,
                    });
                }
                // Sorted as scikit-learn's `OneHotEncoder` sorts them (by code point).
                categories.sort();
                other.sort();
                let mut shares: Vec<f64> = categories.iter().map(|(_, c)| *c as f64 / n).collect();
                if !other.is_empty() {
                    shares.push(other.iter().map(|(_, c)| *c).sum::<u64>() as f64 / n);
                }
                if missing > 0 {
                    shares.push(missing as f64 / n);
                }
                columns.push(Column::Categorical {
                    categories: categories.into_iter().map(|(s, _)| s.clone()).collect(),
                    other: other.into_iter().map(|(s, _)| s.clone()).collect(),
                    missing: missing > 0,
                    shares,
                });
            }
        }
    }
    Ok(columns)
}

/// The median as numpy computes it: the middle value, or the mean of the two middle ones.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// A table code as an index into a vocabulary of `len` names; `None` for a missing cell.
fn code_of(v: f64, len: usize) -> Option<usize> {
    (v >= 0.0 && v.fract() == 0.0 && (v as usize) < len).then_some(v as usize)
}

/// How one feature's table values become the model's raw values.
#[derive(Debug, Clone)]
enum Map {
    /// Numbers to numbers, or a model without preprocessing: as they are.
    Same,
    /// Table codes to model codes ([`UNSEEN`] for a name the model does not know).
    Codes(Vec<f64>),
    /// Numbers in the table, a category in the model: looked up by the name the number prints as.
    Named(usize),
}

/// Table rows to a model's raw rows: built once per (table, model), applied per row.
#[derive(Debug, Clone)]
pub struct Recoder {
    maps: Vec<Map>,
    encoder: Option<Encoder>,
}

impl Recoder {
    /// The recoding of `data`'s rows (in the model's feature order) for a model with
    /// `columns` (`None`: no preprocessing). `None` when rows pass as they are. Fails when the
    /// table holds text where the model takes numbers.
    pub fn new(data: &Dataset, columns: Option<&[Column]>) -> Result<Option<Self>, PredictError> {
        let encoder = columns.map(Encoder::new);
        let mut maps = Vec::with_capacity(data.feature_names.len());
        for (j, name) in data.feature_names.iter().enumerate() {
            let model_text = encoder.as_ref().is_some_and(|e| e.is_categorical(j));
            let map = match (data.vocab.get(j).and_then(Option::as_ref), &encoder) {
                (None, _) if !model_text => Map::Same,
                (None, _) => Map::Named(j),
                (Some(vocab), Some(e)) if model_text => {
                    Map::Codes(vocab.iter().map(|v| e.code(j, v)).collect())
                }
                (Some(_), _) => {
                    return Err(PredictError::Text {
                        feature: name.clone(),
                    })
                }
            };
            maps.push(map);
        }
        let same = maps.iter().all(|m| matches!(m, Map::Same));
        Ok((!same).then_some(Self { maps, encoder }))
    }

    /// `row` (table codes) as the model's raw row, into `out`.
    pub fn apply(&self, row: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend(self.maps.iter().zip(row).map(|(map, &v)| {
            match map {
                Map::Same => v,
                _ if v.is_nan() => v,
                Map::Codes(codes) => code_of(v, codes.len()).map_or(UNSEEN, |c| codes[c]),
                Map::Named(j) => self
                    .encoder
                    .as_ref()
                    .map_or(UNSEEN, |e| e.code(*j, &format!("{v}"))),
            }
        }));
    }
}

/// `data` recoded for `columns`: every categorical column holding the model's codes (its vocab
/// the model's names, categories then `other`). What a fit's statistics and evaluation read.
pub fn recode(data: &Dataset, columns: &[Column]) -> Result<Dataset, PredictError> {
    let mut out = data.clone();
    if let Some(recoder) = Recoder::new(data, Some(columns))? {
        let (mut raw, mut buf) = (Vec::new(), Vec::new());
        for mut row in out.x.rows_mut() {
            raw.clear();
            raw.extend(row.iter().copied());
            recoder.apply(&raw, &mut buf);
            for (v, r) in row.iter_mut().zip(&buf) {
                *v = *r;
            }
        }
    }
    out.vocab = columns
        .iter()
        .map(|c| match c {
            Column::Numeric { .. } => None,
            Column::Categorical {
                categories, other, ..
            } => Some(categories.iter().chain(other).cloned().collect()),
        })
        .collect();
    Ok(out)
}

/// The model inputs of rows (already in the model's codes) laid out for the fit: the imputed
/// numbers as a dense matrix, and per categorical feature which indicator each row sets. A
/// design matrix of a table with text columns is mostly zeros: this is it without them.
#[derive(Debug, Clone)]
pub struct Structured {
    /// `rows × numeric features`, imputed.
    pub dense: Array2<f64>,
    /// Row-major, one entry per categorical feature: the index of the indicator set among all
    /// of them (`u32::MAX`: none).
    pub set: Vec<u32>,
    pub groups: usize,
    /// Indicators in all.
    pub width: usize,
    /// Per model input (expanded order), its place in the fit's parameters: the dense columns
    /// first, then the indicators.
    pub layout: Vec<usize>,
    /// Per model input, whether it is a number.
    pub numeric: Vec<bool>,
}

/// `data` (in the model's codes, see [`recode`]) laid out for the fit.
pub fn structured(data: &Dataset, columns: &[Column]) -> Structured {
    let numbers: Vec<usize> = (0..columns.len())
        .filter(|&j| !columns[j].is_categorical())
        .collect();
    let texts: Vec<usize> = (0..columns.len())
        .filter(|&j| columns[j].is_categorical())
        .collect();
    let mut dense = Array2::zeros((data.rows(), numbers.len()));
    for (k, &j) in numbers.iter().enumerate() {
        let Column::Numeric { impute } = columns[j] else {
            continue;
        };
        for (out, &v) in dense.column_mut(k).iter_mut().zip(data.x.column(j)) {
            *out = if v.is_nan() { impute } else { v };
        }
    }
    // Each categorical feature's first indicator among all of them.
    let mut first = Vec::with_capacity(texts.len());
    let mut width = 0usize;
    for &j in &texts {
        first.push(width);
        width += columns[j].width();
    }
    let mut set = Vec::with_capacity(data.rows() * texts.len());
    for row in data.x.rows() {
        for (&j, &f) in texts.iter().zip(&first) {
            set.push(
                columns[j]
                    .indicator(row[j])
                    .map_or(u32::MAX, |k| (f + k) as u32),
            );
        }
    }
    let mut layout = Vec::new();
    let mut numeric = Vec::new();
    let (mut next_number, mut next_text) = (0, 0);
    for column in columns {
        if column.is_categorical() {
            for k in 0..column.width() {
                layout.push(numbers.len() + first[next_text] + k);
                numeric.push(false);
            }
            next_text += 1;
        } else {
            layout.push(next_number);
            numeric.push(true);
            next_number += 1;
        }
    }
    Structured {
        dense,
        set,
        groups: texts.len(),
        width,
        layout,
        numeric,
    }
}

/// The recoder of `data` for `model`, or `None` when rows pass as they are.
pub fn recoder_for(data: &Dataset, model: &Model) -> Result<Option<Recoder>, PredictError> {
    Recoder::new(data, model.preprocessing())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn table(text: &str) -> Dataset {
        let features = vec!["size".to_owned(), "island".to_owned()];
        Dataset::parse(Path::new("t.csv"), text.as_bytes(), &features, "y").unwrap()
    }

    #[test]
    fn fitting_imputes_medians_and_sorts_categories_with_missing_last() {
        let data = table("size,island,y\n1,Dream,a\n,Biscoe,b\n4,,a\n3,Dream,b\n10,Biscoe,a\n");
        assert_eq!(
            data.vocab[1].as_deref(),
            Some(&["Dream".to_owned(), "Biscoe".to_owned()][..])
        );
        let columns = fit(&data, &PrepParams::default()).unwrap();
        assert_eq!(columns[0], Column::Numeric { impute: 3.5 });
        assert_eq!(
            columns[1],
            Column::Categorical {
                categories: vec!["Biscoe".into(), "Dream".into()],
                other: vec![],
                missing: true,
                shares: vec![0.4, 0.4, 0.2],
            }
        );
        let recoded = recode(&data, &columns).unwrap();
        let mut x = Vec::new();
        for (i, want) in [
            vec![1.0, 0.0, 1.0, 0.0],
            vec![3.5, 1.0, 0.0, 0.0],
            vec![4.0, 0.0, 0.0, 1.0],
        ]
        .into_iter()
        .enumerate()
        {
            let raw: Vec<f64> = recoded.x.row(i).to_vec();
            crate::model::encoding::expand(&columns, &raw, &mut x);
            assert_eq!(x, want, "row {i}");
        }
        // The same inputs without their zeros: a number column, and the indicator each sets.
        let s = structured(&recoded, &columns);
        assert_eq!(s.dense.column(0).to_vec(), vec![1.0, 3.5, 4.0, 3.0, 10.0]);
        assert_eq!(s.set, vec![1, 0, 2, 1, 0]);
        assert_eq!(
            (s.groups, s.width, s.layout.clone()),
            (1, 3, vec![0, 1, 2, 3])
        );
    }

    #[test]
    fn rare_categories_fold_into_other_and_too_many_are_refused() {
        let data = table("size,island,y\n1,a,x\n2,a,y\n3,b,x\n4,c,y\n");
        let params = PrepParams {
            min_category_count: 2,
            ..PrepParams::default()
        };
        let columns = fit(&data, &params).unwrap();
        let Column::Categorical {
            categories, other, ..
        } = &columns[1]
        else {
            panic!("{columns:?}")
        };
        assert_eq!((categories.len(), other.len()), (1, 2));
        let params = PrepParams {
            max_categories: 2,
            ..PrepParams::default()
        };
        let err = fit(&data, &params).unwrap_err().to_string();
        assert!(err.contains("\"island\" has 3 categories"), "{err}");
        let empty = table("size,island,y\n,a,x\nNA,b,y\n");
        assert!(matches!(
            fit(&empty, &PrepParams::default()),
            Err(PrepError::AllMissing { .. })
        ));
    }

    #[test]
    fn another_tables_codes_are_matched_by_name_and_unseen_ones_score_as_unseen() {
        let train = table("size,island,y\n1,Dream,a\n2,Biscoe,b\n");
        let columns = fit(&train, &PrepParams::default()).unwrap();
        let other = table("size,island,y\n1,Mars,a\n2,Dream,b\n3,,a\n");
        let recoder = Recoder::new(&other, Some(&columns)).unwrap().unwrap();
        let mut out = Vec::new();
        recoder.apply(&[1.0, 0.0], &mut out);
        assert_eq!(out, vec![1.0, UNSEEN]);
        recoder.apply(&[2.0, 1.0], &mut out);
        assert_eq!(out, vec![2.0, 1.0], "Dream is the model's code 1");
        recoder.apply(&[3.0, f64::NAN], &mut out);
        assert!(out[1].is_nan());
        // Text where the model takes numbers.
        let swapped = table("size,island,y\nbig,1,a\n");
        assert!(matches!(
            Recoder::new(&swapped, Some(&columns)),
            Err(PredictError::Text { .. })
        ));
    }
}
