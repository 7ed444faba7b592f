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
/// Most instance files read for one candidate: more is refused, not cut short (a cut would let
/// planted files push the real evidence out of the scan).
pub const MAX_INSTANCES: usize = 10_000;
/// The largest count a file may claim: 2^53 rows (what an f64 counts exactly; a server scoring a
/// million rows a second for a century stays below it). Larger is a forged or corrupt file.
const MAX_COUNT: u64 = 1 << 53;
/// How many refused files a report names (it counts them all).
const NAMED_REFUSALS: usize = 10;

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
    /// Evidence files that were refused: unreadable, not evidence for this candidate, written
    /// under another instance's name, inconsistent, or overflowing the sum. Any refusal fails
    /// the gate: what a refused file said is unknown.
    pub refused: usize,
    /// The first few refused files, each with why.
    pub refusals: Vec<String>,
    /// More than [`MAX_INSTANCES`] evidence files: none was trusted.
    pub too_many: bool,
}

impl Evidence {
    /// Whether every evidence file was read and summed (nothing refused, nothing left out).
    pub fn is_whole(&self) -> bool {
        self.refused == 0 && !self.too_many
    }

    fn refuse(&mut self, file: &str, why: &str) {
        self.refused += 1;
        if self.refusals.len() < NAMED_REFUSALS {
            self.refusals.push(format!("{file}: {why}"));
        }
    }
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
///
/// Only names of evidence files (`<instance>.json`, not hidden) are read and count toward
/// [`MAX_INSTANCES`]; anything else in the folder (a writer's temporary file, say) is ignored.
/// A file is summed only if it is consistent on its own (see [`consistency`]), names the file's
/// own instance, and its counts add without overflow; otherwise it is refused and counted.
pub fn read(root: &Path, model: &ModelName, candidate: VersionId) -> Result<Evidence, StoreError> {
    let dir = candidate_dir(root, model, candidate);
    if !dir.exists() {
        return Ok(Evidence::default());
    }
    let Some(files) = instance_files(&dir, MAX_INSTANCES)? else {
        return Ok(Evidence {
            too_many: true,
            ..Evidence::default()
        });
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
    for instance in files {
        let file = format!("{instance}.json");
        let parsed = store::read_untrusted(&dir.join(&file), MAX_EVIDENCE_BYTES, true)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<ShadowTotals>(&bytes)
                    .map_err(|e| format!("not shadow evidence ({e})"))
            })
            .and_then(|t| {
                consistency(&t, model, candidate, &instance)?;
                Ok(t)
            });
        let t = match parsed {
            Ok(t) => t,
            Err(why) => {
                evidence.refuse(&file, &why);
                continue;
            }
        };
        let sum = &evidence.totals;
        let (Some(samples), Some(agreements), Some(errors)) = (
            sum.samples.checked_add(t.samples),
            sum.label_agreements.checked_add(t.label_agreements),
            sum.candidate_errors.checked_add(t.candidate_errors),
        ) else {
            evidence.refuse(&file, "its counts overflow the sum of the other files");
            continue;
        };
        let sum = &mut evidence.totals;
        sum.samples = samples;
        sum.label_agreements = agreements;
        sum.candidate_errors = errors;
        sum.sum_abs_diff += t.sum_abs_diff;
        sum.max_abs_diff = sum.max_abs_diff.max(t.max_abs_diff);
        sum.first_at = earliest(sum.first_at.take(), t.first_at);
        sum.last_at = latest(sum.last_at.take(), t.last_at);
        evidence.instances += 1;
    }
    Ok(evidence)
}

/// The instances of the `<instance>.json` files in `dir` (names [`instance_name`] makes; any
/// other entry is skipped), sorted: none when `dir` does not exist, `None` when there are more
/// than `max` (then none is listed further). What evidence and heartbeat folders hold.
pub fn instance_files(dir: &Path, max: usize) -> Result<Option<Vec<String>>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
        Err(source) => {
            return Err(StoreError::Io {
                action: "list",
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::Io {
            action: "list",
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        let Some(instance) = name.to_str().and_then(evidence_instance) else {
            continue;
        };
        if files.len() == max {
            return Ok(None);
        }
        files.push(instance.to_owned());
    }
    files.sort();
    Ok(Some(files))
}

/// The instance an evidence file name belongs to: `<instance>.json` where `<instance>` is what
/// [`instance_name`] makes; `None` for any other name.
fn evidence_instance(file: &str) -> Option<&str> {
    let instance = file.strip_suffix(".json")?;
    (instance_name(Some(instance)) == instance && !instance.starts_with('.')).then_some(instance)
}

/// Why `t`, read from `<instance>.json`, cannot be true evidence for `model`'s `candidate`, if
/// it cannot: another model or version, another instance's totals (a copied file), counts a
/// server could not have reached, more agreements than samples, differences outside [0, 1] or
/// not adding up, sample times missing or out of order.
pub fn consistency(
    t: &ShadowTotals,
    model: &ModelName,
    candidate: VersionId,
    instance: &str,
) -> Result<(), String> {
    if t.model != model.as_str() || t.candidate != candidate.get() {
        return Err(format!(
            "written for {}/{}, not {model}/{candidate}",
            t.model, t.candidate
        ));
    }
    if t.instance != instance {
        return Err(format!(
            "holds the totals of instance {:?}, not of {instance:?} (a copied file?)",
            t.instance
        ));
    }
    if t.samples > MAX_COUNT || t.candidate_errors > MAX_COUNT {
        return Err(format!(
            "claims more than 2^53 rows ({} samples, {} candidate errors)",
            t.samples, t.candidate_errors
        ));
    }
    if t.label_agreements > t.samples {
        return Err(format!(
            "{} label agreements in {} samples",
            t.label_agreements, t.samples
        ));
    }
    let diffs_fit = t.sum_abs_diff.is_finite()
        && t.max_abs_diff.is_finite()
        && (0.0..=1.0).contains(&t.max_abs_diff)
        && t.sum_abs_diff >= 0.0
        // |Δp| ≤ 1 per sample, with room for rounding in a long sum.
        && t.sum_abs_diff <= t.samples as f64 * (1.0 + 1e-9)
        && (t.samples > 0 || (t.sum_abs_diff == 0.0 && t.max_abs_diff == 0.0))
        && t.max_abs_diff <= t.sum_abs_diff * (1.0 + 1e-9) + 1e-12;
    if !diffs_fit {
        return Err(format!(
            "|Δp| sum {} and maximum {} cannot come from {} samples",
            t.sum_abs_diff, t.max_abs_diff, t.samples
        ));
    }
    let scored = t.samples + t.candidate_errors;
    let times_fit = match (&t.first_at, &t.last_at) {
        (Some(first), Some(last)) => first <= last,
        (None, None) => scored == 0,
        _ => false,
    };
    if !times_fit {
        return Err("its first and last sample times are missing or out of order".to_owned());
    }
    Ok(())
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

    fn iris() -> (ModelName, VersionId) {
        ("iris".parse().unwrap(), VersionId::try_from(7).unwrap())
    }

    #[test]
    fn every_instance_is_summed_and_temporary_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (model, v) = iris();
        assert_eq!(read(dir.path(), &model, v).unwrap(), Evidence::default());
        write(dir.path(), &model, v, "a", &totals("a", 4, 3)).unwrap();
        write(dir.path(), &model, v, "b", &totals("b", 6, 6)).unwrap();
        let folder = candidate_dir(dir.path(), &model, v);
        std::fs::write(folder.join(".tmp-x"), b"partial").unwrap();
        std::fs::write(folder.join("notes.txt"), b"not evidence").unwrap();
        let e = read(dir.path(), &model, v).unwrap();
        assert!(e.is_whole(), "{e:?}");
        assert_eq!((e.instances, e.refused), (2, 0));
        assert_eq!((e.totals.samples, e.totals.label_agreements), (10, 9));
        assert_eq!(e.totals.label_agreement(), Some(0.9));
        assert!((e.totals.mean_abs_diff().unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(e.totals.first_at.as_deref(), Some("2026-11-28T10:00:04Z"));
        assert_eq!(e.totals.last_at.as_deref(), Some("2026-11-28T11:00:06Z"));
        // Rewriting replaces; nothing is left half-written.
        write(dir.path(), &model, v, "a", &totals("a", 5, 5)).unwrap();
        assert_eq!(read(dir.path(), &model, v).unwrap().totals.samples, 11);
    }

    /// Writes `t` as `<file>.json` in the candidate's folder, bypassing [`write`].
    fn plant(root: &Path, file: &str, t: &ShadowTotals) {
        let (model, v) = iris();
        let folder = candidate_dir(root, &model, v);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join(format!("{file}.json")),
            serde_json::to_vec(t).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn forged_copied_and_inconsistent_files_are_refused_never_summed() {
        let huge = |t: &mut ShadowTotals| {
            t.samples = u64::MAX;
            t.label_agreements = u64::MAX;
        };
        type Forge = Box<dyn Fn(&mut ShadowTotals)>;
        let cases: Vec<(&str, Forge)> = vec![
            ("u64::MAX counts", Box::new(huge)),
            (
                "more agreements than samples",
                Box::new(|t| t.label_agreements = t.samples + 1),
            ),
            ("another candidate", Box::new(|t| t.candidate = 8)),
            ("another model", Box::new(|t| t.model = "wine".into())),
            (
                "another instance's totals",
                Box::new(|t| t.instance = "a".into()),
            ),
            ("a difference above 1", Box::new(|t| t.max_abs_diff = 1.5)),
            ("a negative sum", Box::new(|t| t.sum_abs_diff = -1.0)),
            (
                "a sum no samples could make",
                Box::new(|t| t.sum_abs_diff = t.samples as f64 + 1.0),
            ),
            (
                "a maximum above the sum",
                Box::new(|t| {
                    t.sum_abs_diff = 0.0;
                    t.max_abs_diff = 0.5
                }),
            ),
            ("no sample times", Box::new(|t| t.first_at = None)),
            (
                "times out of order",
                Box::new(|t| std::mem::swap(&mut t.first_at, &mut t.last_at)),
            ),
            (
                "errors beyond 2^53",
                Box::new(|t| t.candidate_errors = (1 << 53) + 1),
            ),
        ];
        for (what, forge) in cases {
            let dir = tempfile::tempdir().unwrap();
            let (model, v) = iris();
            write(dir.path(), &model, v, "a", &totals("a", 4, 3)).unwrap();
            let mut forged = totals("b", 6, 6);
            forge(&mut forged);
            plant(dir.path(), "b", &forged);
            let e = read(dir.path(), &model, v).unwrap();
            assert!(!e.is_whole(), "{what}: {e:?}");
            assert_eq!((e.instances, e.refused), (1, 1), "{what}");
            assert_eq!(e.totals.samples, 4, "{what}: a refused file adds nothing");
            assert!(
                e.refusals[0].starts_with("b.json: "),
                "{what}: {:?}",
                e.refusals
            );
        }
        // Junk that is not JSON evidence at all.
        let dir = tempfile::tempdir().unwrap();
        let (model, v) = iris();
        let folder = candidate_dir(dir.path(), &model, v);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("junk.json"), b"{\"samples\": ").unwrap();
        let e = read(dir.path(), &model, v).unwrap();
        assert_eq!((e.instances, e.refused), (0, 1));
    }

    #[test]
    fn counts_that_overflow_together_are_refused_not_saturated() {
        let dir = tempfile::tempdir().unwrap();
        let (model, v) = iris();
        // Each at the largest plausible count: 2^53 each, fine; the sum of 2^11 of them is not.
        let files = 2050;
        for i in 0..files {
            let name = format!("pod-{i:04}");
            let mut t = totals(&name, 1, 1);
            t.samples = 1 << 53;
            t.label_agreements = 1 << 53;
            t.sum_abs_diff = 0.0;
            t.max_abs_diff = 0.0;
            plant(dir.path(), &name, &t);
        }
        let e = read(dir.path(), &model, v).unwrap();
        assert_eq!(e.instances + e.refused, files);
        assert!(e.refused > 0 && !e.is_whole(), "{e:?}");
        assert!(e.refusals[0].contains("overflow"), "{:?}", e.refusals);
    }

    #[test]
    fn temporary_files_cannot_push_real_evidence_out_of_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let (model, v) = iris();
        let folder = candidate_dir(dir.path(), &model, v);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..(MAX_INSTANCES + 50) {
            std::fs::write(folder.join(format!(".tmp-{i}")), b"").unwrap();
        }
        let mut bad = totals("a", 10, 0);
        bad.sum_abs_diff = 9.0;
        write(dir.path(), &model, v, "a", &bad).unwrap();
        let e = read(dir.path(), &model, v).unwrap();
        assert!(e.is_whole());
        assert_eq!(
            (e.instances, e.totals.samples, e.totals.label_agreements),
            (1, 10, 0)
        );

        // More evidence files than the cap: none is trusted, and the reader says so.
        for i in 0..MAX_INSTANCES {
            let name = format!("pod-{i:05}");
            plant(dir.path(), &name, &totals(&name, 1, 1));
        }
        let e = read(dir.path(), &model, v).unwrap();
        assert!(e.too_many && !e.is_whole() && e.instances == 0, "{e:?}");
    }

    #[test]
    fn instance_names_are_single_safe_components() {
        assert_eq!(instance_name(Some("pod-7f9c/..")), "pod-7f9c_..");
        assert_eq!(instance_name(Some("../../etc")), "_.._etc");
        assert_eq!(instance_name(Some("...")), "instance");
        assert!(instance_name(None).contains('-'));
    }
}
