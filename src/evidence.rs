//! Shadow evidence: what servers saw when they scored live traffic with a candidate beside
//! production, written where the pipeline's `limen validate` can read it.
//!
//! ```text
//! <evidence dir>/<model>/<candidate version>/<instance>.json
//! ```
//!
//! Each server instance owns its file and replaces it atomically (temp file, fsync, rename) with
//! its running totals; `limen validate --evidence DIR` sums every instance's file for the
//! candidate. The folder is separate from the model store, which stays read-only for servers.
//! Files written by other hosts are untrusted: read with a size cap, non-blocking, no links, and a
//! file that is not valid evidence is skipped and counted, not trusted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::{self, ModelName, StoreError, VersionId};

/// Largest evidence file read; a real one is a few hundred bytes.
const MAX_EVIDENCE_BYTES: u64 = 64 * 1024;
/// Most instance files summed for one candidate.
const MAX_INSTANCES: usize = 10_000;

/// One server instance's running comparison of a candidate with production.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowTotals {
    pub model: String,
    /// The candidate version that was scored in the shadow.
    pub candidate: u64,
    /// The instance that wrote the file (`--instance`, default hostname-pid).
    pub instance: String,
    /// Instances (rows) scored by both versions.
    pub samples: u64,
    /// Of those, how many got the same label from both.
    pub label_agreements: u64,
    /// Sum and maximum of |Δp| of the top class (binary models: of the positive class).
    pub sum_abs_diff: f64,
    pub max_abs_diff: f64,
    /// Rows the candidate could not score (its arithmetic overflowed).
    #[serde(default)]
    pub candidate_errors: u64,
    /// RFC 3339 times of the first and the last sample.
    pub first_at: Option<String>,
    pub last_at: Option<String>,
}

impl ShadowTotals {
    pub fn label_agreement(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.label_agreements as f64 / self.samples as f64)
    }

    pub fn mean_abs_diff(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.sum_abs_diff / self.samples as f64)
    }
}

/// Every instance's evidence for one candidate, summed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Evidence {
    pub totals: ShadowTotals,
    /// Instances whose files were summed.
    pub instances: usize,
    /// Files that were not valid evidence for this candidate (skipped).
    pub unreadable: usize,
}

/// The folder of one candidate's evidence.
pub fn candidate_dir(root: &Path, model: &ModelName, candidate: VersionId) -> PathBuf {
    root.join(model.as_str()).join(candidate.to_string())
}

/// Writes one instance's totals atomically, creating the folders it needs. `instance` must be a
/// single path component (see [`instance_name`]).
pub fn write(
    root: &Path,
    model: &ModelName,
    candidate: VersionId,
    instance: &str,
    totals: &ShadowTotals,
) -> Result<(), StoreError> {
    let dir = candidate_dir(root, model, candidate);
    fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
        action: "create",
        path: dir.clone(),
        source,
    })?;
    let bytes = serde_json::to_vec_pretty(totals)
        .expect("evidence totals are strings and numbers, which always serialize");
    store::replace_atomically(&dir, &dir.join(format!("{instance}.json")), &bytes, ".tmp-")
}

/// Sums every instance's evidence for `model`'s `candidate`. A missing folder is no evidence.
pub fn read(root: &Path, model: &ModelName, candidate: VersionId) -> Result<Evidence, StoreError> {
    let dir = candidate_dir(root, model, candidate);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Evidence::default()),
        Err(source) => {
            return Err(StoreError::Io {
                action: "list",
                path: dir,
                source,
            })
        }
    };
    let mut evidence = Evidence {
        totals: ShadowTotals {
            model: model.to_string(),
            candidate: candidate.get(),
            instance: "all".to_owned(),
            ..ShadowTotals::default()
        },
        ..Evidence::default()
    };
    for entry in entries.flatten().take(MAX_INSTANCES) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let parsed = store::read_untrusted(&entry.path(), MAX_EVIDENCE_BYTES, true)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ShadowTotals>(&bytes).ok())
            .filter(|t| {
                t.model == model.as_str()
                    && t.candidate == candidate.get()
                    && t.label_agreements <= t.samples
                    && t.sum_abs_diff.is_finite()
                    && t.max_abs_diff.is_finite()
            });
        let Some(t) = parsed else {
            evidence.unreadable += 1;
            continue;
        };
        let sum = &mut evidence.totals;
        sum.samples = sum.samples.saturating_add(t.samples);
        sum.label_agreements = sum.label_agreements.saturating_add(t.label_agreements);
        sum.sum_abs_diff += t.sum_abs_diff;
        sum.max_abs_diff = sum.max_abs_diff.max(t.max_abs_diff);
        sum.candidate_errors = sum.candidate_errors.saturating_add(t.candidate_errors);
        sum.first_at = earliest(sum.first_at.take(), t.first_at);
        sum.last_at = latest(sum.last_at.take(), t.last_at);
        evidence.instances += 1;
    }
    Ok(evidence)
}

fn earliest(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn latest(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `raw` as a file name for evidence: the characters of a model name plus upper case, anything
/// else replaced by `_`, at most 128 characters; `hostname-pid` when empty.
pub fn instance_name(raw: Option<&str>) -> String {
    let raw = match raw {
        Some(r) if !r.trim().is_empty() => r.trim().to_owned(),
        _ => format!(
            "{}-{}",
            gethostname::gethostname().to_string_lossy(),
            std::process::id()
        ),
    };
    let cleaned: String = raw
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Never a hidden or relative name.
    match cleaned.trim_start_matches('.') {
        "" => "instance".to_owned(),
        rest => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(instance: &str, samples: u64, agreements: u64) -> ShadowTotals {
        ShadowTotals {
            model: "iris".into(),
            candidate: 7,
            instance: instance.into(),
            samples,
            label_agreements: agreements,
            sum_abs_diff: samples as f64 * 0.1,
            max_abs_diff: 0.3,
            candidate_errors: 0,
            first_at: Some(format!("2026-11-28T10:00:0{samples}Z")),
            last_at: Some(format!("2026-11-28T11:00:0{samples}Z")),
        }
    }

    #[test]
    fn every_instance_is_summed_and_junk_is_counted_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let model: ModelName = "iris".parse().unwrap();
        let v = VersionId::try_from(7).unwrap();
        assert_eq!(read(dir.path(), &model, v).unwrap(), Evidence::default());
        write(dir.path(), &model, v, "a", &totals("a", 4, 3)).unwrap();
        write(dir.path(), &model, v, "b", &totals("b", 6, 6)).unwrap();
        let folder = candidate_dir(dir.path(), &model, v);
        std::fs::write(folder.join("junk.json"), b"{\"samples\": ").unwrap();
        let mut wrong = totals("c", 100, 0);
        wrong.candidate = 8;
        std::fs::write(folder.join("c.json"), serde_json::to_vec(&wrong).unwrap()).unwrap();
        std::fs::write(folder.join(".tmp-x"), b"partial").unwrap();
        let e = read(dir.path(), &model, v).unwrap();
        assert_eq!((e.instances, e.unreadable), (2, 2));
        assert_eq!((e.totals.samples, e.totals.label_agreements), (10, 9));
        assert_eq!(e.totals.label_agreement(), Some(0.9));
        assert!((e.totals.mean_abs_diff().unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(e.totals.first_at.as_deref(), Some("2026-11-28T10:00:04Z"));
        assert_eq!(e.totals.last_at.as_deref(), Some("2026-11-28T11:00:06Z"));
        // Rewriting replaces; nothing is left half-written.
        write(dir.path(), &model, v, "a", &totals("a", 5, 5)).unwrap();
        assert_eq!(read(dir.path(), &model, v).unwrap().totals.samples, 11);
    }

    #[test]
    fn instance_names_are_single_safe_components() {
        assert_eq!(instance_name(Some("pod-7f9c/..")), "pod-7f9c_..");
        assert_eq!(instance_name(Some("../../etc")), "_.._etc");
        assert_eq!(instance_name(Some("...")), "instance");
        assert!(instance_name(None).contains('-'));
    }
}
