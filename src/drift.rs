//! Drift: how far the inputs production saw (from the inference log) have moved from the data
//! its model was trained on (the reference histograms in `model.json`), per feature, as the
//! population stability index (PSI) and the share outside the training range.
//!
//! The log folder is written by servers, so it is read defensively: line by line with a cap on a
//! line's length, and a line that is not a log line of this model's production version is
//! skipped (counted when it cannot be read at all).

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, LoadError};
use crate::data::for_each_line;
use crate::model::DRIFT_BINS;
use crate::store::{rfc3339_millis, ModelName, Pointer, StoreError, VersionId};

/// What `limen drift` is asked.
#[derive(Debug, Clone)]
pub struct DriftConfig {
    pub model: ModelName,
    /// The inference log folder (`limen serve --inference-log`).
    pub log: PathBuf,
    /// How far back to look.
    pub since: Duration,
    /// The largest PSI allowed; any feature above it fails the command.
    pub max_psi: Option<f64>,
    /// The fewest logged instances a verdict is given on: below it, PSI over a few requests
    /// says nothing (every empty bin reads as a shift) and the command refuses.
    pub min_samples: u64,
}

impl DriftConfig {
    /// Default `min_samples`: as many as the servers' live PSI waits for.
    pub const DEFAULT_MIN_SAMPLES: u64 = 200;
}

/// Why drift could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("model {0:?} has no production version to compare with")]
    NoProduction(String),
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error("cannot load {name}/{version}")]
    Load {
        name: String,
        version: VersionId,
        #[source]
        source: LoadError,
    },
    #[error("no data: {log} holds no logged instance of {name}/{version} since {since} ({files} log file(s) read{missing}); check --log and --since, and that the servers run with --inference-log {log}")]
    NoData {
        name: String,
        version: VersionId,
        log: String,
        since: String,
        files: usize,
        missing: &'static str,
    },
    #[error("too little data: {log} holds {found} logged instance(s) of {name}/{version} since {since}, fewer than --min-samples {min}; PSI over so few says nothing: wait for more traffic, widen --since, or lower --min-samples")]
    TooFew {
        name: String,
        version: VersionId,
        log: String,
        since: String,
        found: u64,
        min: u64,
    },
    #[error("{name}/{version} has no drift reference (it was trained by a limen that did not record one); retrain it to measure drift")]
    NoReference { name: String, version: VersionId },
}

/// One feature's drift.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureDrift {
    pub name: String,
    /// `None` without logged values.
    pub psi: Option<f64>,
    /// The share of logged values outside the training `[min, max]`.
    pub out_of_range: Option<f64>,
}

/// What `limen drift` prints.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    pub model: String,
    pub version: VersionId,
    /// Logged instances of that version in the window.
    pub instances: u64,
    pub files: usize,
    /// Lines that could not be read as log lines (skipped).
    pub unreadable_lines: u64,
    pub since: String,
    pub features: Vec<FeatureDrift>,
    pub max_psi: Option<f64>,
    /// Features whose PSI is above `max_psi`.
    pub exceeded: Vec<String>,
}

/// The fields of a log line drift needs.
#[derive(Deserialize)]
struct LogLine {
    ts: String,
    model: String,
    version: String,
    status: u16,
    #[serde(default)]
    features: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Measures the drift of `cfg.model`'s production version over the log of the last `cfg.since`.
pub fn measure(catalog: &Catalog, cfg: &DriftConfig) -> Result<DriftReport, DriftError> {
    let name = &cfg.model;
    catalog.require_model(name)?;
    let version = catalog
        .pointer(name, Pointer::Production)?
        .ok_or_else(|| DriftError::NoProduction(name.to_string()))?;
    let model = catalog
        .load_verified(name, version)
        .map_err(|source| DriftError::Load {
            name: name.to_string(),
            version,
            source,
        })?;
    let features = &model.artifact().features;
    if !model.has_drift_reference() {
        return Err(DriftError::NoReference {
            name: name.to_string(),
            version,
        });
    }
    let cutoff = SystemTime::now()
        .checked_sub(cfg.since)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let cutoff_ts = rfc3339_millis(cutoff);
    let mut counts: Vec<Vec<u64>> = (0..features.len())
        .map(|i| vec![0u64; model.drift_bins(i)])
        .collect();
    let mut report = DriftReport {
        model: name.to_string(),
        version,
        instances: 0,
        files: 0,
        unreadable_lines: 0,
        since: cutoff_ts.clone(),
        features: Vec::new(),
        max_psi: cfg.max_psi,
        exceeded: Vec::new(),
    };
    let version_text = version.to_string();
    // An inference log in S3: the model's day folders from the cutoff's day on, staged.
    let root = cfg.log.to_string_lossy();
    let staged;
    let files = if crate::remote::is_remote(&root) {
        let first_day = rfc3339_millis(cutoff).get(..10).unwrap_or("").to_owned();
        let prefix = format!("{}/{}/", root.trim_end_matches('/'), name.as_str());
        // Keys under the prefix: `<day>/<file>.jsonl`.
        staged = crate::remote::stage_matching(&prefix, &|key: &str| {
            key.split_once('/').is_some_and(|(day, file)| {
                is_day(day) && day >= first_day.as_str() && file.ends_with(".jsonl")
            })
        })?;
        staged.files.clone()
    } else {
        log_files(&cfg.log, name, cutoff)
    };
    for file in files {
        report.files += 1;
        let Ok(opened) = File::open(&file) else {
            continue;
        };
        for_each_line(opened, |line| {
            let Ok(line) = serde_json::from_slice::<LogLine>(line) else {
                report.unreadable_lines += 1;
                return;
            };
            // RFC 3339 UTC timestamps of one format compare as strings.
            if line.model != name.as_str()
                || line.version != version_text
                || line.status != 200
                || line.ts < cutoff_ts
            {
                return;
            }
            let Some(values) = line.features else { return };
            let row: Option<Vec<f64>> = features
                .iter()
                .enumerate()
                .map(|(i, f)| model.value_of(i, values.get(&f.name)?))
                .collect();
            let Some(row) = row else {
                report.unreadable_lines += 1;
                return;
            };
            for (i, (count, value)) in counts.iter_mut().zip(&row).enumerate() {
                if let Some(bin) = model.drift_bin(i, *value) {
                    count[bin] += 1;
                }
            }
            report.instances += 1;
        });
    }
    if report.instances == 0 {
        // No data is not "no drift": a gate on drift must not pass on nothing.
        return Err(DriftError::NoData {
            name: name.to_string(),
            version,
            log: cfg.log.display().to_string(),
            since: cutoff_ts,
            files: report.files,
            missing: if cfg.log.is_dir() {
                ""
            } else {
                "; the folder does not exist"
            },
        });
    }
    if report.instances < cfg.min_samples {
        return Err(DriftError::TooFew {
            name: name.to_string(),
            version,
            log: cfg.log.display().to_string(),
            since: cutoff_ts,
            found: report.instances,
            min: cfg.min_samples,
        });
    }
    report.features = features
        .iter()
        .zip(&counts)
        .enumerate()
        .map(|(i, (feature, count))| {
            let total: u64 = count.iter().sum();
            // Out of range: a number outside its training range (the outer bins); a
            // category the model never saw (the last bin).
            let outside = match model.preprocessing().and_then(|c| c.get(i)) {
                Some(c) if c.is_categorical() => count.last().copied().unwrap_or(0),
                _ => {
                    count.first().copied().unwrap_or(0)
                        + count.get(DRIFT_BINS - 1).copied().unwrap_or(0)
                }
            };
            FeatureDrift {
                name: feature.name.clone(),
                psi: model.drift_psi(i, count),
                out_of_range: (total > 0).then(|| outside as f64 / total as f64),
            }
        })
        .collect();
    if let Some(max) = cfg.max_psi {
        report.exceeded = report
            .features
            .iter()
            .filter(|f| f.psi.is_some_and(|p| p > max))
            .map(|f| f.name.clone())
            .collect();
    }
    Ok(report)
}

/// Whether `name` is a log day folder's name (`YYYY-MM-DD`).
fn is_day(name: &str) -> bool {
    name.len() == 10 && name.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

/// The `.jsonl` files of `model` in the day folders from `cutoff`'s day to today (UTC).
fn log_files(root: &Path, model: &ModelName, cutoff: SystemTime) -> Vec<PathBuf> {
    let first_day = rfc3339_millis(cutoff);
    let first_day = first_day.get(..10).unwrap_or("");
    let mut files = Vec::new();
    let Ok(days) = std::fs::read_dir(root.join(model.as_str())) else {
        return files;
    };
    for day in days.flatten() {
        let day_name = day.file_name().to_string_lossy().into_owned();
        if !is_day(&day_name)
            || day_name.as_str() < first_day
            || !day.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        for file in std::fs::read_dir(day.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let is_log = file.file_name().to_string_lossy().ends_with(".jsonl")
                && file.file_type().is_ok_and(|t| t.is_file());
            if is_log {
                files.push(file.path());
            }
        }
    }
    files.sort();
    files
}

impl fmt::Display for DriftReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "drift of {}/{} since {}: {} logged instances in {} file(s){}",
            self.model,
            self.version,
            self.since,
            self.instances,
            self.files,
            if self.unreadable_lines > 0 {
                format!(", {} unreadable line(s) skipped", self.unreadable_lines)
            } else {
                String::new()
            }
        )?;
        writeln!(f, "  {:<32} {:>8} {:>13}", "FEATURE", "PSI", "OUT OF RANGE")?;
        for d in &self.features {
            let psi = d.psi.map_or("-".to_owned(), |p| format!("{p:.4}"));
            let out = d
                .out_of_range
                .map_or("-".to_owned(), |o| format!("{:.2}%", 100.0 * o));
            let mark = if self.exceeded.contains(&d.name) {
                "  over --max-psi"
            } else {
                ""
            };
            writeln!(f, "  {:<32} {psi:>8} {out:>13}{mark}", d.name)?;
        }
        if let Some(max) = self.max_psi {
            if self.exceeded.is_empty() {
                writeln!(f, "every feature's PSI is at most {max}")?;
            } else {
                writeln!(
                    f,
                    "PSI above {max} for {}: the inputs have moved; retrain on recent data",
                    self.exceeded.join(", ")
                )?;
            }
        }
        Ok(())
    }
}
