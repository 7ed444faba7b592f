//! The hold-out: rows of the training data the fit never sees, so that the metrics recorded
//! beside it and the gate that promotes the model are measured on rows it was not fitted on.
//!
//! Every way of choosing the rows is a pure function of the data, so `limen validate` can choose
//! them again from the same file and prove it found the same ones (the [`Holdout`] record's
//! digest), without the store holding a copy of the rows:
//! - **stratified** (the default): in every class, the rows whose row number hashes lowest, the
//!   same share of each class (scikit-learn's `train_test_split(stratify=y)`, with a fixed hash
//!   in place of a seeded shuffle, so it never changes between builds);
//! - **newest** (`--split-by COLUMN`): the rows last in the column's order (numbers if every
//!   cell is one, else text, as ISO 8601 times sort): a time-ordered split;
//! - **request id** (a table from the inference log): the rows whose request id hashes below
//!   the share. A request is held out or not whatever else the log holds, so the rows can be
//!   found again in a log that has grown since.

use sha2::{Digest, Sha256};

use std::path::{Path, PathBuf};

use crate::data::{DataError, Dataset, ReadOptions};
use crate::model::{Holdout, HoldoutMethod, ModelArtifact};

/// The share of rows `limen train` holds out unless told otherwise.
pub const DEFAULT_SHARE: f64 = 0.2;

/// What to hold out, checked: build it with [`HoldoutSpec::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutSpec {
    share: f64,
    split_by: Option<String>,
}

/// Why a hold-out cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum HoldoutError {
    #[error("--holdout must be a share of the rows, at least 0 and below 1 (0.2 holds out a fifth), got {0}")]
    Share(f64),
    #[error("--split-by {0:?} orders the rows for a hold-out, but --holdout is 0: give a share (e.g. --holdout 0.2) or leave --split-by out")]
    SplitWithoutShare(String),
    #[error("--holdout {share} of {rows} rows holds out no row; the table is too small for a hold-out: pass --holdout 0 to fit on every row, and validate with --data")]
    Empty { share: f64, rows: usize },
    #[error("--holdout {share} of {rows} logged rows happens to hold out every one; label more requests, or pass --holdout 0 and validate with --data")]
    Everything { share: f64, rows: usize },
}

impl HoldoutSpec {
    /// `share` of the rows (0: none), the newest by `split_by` when given, else stratified.
    pub fn new(share: f64, split_by: Option<String>) -> Result<Self, HoldoutError> {
        if !(0.0..1.0).contains(&share) {
            return Err(HoldoutError::Share(share));
        }
        if let Some(column) = &split_by {
            if share == 0.0 {
                return Err(HoldoutError::SplitWithoutShare(column.clone()));
            }
        }
        Ok(Self { share, split_by })
    }

    /// No hold-out: the fit sees every row.
    pub fn none() -> Self {
        Self {
            share: 0.0,
            split_by: None,
        }
    }

    pub fn share(&self) -> f64 {
        self.share
    }

    pub fn split_by(&self) -> Option<&str> {
        self.split_by.as_deref()
    }

    pub fn is_none(&self) -> bool {
        self.share == 0.0
    }
}

/// splitmix64's finaliser: a fixed bijection of `u64` that scatters consecutive row numbers.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How many of `n` rows a share holds out: rounded, and never all of them.
fn count(share: f64, n: usize) -> usize {
    ((share * n as f64).round() as usize).min(n.saturating_sub(1))
}

/// The held-out rows (ascending) of a stratified hold-out: in each class (`labels[i]` indexes
/// `0..n_labels`), the `round(share × its rows)` rows whose row number hashes lowest; a class
/// always keeps at least one row to fit on.
pub fn stratified(labels: &[u32], n_labels: usize, share: f64) -> Vec<usize> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_labels];
    for (row, &label) in labels.iter().enumerate() {
        if let Some(class) = by_class.get_mut(label as usize) {
            class.push(row);
        }
    }
    let mut held = Vec::new();
    for mut rows in by_class {
        let take = count(share, rows.len());
        rows.sort_unstable_by_key(|&row| mix(row as u64));
        held.extend_from_slice(&rows[..take]);
    }
    held.sort_unstable();
    held
}

/// The held-out rows (ascending) of a time-ordered hold-out: the `round(share × rows)` rows last
/// in `keys`' order (numeric when every key is a number, else by text; ties in file order).
pub fn newest(keys: &[String], share: f64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    let numbers: Option<Vec<f64>> = keys
        .iter()
        .map(|k| k.parse::<f64>().ok().filter(|v| !v.is_nan()))
        .collect();
    match numbers {
        Some(numbers) => order.sort_by(|&a, &b| numbers[a].total_cmp(&numbers[b])),
        None => order.sort_by(|&a, &b| keys[a].cmp(&keys[b])),
    }
    let take = count(share, keys.len());
    let mut held = order.split_off(keys.len() - take);
    held.sort_unstable();
    held
}

/// Whether a request whose key ([`crate::data::request_key`]) is `key` is held out at `share`.
pub fn request_held_out(key: u64, share: f64) -> bool {
    (key as f64) < share * 2f64.powi(64)
}

/// The held-out rows (ascending) of a hold-out by request id: `keys[i]` is row `i`'s
/// [`crate::data::request_key`].
pub fn by_request(keys: &[u64], share: f64) -> Vec<usize> {
    (0..keys.len())
        .filter(|&row| request_held_out(keys[row], share))
        .collect()
}

/// SHA-256 of `rows` (ascending row numbers, 8 bytes little-endian each), hex encoded.
pub fn digest(rows: &[usize]) -> String {
    let mut hasher = Sha256::new();
    for &row in rows {
        hasher.update((row as u64).to_le_bytes());
    }
    format!("{:x}", hasher.finalize())
}

/// A hold-out chosen for one table: its rows and the record the artifact keeps of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The held-out rows, ascending.
    pub held_out: Vec<usize>,
    pub record: Holdout,
}

/// The record of a hold-out of `held` rows chosen by `method`, for the artifact.
pub fn record(spec: &HoldoutSpec, method: HoldoutMethod, held: &[usize]) -> Holdout {
    Holdout {
        share: spec.share,
        method,
        split_by: spec.split_by.clone(),
        rows: held.len(),
        rows_sha256: (method != HoldoutMethod::RequestId).then(|| digest(held)),
    }
}

/// Refuses a hold-out that holds out nothing although a share was asked for.
pub fn check_not_empty(
    spec: &HoldoutSpec,
    held: &[usize],
    rows: usize,
) -> Result<(), HoldoutError> {
    if !spec.is_none() && held.is_empty() {
        return Err(HoldoutError::Empty {
            share: spec.share,
            rows,
        });
    }
    Ok(())
}

/// The split `spec` asks for on a table read from a file: the newest rows by `order` (each
/// row's `--split-by` cell) or a stratified share; `None` without a hold-out.
pub fn split_table(
    spec: &HoldoutSpec,
    data: &Dataset,
    order: &[String],
) -> Result<Option<Split>, HoldoutError> {
    if spec.is_none() {
        return Ok(None);
    }
    let (method, held_out) = match spec.split_by {
        Some(_) => (HoldoutMethod::Newest, newest(order, spec.share)),
        None => (
            HoldoutMethod::Stratified,
            stratified(&data.labels, data.label_names.len(), spec.share),
        ),
    };
    check_not_empty(spec, &held_out, data.rows())?;
    let record = record(spec, method, &held_out);
    Ok(Some(Split { held_out, record }))
}

/// The split `spec` asks for on rows from the inference log, whose request keys are `keys`.
pub fn split_log(spec: &HoldoutSpec, keys: &[u64]) -> Result<Option<Split>, HoldoutError> {
    if spec.is_none() {
        return Ok(None);
    }
    let held_out = by_request(keys, spec.share);
    check_not_empty(spec, &held_out, keys.len())?;
    if held_out.len() == keys.len() {
        return Err(HoldoutError::Everything {
            share: spec.share,
            rows: keys.len(),
        });
    }
    let record = record(spec, HoldoutMethod::RequestId, &held_out);
    Ok(Some(Split { held_out, record }))
}

/// Why the rows a gate must score cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("the data {path} changed since version {version} was trained on it (its SHA-256 differs), so the rows it held out cannot be found again: pass --data with rows the model was not fitted on")]
    Changed { path: String, version: u64 },
    #[error("the data {path} changed while the gate was reading it: run the gate again once nothing writes it")]
    ChangedWhileRead { path: String },
    #[error("choosing the hold-out of {path} again gave other rows than version {version} records ({found} rows found, {recorded} recorded): the model file or the data is not what it says; retrain, or pass --data with rows it was not fitted on")]
    Inconsistent {
        path: String,
        version: u64,
        found: usize,
        recorded: usize,
    },
    #[error("version {version} was fitted on every row of {path} (trained with --holdout 0), so they cannot show how it does on new rows: pass --data with rows it was not fitted on, or --allow-training-rows to gate on its training rows anyway")]
    FittedOnEveryRow { path: String, version: u64 },
    #[error("version {version} records a hold-out of a kind this limen does not know how to find again: retrain it, or pass --data")]
    UnknownHoldout { version: u64 },
}

/// Where the rows a gate scores come from, so that every model it compares scores the same ones.
#[derive(Debug, Clone)]
pub enum RowSource {
    /// A CSV file; only the given rows of it (ascending) when `rows` is set.
    File {
        path: PathBuf,
        order_column: Option<String>,
        rows: Option<Vec<usize>>,
        /// The file's SHA-256 when the gate first read it: another load must read the same bytes.
        sha256: String,
    },
    /// Labelled lines of an inference log; only the requests held out at `share` when set.
    Log {
        source: String,
        labels: PathBuf,
        model: String,
        share: Option<f64>,
    },
}

/// The rows a gate scores, in words and as a [`RowSource`].
#[derive(Debug, Clone)]
pub struct GateRows {
    pub source: RowSource,
    /// What the rows are, for the report: `the 30 rows of data/iris.csv that version 7 held out`.
    pub description: String,
}

/// What the operator gave the gate to score a candidate with.
#[derive(Debug, Clone, Default)]
pub struct GateData<'a> {
    /// `--data`: a CSV, or with `labels` an inference log.
    pub data: Option<&'a Path>,
    /// `--labels`: the ground truth for an inference log in `data`.
    pub labels: Option<&'a Path>,
    /// `--allow-training-rows`: gate on rows the candidate was fitted on rather than refuse.
    pub allow_training_rows: bool,
}

/// Chooses the rows the gate scores `candidate` on, and loads them with its features: `--data`
/// when given (less any rows of it the candidate was fitted on), else the rows the candidate
/// held out, found again in its training data and proved the same by their digest. Refuses,
/// rather than gate on them, rows the candidate was fitted on, unless `allow_training_rows`.
pub fn gate_rows(
    candidate: &ModelArtifact,
    given: &GateData<'_>,
) -> Result<(GateRows, Dataset), RowsError> {
    let version = candidate.version;
    let p = &candidate.provenance;
    let features: Vec<String> = candidate.features.iter().map(|f| f.name.clone()).collect();
    let label = candidate.label_column.as_str();
    let by_request = p
        .holdout
        .as_ref()
        .filter(|h| h.method == HoldoutMethod::RequestId)
        .map(|h| h.share);
    // A log: the one given, or the one the candidate was trained from when none is.
    let log = match (given.data, given.labels, &p.log) {
        (Some(data), Some(labels), _) => Some((data.display().to_string(), labels.to_owned())),
        (None, _, Some(log)) => Some((p.data_path.clone(), PathBuf::from(&log.labels))),
        _ => None,
    };
    if let Some((source, labels)) = log {
        let model = p
            .log
            .as_ref()
            .map_or(candidate.name.clone(), |l| l.model.clone());
        // Any log may hold the requests a log-trained candidate was fitted on (the same log
        // by another path or glob, a copy, a later one): its hold-out is by request id, so it
        // is applied whichever log is scored, and without one no log is taken as unseen.
        let trained_on_it = p.log.is_some();
        let share = if trained_on_it { by_request } else { None };
        if trained_on_it && share.is_none() && !given.allow_training_rows {
            return Err(RowsError::FittedOnEveryRow {
                path: source,
                version,
            });
        }
        let mut rows = GateRows {
            source: RowSource::Log {
                source: source.clone(),
                labels,
                model,
                share,
            },
            description: String::new(),
        };
        let data = rows.load(candidate)?;
        let n = data.rows();
        rows.description = match share {
            Some(_) => format!(
                "the {n} labelled requests in {source} that version {version} held out (by request id)"
            ),
            None if trained_on_it => format!(
                "the {n} labelled requests in {source}, some of which version {version} may have been fitted on (--allow-training-rows)"
            ),
            None => format!("the {n} labelled requests in {source}"),
        };
        return Ok((rows, data));
    }
    let path = given
        .data
        .map_or_else(|| PathBuf::from(&p.data_path), Path::to_owned);
    let split_by = p.holdout.as_ref().and_then(|h| h.split_by.clone());
    let (data, order) = Dataset::load_ordered(
        &path,
        &features,
        label,
        split_by.as_deref(),
        &read_options(candidate),
    )?;
    let same_file = data.sha256 == p.data_sha256;
    let shown = path.display().to_string();
    if given.data.is_none() && !same_file && p.imported.is_none() {
        return Err(RowsError::Changed {
            path: shown,
            version,
        });
    }
    let held = match (&p.holdout, same_file && p.imported.is_none()) {
        // Another file: none of its rows were fitted on (as far as the record knows).
        (_, false) => None,
        (Some(h), true) => {
            let held_out = match h.method {
                HoldoutMethod::Stratified => {
                    stratified(&data.labels, data.label_names.len(), h.share)
                }
                HoldoutMethod::Newest => newest(&order, h.share),
                HoldoutMethod::RequestId => return Err(RowsError::UnknownHoldout { version }),
            };
            if held_out.len() != h.rows || h.rows_sha256.as_deref() != Some(&digest(&held_out)) {
                return Err(RowsError::Inconsistent {
                    path: shown,
                    version,
                    found: held_out.len(),
                    recorded: h.rows,
                });
            }
            Some(held_out)
        }
        (None, true) if given.allow_training_rows => None,
        (None, true) => {
            return Err(RowsError::FittedOnEveryRow {
                path: shown,
                version,
            })
        }
    };
    let data = match &held {
        Some(rows) => data.subset(rows),
        None => data,
    };
    let n = data.rows();
    let description = match &held {
        Some(_) => format!("the {n} rows of {shown} that version {version} held out"),
        None if same_file && p.imported.is_none() => format!(
            "the {n} rows of {shown}, which version {version} was fitted on (--allow-training-rows)"
        ),
        None if given.data.is_none() => format!("the {n} rows of {shown} it was imported with"),
        None => format!("the {n} rows of {shown}"),
    };
    let rows = GateRows {
        source: RowSource::File {
            path,
            order_column: split_by,
            rows: held,
            sha256: data.sha256.clone(),
        },
        description,
    };
    Ok((rows, data))
}

/// The most distinct values a categorical column of gate rows may hold: rows the model never
/// saw may bring many unseen values, but never unbounded memory.
pub const GATE_MAX_CATEGORIES: usize = 100_000;

/// How `model`'s rows are read: the missing-value cells it was trained with, and its categorical
/// features as text whatever they hold.
pub fn read_options(model: &ModelArtifact) -> ReadOptions {
    let mut options = ReadOptions {
        max_categories: GATE_MAX_CATEGORIES,
        ..ReadOptions::default()
    };
    if let Some(missing) = model
        .provenance
        .hyperparameters
        .as_ref()
        .and_then(|h| h.missing_values.clone())
    {
        options.missing = missing;
    }
    if let Some(columns) = &model.preprocessing {
        options.categorical = model
            .features
            .iter()
            .zip(columns)
            .filter(|(_, c)| c.is_categorical())
            .map(|(f, _)| f.name.clone())
            .collect();
    }
    options
}

impl GateRows {
    /// Whether `model` was fitted on some of these rows (as far as its record tells): it was
    /// trained on the same bytes and held out none of them, or other rows than these.
    pub fn fitted_by(&self, model: &ModelArtifact) -> bool {
        let p = &model.provenance;
        match &self.source {
            RowSource::File { rows, sha256, .. } => {
                p.imported.is_none()
                    && p.data_sha256 == *sha256
                    && match (&p.holdout, rows) {
                        (Some(h), Some(rows)) => h.rows_sha256.as_deref() != Some(&digest(rows)),
                        _ => true,
                    }
            }
            // Held out by request id at a share at least these rows' own: none of them fitted.
            RowSource::Log { share, .. } => {
                let own = p
                    .holdout
                    .as_ref()
                    .filter(|h| h.method == HoldoutMethod::RequestId)
                    .map(|h| h.share);
                p.log.is_some() && !matches!((own, share), (Some(own), Some(s)) if own >= *s)
            }
        }
    }

    /// The same rows, with `model`'s features and label column, read as it reads them (its
    /// missing-value cells; its categorical features as text).
    pub fn load(&self, model: &ModelArtifact) -> Result<Dataset, RowsError> {
        let features: Vec<String> = model.features.iter().map(|f| f.name.clone()).collect();
        let (features, label_column) = (&features, model.label_column.as_str());
        let options = read_options(model);
        match &self.source {
            RowSource::File {
                path,
                order_column,
                rows,
                sha256,
            } => {
                let (data, _) = Dataset::load_ordered(
                    path,
                    features,
                    label_column,
                    order_column.as_deref(),
                    &options,
                )?;
                if data.sha256 != *sha256 {
                    return Err(RowsError::ChangedWhileRead {
                        path: path.display().to_string(),
                    });
                }
                Ok(match rows {
                    Some(rows) => data.subset(rows),
                    None => data,
                })
            }
            RowSource::Log {
                source,
                labels,
                model,
                share,
            } => {
                let (data, found) = Dataset::from_inference_log(
                    source,
                    model,
                    labels,
                    features,
                    label_column,
                    &options,
                )?;
                Ok(match share {
                    Some(share) => data.subset(&by_request(&found.request_keys, *share)),
                    None => data,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stratified_hold_out_takes_the_share_of_every_class_and_is_stable() {
        // 100 rows of class 0, 50 of class 1, 1 of class 2, interleaved.
        let labels: Vec<u32> = (0..151)
            .map(|i| if i == 150 { 2 } else { u32::from(i % 3 == 0) })
            .collect();
        let held = stratified(&labels, 3, 0.2);
        let of = |c: u32| held.iter().filter(|&&r| labels[r] == c).count();
        assert_eq!(
            (of(0), of(1), of(2)),
            (20, 10, 0),
            "a lone row stays in the fit"
        );
        assert!(held.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            held,
            stratified(&labels, 3, 0.2),
            "the same rows every time"
        );
        // Spread through the file, not its first or last rows.
        assert!(held[0] < 30 && *held.last().unwrap() > 120, "{held:?}");
        assert_eq!(
            held.len() + crate::data::complement_rows(151, &held).len(),
            151
        );
    }

    #[test]
    fn the_row_hash_is_splitmix64() {
        // Reference outputs of splitmix64 seeded with 0 (Vigna's code): the first two draws.
        assert_eq!(mix(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(mix(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn newest_holds_out_the_end_of_the_order_numeric_or_text() {
        let keys: Vec<String> = ["3", "10", "2", "1", "20"].map(String::from).to_vec();
        // Numerically 20 and 10 are newest (as text "3" would be).
        assert_eq!(newest(&keys, 0.4), vec![1, 4]);
        let dates: Vec<String> = ["2026-03-01", "2026-01-15", "2026-02-01", "2025-12-31"]
            .map(String::from)
            .to_vec();
        assert_eq!(newest(&dates, 0.25), vec![0]);
        assert_eq!(newest(&dates, 0.99), vec![0, 1, 2], "one row always fits");
    }

    #[test]
    fn a_request_is_held_out_by_its_id_alone() {
        let ids: Vec<u64> = (0..10_000)
            .map(|i| crate::data::request_key(&format!("req-{i}")))
            .collect();
        let held = by_request(&ids, 0.2);
        assert!((1_800..2_200).contains(&held.len()), "{}", held.len());
        // The same ids in another order (a log that grew) are held out the same.
        let shifted: Vec<u64> = ids[5_000..].to_vec();
        let again = by_request(&shifted, 0.2);
        let expected: Vec<usize> = held
            .iter()
            .filter(|&&r| r >= 5_000)
            .map(|r| r - 5_000)
            .collect();
        assert_eq!(again, expected);
    }

    #[test]
    fn bad_shares_are_refused_by_flag() {
        assert!(HoldoutSpec::new(1.0, None).is_err());
        assert!(HoldoutSpec::new(-0.1, None).is_err());
        assert!(HoldoutSpec::new(f64::NAN, None).is_err());
        let msg = HoldoutSpec::new(0.0, Some("ts".into()))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("--split-by") && msg.contains("--holdout"),
            "{msg}"
        );
        let spec = HoldoutSpec::new(0.2, None).unwrap();
        let msg = check_not_empty(&spec, &[], 2).unwrap_err().to_string();
        assert!(msg.contains("--holdout 0"), "{msg}");
    }

    #[test]
    fn a_log_trained_candidate_is_filtered_by_request_id_whatever_log_path_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir.path().join("iris/2026-12-01");
        std::fs::create_dir_all(&day).unwrap();
        let mut lines = String::new();
        let mut labels = String::from("request_id,species\n");
        for i in 0..400 {
            let w = f64::from(i % 25) / 10.0;
            lines.push_str(&format!(
                "{{\"ts\":\"2026-12-01T00:00:00.000Z\",\"model\":\"iris\",\"version\":\"1\",\"request_id\":\"r{i}\",\"route\":\"/predict\",\"status\":200,\"features\":{{\"petal_width\":{w}}}}}\n"
            ));
            let class = if w > 1.6 { "virginica" } else { "setosa" };
            labels.push_str(&format!("r{i},{class}\n"));
        }
        std::fs::write(day.join("pod-0.jsonl"), lines).unwrap();
        let labels_file = dir.path().join("labels.csv");
        std::fs::write(&labels_file, labels).unwrap();
        let mut a = crate::model::tests::binary_artifact();
        a.provenance.data_path = dir.path().display().to_string();
        a.provenance.log = Some(crate::model::LogTraining {
            labels: labels_file.display().to_string(),
            model: "iris".into(),
        });
        a.provenance.holdout = Some(Holdout {
            share: 0.2,
            method: HoldoutMethod::RequestId,
            split_by: None,
            rows: 80,
            rows_sha256: None,
        });
        let own = gate_rows(&a, &GateData::default()).unwrap().1.rows();
        assert!((40..=120).contains(&own), "{own}");
        // The same log by a glob: the same held-out requests, not all 400.
        let glob = format!("{}/iris/*/*.jsonl", dir.path().display());
        let given = GateData {
            data: Some(Path::new(&glob)),
            labels: Some(&labels_file),
            allow_training_rows: false,
        };
        let (rows, by_glob) = gate_rows(&a, &given).unwrap();
        assert_eq!(by_glob.rows(), own);
        assert!(!rows.fitted_by(&a), "its own hold-out was not fitted on");
        // Without a hold-out, no log counts as unseen.
        a.provenance.holdout = None;
        let err = gate_rows(&a, &given).unwrap_err();
        assert!(matches!(err, RowsError::FittedOnEveryRow { .. }), "{err}");
    }

    #[test]
    fn the_gate_finds_the_recorded_hold_out_again_or_refuses() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/iris.csv");
        let data = Dataset::load(&path, &["petal_width".to_owned()], "species").unwrap();
        let mut a = crate::model::tests::binary_artifact();
        a.provenance.data_path = path.display().to_string();
        a.provenance.data_sha256 = data.sha256.clone();
        let spec = HoldoutSpec::new(0.2, None).unwrap();
        let split = split_table(&spec, &data, &[]).unwrap().unwrap();
        a.provenance.holdout = Some(split.record.clone());
        let (rows, held) = gate_rows(&a, &GateData::default()).unwrap();
        assert_eq!(held.rows(), 30);
        assert_eq!(held.x, data.subset(&split.held_out).x);
        assert!(!rows.fitted_by(&crate::model::tests::binary_artifact()));

        // A forged or missing digest: refused, never scored on whatever rows came out.
        for forged in [Some(digest(&[1, 2, 3])), None] {
            a.provenance.holdout.as_mut().unwrap().rows_sha256 = forged;
            let err = gate_rows(&a, &GateData::default()).unwrap_err();
            assert!(
                matches!(err, RowsError::Inconsistent { found: 30, .. }),
                "{err}"
            );
        }
        // No hold-out: its own training rows only when the operator says so.
        a.provenance.holdout = None;
        let err = gate_rows(&a, &GateData::default()).unwrap_err();
        assert!(matches!(err, RowsError::FittedOnEveryRow { .. }), "{err}");
        let allowed = GateData {
            allow_training_rows: true,
            ..GateData::default()
        };
        let (rows, all) = gate_rows(&a, &allowed).unwrap();
        assert_eq!(all.rows(), 150);
        assert!(rows
            .description
            .contains("fitted on (--allow-training-rows)"));
        // Production trained on the same bytes with no hold-out was fitted on these rows.
        assert!(rows.fitted_by(&a));
    }
}
