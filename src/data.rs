//! Training data: a CSV file becomes a feature matrix, labels and per-feature statistics.
//!
//! A table may also be a Parquet file ([`crate::columnar`] renders it as CSV rows), and any
//! table, labels file or inference log may be in S3 (`s3://…`, [`crate::remote`] stages it
//! locally): the readers below see one local file, and name the location as the user wrote it.
//!
//! Owns every schema error a data file can raise, each naming the file, line and column, so a
//! pipeline log tells the data team exactly which cell to fix. Knows nothing of models or stores.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use crate::model::FeatureStats;

use ndarray::Array2;
use sha2::{Digest, Sha256};

/// The default training table, and the copy of it built into the binary (scikit-learn's Iris,
/// 150 rows), used when that path does not exist.
pub const IRIS_PATH: &str = "data/iris.csv";
pub const IRIS_CSV: &[u8] = include_bytes!("../data/iris.csv");

/// What can be wrong with a training or evaluation data file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read data file {path} (check --data / LIMEN_DATA)")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data file {path} is empty: it needs a header line and at least one row")]
    Empty { path: PathBuf },
    #[error("data file {path} has no column {column:?}; its columns are: {available}")]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error("data file {path} names column {column:?} twice in its header")]
    DuplicateColumn { path: PathBuf, column: String },
    #[error("data file {path}, line {line}, column {column:?}: {value:?} is not a finite number")]
    NotFinite {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error("data file {path}, line {line}, column {column:?}: the label is missing (empty, or a --missing-values cell such as NA); every row needs one")]
    EmptyLabel {
        path: PathBuf,
        line: u64,
        column: String,
    },
    #[error("data file {path}, line {line}, column {column:?} (--split-by): the cell is empty; every row needs a place in the order")]
    EmptyOrder {
        path: PathBuf,
        line: u64,
        column: String,
    },
    #[error("cannot read data file {path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error("data file {path} is not valid CSV")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("no feature columns were asked for; pass at least one name to --features")]
    NoFeatures,
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error(transparent)]
    Columnar(#[from] crate::columnar::ColumnarError),
    #[error("{location} names {count} objects; a labels file is one CSV object: name its key")]
    NotOneObject { location: String, count: usize },
    #[error("the parts of table {location} do not share one header: {first} has {expected:?}, {other} has {found:?}")]
    PartsDiffer {
        location: String,
        first: String,
        expected: String,
        other: String,
        found: String,
    },
    #[error("data file {path}, column {column:?}: more than {max} distinct values (the {}th at line {line}); a column of categories that many looks like an identifier: leave it out of --features, or raise --max-categories", max + 1)]
    TooManyCategories {
        path: PathBuf,
        column: String,
        max: usize,
        line: u64,
    },
    #[error("cannot read training rows from the inference log {place:?}: {why}")]
    LogSource { place: String, why: String },
    #[error("inference log {path}, line {line}: {why}")]
    LogLine {
        path: PathBuf,
        line: u64,
        why: String,
    },
    #[error("data file {path}, line {line}, column {column:?}: {value:e} is too large to train on (the column's mean or spread overflows); rescale the column")]
    Overflow {
        path: PathBuf,
        line: u64,
        column: String,
        value: f64,
    },
}

/// A parsed data file: the chosen feature columns in the order asked for, and the label column.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, hex encoded: provenance for the model trained on it.
    pub sha256: String,
    pub feature_names: Vec<String>,
    pub label_column: String,
    /// One row per data row, one column per entry of `feature_names`: a number (NaN when the
    /// cell is missing), or for a column of text the index of its value in `vocab` (NaN when
    /// missing).
    pub x: Array2<f64>,
    /// Per feature: `None` for a column of numbers, else its distinct values (each
    /// [`category_key`]) in order of first appearance, which its codes index.
    pub vocab: Vec<Option<Vec<String>>>,
    /// The distinct labels of the file, sorted.
    pub label_names: Vec<String>,
    /// Per row, its label as an index into `label_names`: 8 million rows cost 32 MB, not a
    /// `String` each.
    pub labels: Vec<u32>,
}

/// Rows as they are parsed: feature values row-major, and labels interned.
#[derive(Default)]
struct Rows {
    values: Vec<f64>,
    labels: Vec<u32>,
    /// Label → index in order of first appearance; sorted once at the end.
    distinct: HashMap<String, u32>,
    /// Per feature: `None` while it is a column of numbers, else its categories so far.
    vocab: Vec<Option<Vocab>>,
}

/// A column's distinct values in order of first appearance.
#[derive(Default)]
struct Vocab {
    codes: HashMap<String, u32>,
    names: Vec<String>,
}

/// One cell of a feature, as read.
#[derive(Clone, Copy)]
enum Cell<'a> {
    Missing,
    Number(f64),
    Text(&'a str),
}

/// How a table's cells are read: which cells are missing, which columns are text whatever they
/// hold, and how many distinct values a column of text may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Cells (trimmed) that are missing values, in features and labels alike.
    pub missing: Vec<String>,
    /// Columns read as categories even when every cell is a number (`--categorical`).
    pub categorical: Vec<String>,
    /// The most distinct values a column of text may have (`--max-categories`).
    pub max_categories: usize,
}

/// The cells read as missing unless told otherwise (`--missing-values`): pandas' most common
/// defaults.
pub const DEFAULT_MISSING: [&str; 8] = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"];

/// The most distinct values of a column of text unless told otherwise (`--max-categories`).
pub const DEFAULT_MAX_CATEGORIES: usize = 1_000;

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            missing: DEFAULT_MISSING.iter().map(|s| (*s).to_owned()).collect(),
            categorical: Vec::new(),
            max_categories: DEFAULT_MAX_CATEGORIES,
        }
    }
}

impl ReadOptions {
    fn is_missing(&self, cell: &str) -> bool {
        self.missing.iter().any(|m| m == cell)
    }
}

pub use crate::model::encoding::category_key;

impl Rows {
    fn with_width(width: usize, forced: impl Iterator<Item = bool>) -> Self {
        let mut vocab: Vec<Option<Vocab>> = forced.map(|f| f.then(Vocab::default)).collect();
        vocab.resize_with(width, || None);
        Self {
            vocab,
            ..Self::default()
        }
    }

    /// Appends `cell` of feature `column` to the row being read. A column of numbers that meets
    /// a cell of text becomes a column of categories: the numbers read so far become the
    /// categories they print as ([`category_key`]). `Err` carries the column's category count
    /// when it passes `max`.
    fn push_cell(&mut self, column: usize, cell: Cell<'_>, max: usize) -> Result<(), ()> {
        let width = self.vocab.len();
        let value = match (cell, &mut self.vocab[column]) {
            (Cell::Missing, _) => f64::NAN,
            (Cell::Number(v), None) => v,
            (Cell::Number(v), Some(vocab)) => vocab.code(&format!("{v}"), max)?,
            (Cell::Text(text), Some(vocab)) => vocab.code(&category_key(text), max)?,
            (Cell::Text(text), slot @ None) => {
                let mut vocab = Vocab::default();
                let done = self.labels.len();
                for r in 0..done {
                    let v = &mut self.values[r * width + column];
                    if !v.is_nan() {
                        *v = vocab.code(&format!("{v}"), max)?;
                    }
                }
                let code = vocab.code(&category_key(text), max)?;
                *slot = Some(vocab);
                code
            }
        };
        self.values.push(value);
        Ok(())
    }

    fn push_label(&mut self, label: &str) {
        let index = match self.distinct.get(label) {
            Some(&index) => index,
            None => {
                let index = u32::try_from(self.distinct.len()).unwrap_or(u32::MAX);
                self.distinct.insert(label.to_owned(), index);
                index
            }
        };
        self.labels.push(index);
    }

    /// The dataset: labels renumbered in sorted order, the matrix built without a copy, and the
    /// columns' statistics checked.
    fn finish(
        mut self,
        path: &Path,
        sha256: String,
        features: &[String],
        label_column: &str,
    ) -> Result<Dataset, DataError> {
        let mut label_names: Vec<(String, u32)> = self.distinct.into_iter().collect();
        label_names.sort();
        let mut sorted_index = vec![0u32; label_names.len()];
        for (position, (_, first_seen)) in label_names.iter().enumerate() {
            sorted_index[*first_seen as usize] = position as u32;
        }
        for label in &mut self.labels {
            *label = sorted_index[*label as usize];
        }
        let label_names: Vec<String> = label_names.into_iter().map(|(name, _)| name).collect();
        if self.labels.is_empty() {
            return Err(DataError::Empty {
                path: path.to_owned(),
            });
        }
        // No `shrink_to_fit`: it would copy the matrix (twice its size at once), while the
        // unused capacity past the end is never touched, so it costs no memory.
        let x = Array2::from_shape_vec((self.labels.len(), features.len()), self.values).map_err(
            |_| DataError::Empty {
                path: path.to_owned(),
            },
        )?;
        let data = Dataset {
            path: path.to_owned(),
            sha256,
            feature_names: features.to_vec(),
            label_column: label_column.to_owned(),
            x,
            vocab: self.vocab.into_iter().map(|v| v.map(|v| v.names)).collect(),
            label_names,
            labels: self.labels,
        };
        data.check_stats()?;
        Ok(data)
    }
}

impl Vocab {
    /// The code of `key`, added when new; `Err` when that would pass `max` categories.
    fn code(&mut self, key: &str, max: usize) -> Result<f64, ()> {
        if let Some(&code) = self.codes.get(key) {
            return Ok(f64::from(code));
        }
        if self.names.len() >= max {
            return Err(());
        }
        let code = self.names.len() as u32;
        self.codes.insert(key.to_owned(), code);
        self.names.push(key.to_owned());
        Ok(f64::from(code))
    }
}

/// Reads through to `inner`, hashing every byte on the way: the file's SHA-256 without holding
/// the file in memory.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl Dataset {
    /// Reads `path` and keeps `features` (in that order) and `label_column`.
    ///
    /// Fails with a [`DataError`] naming the line and column of the first bad cell; extra columns
    /// are ignored.
    ///
    /// The file is streamed: cells go straight into the feature matrix and the file is hashed as
    /// it is read, so memory is the matrix (about twice it while the matrix grows) plus one
    /// pointer per label, never the file itself.
    ///
    /// The default path, `data/iris.csv`, falls back to the copy built into limen when there is
    /// no such file here (a downloaded binary, a container without the repository): the same
    /// bytes, so the same SHA-256 and provenance.
    pub fn load(path: &Path, features: &[String], label_column: &str) -> Result<Self, DataError> {
        Ok(Self::load_ordered(path, features, label_column, None, &ReadOptions::default())?.0)
    }

    /// [`Dataset::load`], also keeping every row's cell of `order_column` (the column a
    /// time-ordered hold-out sorts by), when given.
    pub fn load_ordered(
        path: &Path,
        features: &[String],
        label_column: &str,
        order_column: Option<&str>,
        options: &ReadOptions,
    ) -> Result<(Self, Vec<String>), DataError> {
        let columns = Wanted {
            features,
            label_column,
            order_column,
            options,
        };
        if path == Path::new(IRIS_PATH) && !path.exists() {
            tracing::info!(
                path = IRIS_PATH,
                "no such file here; using the Iris table built into limen"
            );
            return Self::read(path, IRIS_CSV, &columns);
        }
        let table = open_table(path)?;
        Self::read(path, table, &columns)
    }

    /// Parses CSV `bytes` as if read from `path` (used in errors and provenance).
    pub fn parse(
        path: &Path,
        bytes: &[u8],
        features: &[String],
        label_column: &str,
    ) -> Result<Self, DataError> {
        let columns = Wanted {
            features,
            label_column,
            order_column: None,
            options: &ReadOptions::default(),
        };
        Ok(Self::read(path, bytes, &columns)?.0)
    }

    /// Parses the CSV that `source` yields as if read from `path`, with each row's cell of
    /// the order column when one is named.
    fn read(
        path: &Path,
        source: impl Read,
        columns: &Wanted<'_>,
    ) -> Result<(Self, Vec<String>), DataError> {
        let Wanted {
            features,
            label_column,
            order_column,
            options,
        } = *columns;
        if features.is_empty() {
            return Err(DataError::NoFeatures);
        }
        let csv_err = |source| csv_error(path, source);
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .buffer_capacity(256 * 1024)
            .from_reader(Hashing {
                inner: source,
                hasher: Sha256::new(),
            });
        let header: Vec<String> = reader
            .headers()
            .map_err(csv_err)?
            .iter()
            .map(str::to_owned)
            .collect();
        if header.iter().all(String::is_empty) {
            return Err(DataError::Empty {
                path: path.to_owned(),
            });
        }
        let column_index = |name: &str| -> Result<usize, DataError> {
            let mut hits = header.iter().enumerate().filter(|(_, h)| *h == name);
            let first = hits.next().map(|(i, _)| i);
            if hits.next().is_some() {
                return Err(DataError::DuplicateColumn {
                    path: path.to_owned(),
                    column: name.to_owned(),
                });
            }
            first.ok_or_else(|| DataError::MissingColumn {
                path: path.to_owned(),
                column: name.to_owned(),
                available: header.join(", "),
            })
        };
        let feature_idx = features
            .iter()
            .map(|f| column_index(f))
            .collect::<Result<Vec<_>, _>>()?;
        let label_idx = column_index(label_column)?;
        let order_idx = order_column.map(column_index).transpose()?;
        let mut order = Vec::new();

        let mut rows = Rows::with_width(
            features.len(),
            features.iter().map(|f| options.categorical.contains(f)),
        );
        // One record buffer, reused: no allocation per row.
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record).map_err(csv_err)? {
            let line = record.position().map_or(0, |p| p.line());
            for (j, (&idx, name)) in feature_idx.iter().zip(features).enumerate() {
                let cell = record.get(idx).unwrap_or_default();
                let cell = if options.is_missing(cell) {
                    Cell::Missing
                } else if rows.vocab[j].is_some() {
                    Cell::Text(cell)
                } else {
                    match parse_number(path, line, name, cell)? {
                        Some(v) => Cell::Number(v),
                        None => Cell::Text(cell),
                    }
                };
                rows.push_cell(j, cell, options.max_categories)
                    .map_err(|()| DataError::TooManyCategories {
                        path: path.to_owned(),
                        column: name.clone(),
                        max: options.max_categories,
                        line,
                    })?;
            }
            let label = record.get(label_idx).unwrap_or_default();
            if options.is_missing(label) {
                return Err(DataError::EmptyLabel {
                    path: path.to_owned(),
                    line,
                    column: label_column.to_owned(),
                });
            }
            rows.push_label(label);
            if let (Some(idx), Some(name)) = (order_idx, order_column) {
                let cell = record.get(idx).unwrap_or_default();
                if cell.is_empty() {
                    return Err(DataError::EmptyOrder {
                        path: path.to_owned(),
                        line,
                        column: name.to_owned(),
                    });
                }
                order.push(cell.to_owned());
            }
        }
        let sha256 = format!("{:x}", reader.into_inner().hasher.finalize());
        Ok((rows.finish(path, sha256, features, label_column)?, order))
    }

    /// Refuses a column whose statistics overflow (a finite but huge value such as `1e308`
    /// makes the mean or the spread infinite, which no model can record), naming the line and
    /// column of its largest value.
    fn check_stats(&self) -> Result<(), DataError> {
        for (j, stats) in self.feature_stats().iter().enumerate() {
            if stats.mean.is_finite() && stats.std.is_finite() {
                continue;
            }
            let column = self.x.column(j);
            let (row, value) = column
                .iter()
                .copied()
                .enumerate()
                // The first of the largest: the cell to look at first.
                .reduce(|a, b| if b.1.abs() > a.1.abs() { b } else { a })
                .unwrap_or((0, f64::NAN));
            return Err(DataError::Overflow {
                path: self.path.clone(),
                // Line 1 is the header; rows are one line each unless quoted over several.
                line: row as u64 + 2,
                column: self.feature_names[j].clone(),
                value,
            });
        }
        Ok(())
    }

    /// Number of data rows.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// Min, max, mean and population standard deviation of every feature column, over its
    /// present (not missing) cells; all 0 for a column with none.
    pub fn feature_stats(&self) -> Vec<FeatureStats> {
        self.x
            .columns()
            .into_iter()
            .map(|col| {
                let present = || col.iter().copied().filter(|v| !v.is_nan());
                let n = present().count();
                if n == 0 {
                    return FeatureStats {
                        min: 0.0,
                        max: 0.0,
                        mean: 0.0,
                        std: 0.0,
                    };
                }
                let n = n as f64;
                let mean = present().sum::<f64>() / n;
                let var = present().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                FeatureStats {
                    min: present().fold(f64::INFINITY, f64::min),
                    max: present().fold(f64::NEG_INFINITY, f64::max),
                    mean,
                    std: var.sqrt(),
                }
            })
            .collect()
    }

    /// Whether any feature is a column of text or has a missing cell: a fit on this table needs
    /// preprocessing.
    pub fn needs_preprocessing(&self) -> bool {
        self.vocab.iter().any(Option::is_some) || self.x.iter().any(|v| v.is_nan())
    }

    /// A dataset of the given rows (in that order), for cross-validation folds.
    pub fn subset(&self, rows: &[usize]) -> Self {
        Self {
            path: self.path.clone(),
            sha256: self.sha256.clone(),
            feature_names: self.feature_names.clone(),
            label_column: self.label_column.clone(),
            x: self.x.select(ndarray::Axis(0), rows),
            vocab: self.vocab.clone(),
            label_names: self.label_names.clone(),
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// Splits the dataset in two: the rows not in `held` (ascending) and those in it, each in
    /// file order. The kept rows are moved up in place inside the matrix's own buffer, so the
    /// peak is the dataset plus the held rows, not two copies of it.
    pub fn split_off(self, held: &[usize]) -> (Self, Self) {
        let held_out = self.subset(held);
        if !self.x.is_standard_layout() {
            let kept = crate::data::complement_rows(self.rows(), held);
            return (self.subset(&kept), held_out);
        }
        let (rows, width) = self.x.dim();
        let (mut values, offset) = self.x.into_raw_vec_and_offset();
        let start = offset.unwrap_or(0);
        let mut labels = self.labels;
        let mut write = 0;
        let mut next = held.iter().peekable();
        for row in 0..rows {
            if next.peek() == Some(&&row) {
                next.next();
                continue;
            }
            if write != row {
                let from = start + row * width;
                values.copy_within(from..from + width, start + write * width);
                labels[write] = labels[row];
            }
            write += 1;
        }
        values.drain(..start);
        values.truncate(write * width);
        labels.truncate(write);
        let x = Array2::from_shape_vec((write, width), values)
            .unwrap_or_else(|_| Array2::zeros((0, width)));
        let kept = Self {
            path: self.path,
            sha256: self.sha256,
            feature_names: self.feature_names,
            label_column: self.label_column,
            x,
            vocab: self.vocab,
            label_names: self.label_names,
            labels,
        };
        (kept, held_out)
    }

    /// The label of row `row`.
    pub fn label(&self, row: usize) -> &str {
        &self.label_names[self.labels[row] as usize]
    }

    /// The distinct labels present in the rows, sorted.
    pub fn classes(&self) -> Vec<String> {
        let mut present = vec![false; self.label_names.len()];
        for &l in &self.labels {
            present[l as usize] = true;
        }
        self.label_names
            .iter()
            .zip(present)
            .filter(|(_, p)| *p)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// The columns one read keeps, and how it reads their cells.
#[derive(Clone, Copy)]
struct Wanted<'a> {
    features: &'a [String],
    label_column: &'a str,
    order_column: Option<&'a str>,
    options: &'a ReadOptions,
}

/// A cell's number; `None` when it is text (not a number at all); an error when it is a number
/// too large to be finite (`1e999`, `inf`), which no column may hold.
fn parse_number(
    path: &Path,
    line: u64,
    column: &str,
    cell: &str,
) -> Result<Option<f64>, DataError> {
    let Ok(value) = cell.parse::<f64>() else {
        return Ok(None);
    };
    if !value.is_finite() {
        return Err(DataError::NotFinite {
            path: path.to_owned(),
            line,
            column: column.to_owned(),
            value: cell.to_owned(),
        });
    }
    Ok(Some(value))
}

/// The longest JSON line read from an inference log; a longer one is skipped (limen's lines are
/// well under 64 KiB).
pub const MAX_LINE: usize = 1024 * 1024;

/// Calls `each` with every line of `source` (without its newline) that is at most [`MAX_LINE`]
/// bytes; longer lines are skipped without being held in memory, and a last line without its
/// newline (a writer cut mid-line) is not a whole line and is skipped too.
pub fn for_each_line(source: impl Read, each: impl FnMut(&[u8])) {
    for_each_line_up_to(source, MAX_LINE, each);
}

/// [`for_each_line`] with lines of at most `max` bytes; returns how many lines were skipped
/// (too long, or a last line cut mid-way).
pub fn for_each_line_up_to(source: impl Read, max: usize, mut each: impl FnMut(&[u8])) -> u64 {
    use std::io::BufRead as _;
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, source);
    let mut line = Vec::new();
    let mut too_long = false;
    let mut skipped = 0;
    loop {
        let (done, used) = match reader.fill_buf() {
            Ok([]) => (true, 0),
            Ok(buf) => match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    if !too_long && line.len() + i <= max {
                        line.extend_from_slice(&buf[..i]);
                        each(&line);
                    } else {
                        skipped += 1;
                    }
                    line.clear();
                    too_long = false;
                    (false, i + 1)
                }
                None => {
                    if line.len() + buf.len() > max {
                        too_long = true;
                        line.clear();
                    } else if !too_long {
                        line.extend_from_slice(buf);
                    }
                    (false, buf.len())
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => (false, 0),
            Err(_) => (true, 0),
        };
        reader.consume(used);
        if done {
            if too_long || !line.is_empty() {
                skipped += 1;
            }
            return skipped;
        }
    }
}

/// What reading training rows from an inference log found, line by line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSource {
    pub files: usize,
    /// Successful instances logged for the model.
    pub lines: u64,
    /// Of those, how many had a label in the labels file (the rows trained on).
    pub labelled: u64,
    /// Lines of other models (skipped).
    pub other_models: u64,
    /// Lines of failed requests, without features (skipped).
    pub failed: u64,
    /// Lines that are not inference log lines: not JSON, too long, or cut mid-way (skipped).
    pub unreadable: u64,
    /// Labelled keys (`request_id` or `request_id#index`) that more than one line carries: a
    /// reused `X-Request-Id`. Which of those lines the label belongs to is unknowable, so none
    /// of them is trained on.
    pub duplicate_keys: u64,
    /// The lines those keys carry.
    pub duplicate_lines: u64,
    /// Per row read, its key's [`request_key`]: what a hold-out by request id is drawn on.
    pub request_keys: Vec<u64>,
}

impl LogSource {
    /// Successful lines of the model that no label named.
    pub fn unlabelled(&self) -> u64 {
        self.lines - self.labelled - self.duplicate_lines
    }
}

impl std::fmt::Display for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} logged instances in {} file(s): {} with a label, {} without (skipped)",
            self.lines,
            self.files,
            self.labelled,
            self.unlabelled()
        )?;
        let skipped = [
            (self.duplicate_lines, "carrying a request id used more than once (refused: the label cannot be told which)"),
            (self.other_models, "of other models"),
            (self.failed, "of failed requests"),
            (self.unreadable, "unreadable"),
        ];
        for (n, what) in skipped {
            if n > 0 {
                write!(f, "; {n} line(s) {what}")?;
            }
        }
        Ok(())
    }
}

/// The fields of an inference log line that training needs.
#[derive(serde::Deserialize)]
struct LogLine {
    #[serde(default)]
    model: Option<String>,
    request_id: String,
    #[serde(default)]
    index: Option<u64>,
    /// Whether the instance came in a batch (then only `request_id#index` labels it).
    #[serde(default)]
    batch: bool,
    status: u16,
    #[serde(default)]
    features: Option<serde_json::Map<String, serde_json::Value>>,
}

impl LogLine {
    /// The label of this line's instance in `truth`, and the key it is under: an instance of a
    /// batch is labelled `request_id#index`; a request of one instance by its `request_id` (or
    /// `request_id#0`). Lines written before limen marked batches carry an index only when they
    /// were in one.
    fn label<'t>(&self, truth: &'t HashMap<String, String>) -> Option<(&'t str, &'t String)> {
        let id = &self.request_id;
        let keyed = |key: String| truth.get_key_value(&key).map(|(k, v)| (k.as_str(), v));
        match (self.batch, self.index) {
            (false, None | Some(0)) => keyed(id.clone()).or_else(|| keyed(format!("{id}#0"))),
            (_, Some(i)) => keyed(format!("{id}#{i}")),
            (true, None) => None,
        }
    }
}

impl Dataset {
    /// Training rows from the inference log (`limen serve --inference-log`) at `source` (a folder,
    /// searched for `.jsonl` files, or a glob pattern such as `logs/iris/2026-11-*/*.jsonl`),
    /// joined with the ground truth in `labels`: a CSV with a `request_id` column and
    /// `label_column`. Only lines of `model` are read (a log folder holds every model's). A
    /// line's key is its `request_id`, or `request_id#index` for an instance of a batch;
    /// successful lines whose key has no label are skipped and counted, and a key that more than
    /// one line carries (a reused `X-Request-Id`) is refused, all its lines skipped and counted.
    /// A labelled line without one of `features` is an error naming its file and line.
    pub fn from_inference_log(
        source: &str,
        model: &str,
        labels: &Path,
        features: &[String],
        label_column: &str,
        options: &ReadOptions,
    ) -> Result<(Self, LogSource), DataError> {
        if features.is_empty() {
            return Err(DataError::NoFeatures);
        }
        let files = log_files(source)?;
        let mut hasher = Sha256::new();
        let truth = read_labels(labels, label_column, &mut hasher)?;
        // First pass: how many lines carry each labelled key (only labelled keys are counted,
        // so this holds no more than the labels file does).
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for file in &files {
            let opened = std::fs::File::open(file).map_err(|source| DataError::Io {
                path: file.clone(),
                source,
            })?;
            for_each_line(opened, |bytes| {
                let Ok(line) = serde_json::from_slice::<LogLine>(bytes) else {
                    return;
                };
                if line.status != 200 || line.model.as_deref().is_some_and(|m| m != model) {
                    return;
                }
                if let Some((key, _)) = line.label(&truth) {
                    *seen.entry(key).or_default() += 1;
                }
            });
        }
        let mut rows = Rows::with_width(
            features.len(),
            features.iter().map(|f| options.categorical.contains(f)),
        );
        let mut found = LogSource {
            files: files.len(),
            duplicate_keys: seen.values().filter(|n| **n > 1).count() as u64,
            ..LogSource::default()
        };
        let mut problem: Option<DataError> = None;
        for file in &files {
            let opened = std::fs::File::open(file).map_err(|source| DataError::Io {
                path: file.clone(),
                source,
            })?;
            let mut reader = Hashing {
                inner: opened,
                hasher: std::mem::take(&mut hasher),
            };
            let mut line_number = 0u64;
            let skipped = for_each_line_up_to(&mut reader, MAX_LINE, |bytes| {
                line_number += 1;
                if problem.is_some() {
                    return;
                }
                let Ok(line) = serde_json::from_slice::<LogLine>(bytes) else {
                    found.unreadable += 1;
                    return;
                };
                if line.model.as_deref().is_some_and(|m| m != model) {
                    found.other_models += 1;
                    return;
                }
                if line.status != 200 {
                    found.failed += 1;
                    return;
                }
                let Some(values) = &line.features else {
                    found.unreadable += 1;
                    return;
                };
                found.lines += 1;
                let Some((key, label)) = line.label(&truth) else {
                    return;
                };
                if seen.get(key).is_some_and(|n| *n > 1) {
                    found.duplicate_lines += 1;
                    return;
                }
                for (j, name) in features.iter().enumerate() {
                    use serde_json::Value;
                    let cell = match values.get(name) {
                        Some(Value::Null) => Ok(Cell::Missing),
                        Some(Value::String(t)) if options.is_missing(t) => Ok(Cell::Missing),
                        // A number sent as text stays a number while its column is one.
                        Some(Value::String(t)) => Ok(match t.parse::<f64>() {
                            Ok(v) if v.is_finite() && rows.vocab[j].is_none() => Cell::Number(v),
                            _ => Cell::Text(t),
                        }),
                        Some(v) => v
                            .as_f64()
                            .filter(|v| v.is_finite())
                            .map(Cell::Number)
                            .ok_or_else(|| {
                                format!(
                                    "feature {name:?} is neither a finite number, text nor null"
                                )
                            }),
                        None => {
                            let logged: Vec<&str> = values.keys().map(String::as_str).collect();
                            Err(format!(
                                "it has no feature {name:?}; the line has {}: pass them with --features",
                                logged.join(", ")
                            ))
                        }
                    };
                    let pushed = cell.and_then(|cell| {
                        rows.push_cell(j, cell, options.max_categories)
                            .map_err(|()| too_many(name, options.max_categories))
                    });
                    if let Err(why) = pushed {
                        problem = Some(DataError::LogLine {
                            path: file.clone(),
                            line: line_number,
                            why,
                        });
                        return;
                    }
                }
                rows.push_label(label);
                found.request_keys.push(request_key(key));
                found.labelled += 1;
            });
            found.unreadable += skipped;
            hasher = reader.hasher;
        }
        if let Some(problem) = problem {
            return Err(problem);
        }
        let sha256 = format!("{:x}", hasher.finalize());
        let data = rows.finish(Path::new(source), sha256, features, label_column)?;
        Ok((data, found))
    }
}

/// Why a log line's category is refused: its feature has too many.
fn too_many(name: &str, max: usize) -> String {
    format!(
        "feature {name:?} has more than {max} distinct values; a column of categories that many looks like an identifier: leave it out of --features, or raise --max-categories"
    )
}

/// The `.jsonl` files of `source`, sorted: every one under a folder, or those a glob matches.
fn log_files(source: &str) -> Result<Vec<PathBuf>, DataError> {
    if crate::remote::is_remote(source) {
        return Ok(crate::remote::staged(source, &["jsonl"])?.files.clone());
    }
    let path = Path::new(source);
    let mut files = Vec::new();
    if path.is_dir() {
        let mut stack = vec![path.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(entry.path());
                } else if kind.is_file() && entry.path().extension().is_some_and(|e| e == "jsonl") {
                    files.push(entry.path());
                }
            }
        }
    } else {
        let pattern = glob::glob(source).map_err(|e| DataError::LogSource {
            place: source.to_owned(),
            why: format!("not a folder, and not a valid glob pattern ({e})"),
        })?;
        files.extend(pattern.flatten().filter(|p| p.is_file()));
    }
    files.sort();
    if files.is_empty() {
        return Err(DataError::LogSource {
            place: source.to_owned(),
            why: "no .jsonl files there".to_owned(),
        });
    }
    Ok(files)
}

/// A CSV reader's error: failing to read the bytes (a Parquet file that cannot be decoded, a
/// disk error) is not the CSV being invalid, and says so.
fn csv_error(path: &Path, source: csv::Error) -> DataError {
    match source.kind() {
        csv::ErrorKind::Io(e) => DataError::Read {
            path: path.to_owned(),
            why: e.to_string(),
        },
        _ => DataError::Csv {
            path: path.to_owned(),
            source,
        },
    }
}

/// Object names a prefix or glob of a table in S3 selects.
pub const TABLE_EXTENSIONS: &[&str] = &["csv", "parquet", "pq"];

/// The CSV bytes of the table at `path`: a local CSV or Parquet file, or an S3 location (one
/// object, or every CSV or Parquet object under a prefix or glob, joined under one header).
fn open_table(path: &Path) -> Result<Box<dyn Read>, DataError> {
    open_local(&local_table(path)?, path)
}

/// The local CSV or Parquet file at `path`, as CSV bytes; errors name it `shown` (the location
/// the user wrote, for a staged copy).
fn open_local(path: &Path, shown: &Path) -> Result<Box<dyn Read>, DataError> {
    let io = |source| DataError::Io {
        path: shown.to_owned(),
        source,
    };
    if crate::columnar::is_parquet(path).map_err(io)? {
        Ok(Box::new(crate::columnar::CsvRows::open(path, shown)?))
    } else {
        Ok(Box::new(std::fs::File::open(path).map_err(io)?))
    }
}

/// `path` itself, or for an S3 location the local copy staged for this process: its one object,
/// or its parts joined into one CSV (once; later reads reuse it).
fn local_table(path: &Path) -> Result<PathBuf, DataError> {
    let location = path.to_string_lossy();
    if !crate::remote::is_remote(&location) {
        return Ok(path.to_owned());
    }
    let staged = crate::remote::staged(&location, TABLE_EXTENSIONS)?;
    match staged.files.as_slice() {
        [one] => Ok(one.clone()),
        _ => {
            let joined = staged.dir.join("joined.csv");
            if !joined.exists() {
                join_parts(&location, &staged, &joined)?;
            }
            Ok(joined)
        }
    }
}

/// Writes the staged parts (CSV or Parquet) into one CSV at `to`: the first part's header once,
/// then every part's rows. Parts whose header differs from the first's are refused.
fn join_parts(location: &str, staged: &crate::remote::Staged, to: &Path) -> Result<(), DataError> {
    use std::io::{BufRead, BufReader, Write};
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DataError::Io { path, source }
    };
    let partial = to.with_extension("partial");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&partial).map_err(io(&partial))?);
    let mut first: Option<(String, &str)> = None;
    for (part, object) in staged.files.iter().zip(&staged.objects) {
        let shown = Path::new(object);
        let mut reader = BufReader::new(open_local(part, shown)?);
        let mut header = Vec::new();
        reader.read_until(b'\n', &mut header).map_err(io(shown))?;
        let text = String::from_utf8_lossy(&header).trim().to_owned();
        match &first {
            None => {
                out.write_all(text.as_bytes()).map_err(io(to))?;
                out.write_all(b"\n").map_err(io(to))?;
                first = Some((text, object));
            }
            Some((expected, first_object)) if *expected != text => {
                return Err(DataError::PartsDiffer {
                    location: location.to_owned(),
                    first: (*first_object).to_owned(),
                    expected: expected.clone(),
                    other: object.clone(),
                    found: text,
                });
            }
            Some(_) => {}
        }
        // The part's rows, ending in a line break whether or not the part did.
        let mut last = b'\n';
        loop {
            let chunk = reader.fill_buf().map_err(io(shown))?;
            if chunk.is_empty() {
                break;
            }
            out.write_all(chunk).map_err(io(to))?;
            last = chunk[chunk.len() - 1];
            let n = chunk.len();
            reader.consume(n);
        }
        if last != b'\n' {
            out.write_all(b"\n").map_err(io(to))?;
        }
    }
    out.into_inner()
        .map_err(|e| DataError::Io {
            path: partial.clone(),
            source: e.into_error(),
        })?
        .sync_all()
        .map_err(io(&partial))?;
    std::fs::rename(&partial, to).map_err(io(to))
}

/// `path` itself, or the local copy of the one S3 object it names (a labels file).
fn local_file(path: &Path) -> Result<PathBuf, DataError> {
    let location = path.to_string_lossy();
    if !crate::remote::is_remote(&location) {
        return Ok(path.to_owned());
    }
    let staged = crate::remote::staged(&location, &["csv"])?;
    match staged.files.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(DataError::NotOneObject {
            location: location.into_owned(),
            count: staged.files.len(),
        }),
    }
}

/// `request_id` → label from the labels CSV.
fn read_labels(
    path: &Path,
    label_column: &str,
    hasher: &mut Sha256,
) -> Result<HashMap<String, String>, DataError> {
    let bytes = std::fs::read(local_file(path)?).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    hasher.update(&bytes);
    let csv_err = |source| DataError::Csv {
        path: path.to_owned(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let header: Vec<String> = reader
        .headers()
        .map_err(csv_err)?
        .iter()
        .map(str::to_owned)
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DataError::MissingColumn {
                path: path.to_owned(),
                column: name.to_owned(),
                available: header.join(", "),
            })
    };
    let (id, label) = (column("request_id")?, column(label_column)?);
    let mut truth = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        if let (Some(id), Some(label)) = (record.get(id), record.get(label)) {
            if !id.is_empty() && !label.is_empty() {
                truth.insert(id.to_owned(), label.to_owned());
            }
        }
    }
    Ok(truth)
}

/// The header line of the CSV at `path` (the built-in Iris table's for its default path, as
/// [`Dataset::load`] reads it), trimmed.
pub fn csv_header(path: &Path) -> Result<Vec<String>, DataError> {
    let file: Box<dyn Read> = if path == Path::new(IRIS_PATH) && !path.exists() {
        Box::new(IRIS_CSV)
    } else {
        open_table(path)?
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(file);
    let header: Vec<String> = reader
        .headers()
        .map_err(|source| DataError::Csv {
            path: path.to_owned(),
            source,
        })?
        .iter()
        .map(str::to_owned)
        .collect();
    if header.iter().all(String::is_empty) {
        return Err(DataError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(header)
}

/// The features the first successful logged request of `model` in `source` carries, in the
/// line's order: what a model trained from the log takes unless `--features` says otherwise.
pub fn log_feature_names(source: &str, model: &str) -> Result<Vec<String>, DataError> {
    for file in log_files(source)? {
        let opened = std::fs::File::open(&file).map_err(|source| DataError::Io {
            path: file.clone(),
            source,
        })?;
        let mut names = None;
        for_each_line_up_to(opened, MAX_LINE, |bytes| {
            if names.is_some() {
                return;
            }
            let Ok(line) = serde_json::from_slice::<LogLine>(bytes) else {
                return;
            };
            if line.status == 200 && line.model.as_deref().is_none_or(|m| m == model) {
                names = line.features.map(|f| f.keys().cloned().collect::<Vec<_>>());
            }
        });
        if let Some(names) = names {
            return Ok(names);
        }
    }
    Err(DataError::LogSource {
        place: source.to_owned(),
        why: format!("no successful request of model {model:?} is logged there"),
    })
}

/// The rows of `0..n` not in `held` (ascending).
pub fn complement_rows(n: usize, held: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(n.saturating_sub(held.len()));
    let mut next = held.iter().peekable();
    for row in 0..n {
        if next.peek() == Some(&&row) {
            next.next();
        } else {
            out.push(row);
        }
    }
    out
}

/// A logged instance's key (`request_id` or `request_id#index`) as a place in `[0, 2⁶⁴)`: the
/// first 8 bytes of its SHA-256, the same in every build.
pub fn request_key(key: &str) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// Hex-encoded SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, features: &[&str]) -> Result<Dataset, DataError> {
        let features: Vec<String> = features.iter().map(|s| s.to_string()).collect();
        Dataset::parse(Path::new("t.csv"), text.as_bytes(), &features, "species")
    }

    #[test]
    fn split_off_in_place_equals_two_subsets() {
        let text = "a,b,species\n1,10,x\n2,20,y\n3,30,x\n4,40,y\n5,50,x\n";
        let data = parse(text, &["a", "b"]).unwrap();
        for held in [vec![], vec![0], vec![1, 3], vec![4], vec![0, 1, 2, 3]] {
            let kept_rows = complement_rows(5, &held);
            let (kept, out) = data.clone().split_off(&held);
            assert_eq!(kept.x, data.subset(&kept_rows).x, "{held:?}");
            assert_eq!(kept.labels, data.subset(&kept_rows).labels, "{held:?}");
            assert_eq!(out.x, data.subset(&held).x, "{held:?}");
        }
        // A matrix not in row-major order (a transposed view made owned) takes the copy path.
        let mut odd = data.clone();
        odd.x = odd.x.t().to_owned().reversed_axes();
        let (kept, _) = odd.split_off(&[2]);
        assert_eq!(kept.x, data.subset(&[0, 1, 3, 4]).x);
    }

    #[test]
    fn training_from_a_log_reads_one_model_refuses_reused_ids_and_counts_every_skip() {
        let dir = tempfile::tempdir().unwrap();
        let line = |model: &str, id: &str, index: Option<u64>, batch: bool, width: f64| {
            let mut v = serde_json::json!({"ts": "2026-12-01T00:00:00.000Z", "model": model,
                "version": "7", "request_id": id, "route": "/predict", "status": 200,
                "features": {"petal_width": width}});
            if let Some(i) = index {
                v["index"] = i.into();
            }
            if batch {
                v["batch"] = true.into();
            }
            v.to_string() + "\n"
        };
        let mut text = String::new();
        text += &line("iris", "a", Some(0), false, 0.2); // labelled by its id
        text += &line("iris", "b", Some(0), true, 2.2); // a one-instance batch: b#0
        text += &line("iris", "c", Some(0), false, 1.0); // unlabelled
        text += &line("wine", "d", Some(0), false, 9.9); // another model, though labelled
        for _ in 0..1000 {
            text += &line("iris", "e", Some(0), false, 2.4); // one id reused a thousand times
        }
        text += &line("iris", "f", None, false, 0.3); // written before lines had an index
        text += "{\"not a log line\n";
        text += r#"{"model":"iris","request_id":"g","status":422,"route":"/predict","error":"x"}"#;
        text += "\n";
        text += "cut mid-wa";
        let log = dir.path().join("pod-0.jsonl");
        std::fs::write(&log, text).unwrap();
        let labels = dir.path().join("labels.csv");
        std::fs::write(
            &labels,
            "request_id,species\na,setosa\nb#0,virginica\nd,x\ne,virginica\nf,setosa\n",
        )
        .unwrap();
        let (data, found) = Dataset::from_inference_log(
            dir.path().to_str().unwrap(),
            "iris",
            &labels,
            &["petal_width".to_owned()],
            "species",
            &ReadOptions::default(),
        )
        .unwrap();
        assert_eq!(data.rows(), 3, "a, b#0 and f");
        assert_eq!(
            found,
            LogSource {
                files: 1,
                lines: 1004,
                labelled: 3,
                other_models: 1,
                failed: 1,
                unreadable: 2,
                duplicate_keys: 1,
                duplicate_lines: 1000,
                request_keys: ["a", "b#0", "f"].map(request_key).to_vec(),
            }
        );
        let text = found.to_string();
        assert!(
            text.contains("1000 line(s) carrying a request id used more than once"),
            "{text}"
        );
        assert!(text.contains("1 without (skipped)"), "{text}");
        // A feature the lines do not carry is named, with what they do carry.
        let err = Dataset::from_inference_log(
            dir.path().to_str().unwrap(),
            "iris",
            &labels,
            &["sepal_width".to_owned()],
            "species",
            &ReadOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("petal_width"), "{err}");
    }

    #[test]
    fn parses_the_requested_columns_in_the_requested_order() {
        let ds = parse("a,b,species\n1,2,x\n3,4,y\n", &["b", "a"]).unwrap();
        assert_eq!(ds.x, ndarray::array![[2.0, 1.0], [4.0, 3.0]]);
        assert_eq!((ds.label(0), ds.label(1)), ("x", "y"));
        assert_eq!(ds.classes(), vec!["x", "y"]);
        assert_eq!(ds.rows(), 2);
    }

    #[test]
    fn a_missing_column_names_the_columns_that_exist() {
        let err = parse("a,b,species\n1,2,x\n", &["petal_wdth"]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::MissingColumn { .. }));
        assert!(
            msg.contains("petal_wdth") && msg.contains("a, b, species"),
            "{msg}"
        );
    }

    #[test]
    fn a_column_with_text_is_categories_and_missing_cells_are_nan() {
        let data = parse(
            "a,b,species\n1.50,1,x\nabc,,y\n007,NA,x\n1.5,2,y\n",
            &["a", "b"],
        )
        .unwrap();
        // The numbers read before the text became the categories they print as.
        assert_eq!(
            data.vocab[0].as_deref(),
            Some(&["1.5".to_owned(), "abc".to_owned(), "7".to_owned()][..])
        );
        assert_eq!(data.x.column(0).to_vec(), vec![0.0, 1.0, 2.0, 0.0]);
        assert_eq!(data.vocab[1], None);
        let b = data.x.column(1).to_vec();
        assert!(b[1].is_nan() && b[2].is_nan() && b[0] == 1.0 && b[3] == 2.0);
        assert!(data.needs_preprocessing());
        assert_eq!(data.feature_stats()[1].mean, 1.5, "over present cells");
        // Forced, a column of numbers is categories too; a missing label is still refused.
        let options = ReadOptions {
            categorical: vec!["b".into()],
            ..ReadOptions::default()
        };
        let columns = Wanted {
            features: &["b".to_owned()],
            label_column: "species",
            order_column: None,
            options: &options,
        };
        let (forced, _) =
            Dataset::read(Path::new("t.csv"), &b"b,species\n2,x\n1,y\n"[..], &columns).unwrap();
        assert_eq!(
            forced.vocab[0].as_deref(),
            Some(&["2".to_owned(), "1".to_owned()][..])
        );
        let err = parse("a,species\n1,x\n2,NA\n", &["a"]).unwrap_err();
        assert!(
            matches!(err, DataError::EmptyLabel { line: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_column_with_too_many_categories_is_refused_by_name() {
        let options = ReadOptions {
            max_categories: 2,
            ..ReadOptions::default()
        };
        let columns = Wanted {
            features: &["user".to_owned()],
            label_column: "species",
            order_column: None,
            options: &options,
        };
        let text = &b"user,species\nu1,x\nu2,y\nu1,x\nu3,y\n"[..];
        let err = Dataset::read(Path::new("t.csv"), text, &columns).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::TooManyCategories {
                    line: 5,
                    max: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("\"user\""), "{err}");
    }

    #[test]
    fn non_finite_cells_are_refused() {
        for bad in ["inf", "-inf", "1e999"] {
            let err = parse(&format!("a,species\n{bad},x\n"), &["a"]).unwrap_err();
            assert!(
                matches!(err, DataError::NotFinite { line: 2, .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn empty_inputs_are_refused() {
        assert!(matches!(parse("", &["a"]), Err(DataError::Empty { .. })));
        assert!(matches!(
            parse("a,species\n", &["a"]),
            Err(DataError::Empty { .. })
        ));
        assert!(matches!(
            parse("a,species\n1,x\n", &[]),
            Err(DataError::NoFeatures)
        ));
    }

    #[test]
    fn ragged_rows_and_empty_labels_are_refused() {
        assert!(matches!(
            parse("a,species\n1,x,extra\n", &["a"]),
            Err(DataError::Csv { .. })
        ));
        assert!(matches!(
            parse("a,species\n1,\n", &["a"]),
            Err(DataError::EmptyLabel { line: 2, .. })
        ));
    }

    #[test]
    fn duplicate_header_columns_are_refused() {
        assert!(matches!(
            parse("a,a,species\n1,2,x\n", &["a"]),
            Err(DataError::DuplicateColumn { .. })
        ));
    }

    #[test]
    fn feature_stats_are_population_statistics() {
        let ds = parse("a,species\n1,x\n2,x\n3,y\n4,y\n", &["a"]).unwrap();
        let s = ds.feature_stats()[0];
        assert_eq!((s.min, s.max, s.mean), (1.0, 4.0, 2.5));
        assert!((s.std - 1.25f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn the_shipped_iris_file_parses() {
        let features: Vec<String> = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/iris.csv");
        let ds = Dataset::load(&path, &features, "species").unwrap();
        assert_eq!(ds.x.dim(), (150, 4));
        assert_eq!(ds.classes(), vec!["setosa", "versicolor", "virginica"]);
        assert_eq!(ds.sha256.len(), 64);
    }
}
