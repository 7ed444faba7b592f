//! The fleet: every `limen serve` says what it serves in a heartbeat file,
//! `<store>/.fleet/<instance>.json`, rewritten atomically every `--heartbeat-interval` and
//! removed on a graceful stop; anyone with the store reads them all. A heartbeat older than
//! [`STALE_AFTER`] of its own intervals is a replica that is gone (killed, partitioned).
//!
//! Heartbeats are written by other hosts, so they are read like evidence: regular files only,
//! bounded in size and number, parsed into typed fields, and refused (counted, with a reason)
//! when they do not hold together (another instance's name, intervals out of range, a time far
//! in the future). Servers write nothing else in the store.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::evidence::{instance_files, instance_name};
use crate::store::{self, StoreError};

/// The folder of heartbeats under the store root (not a model name: those start with a letter
/// or a digit).
pub const FOLDER: &str = ".fleet";
/// A heartbeat is stale after this many of its intervals without a rewrite.
pub const STALE_AFTER: u64 = 3;
/// The largest heartbeat read (1,000 models take about 200 KB).
pub const MAX_HEARTBEAT_BYTES: u64 = 4 << 20;
/// The most heartbeat files read; past it the fleet is reported as too large to read.
pub const MAX_REPLICAS: usize = 1_000;
/// The most heartbeat bytes read in all (10 replicas of 1,000 models take about 2 MB); files
/// past it are refused, so a reader holds at most this much whatever the folder holds.
pub const MAX_TOTAL_BYTES: usize = 64 << 20;
/// Heartbeat intervals accepted from a file, in milliseconds.
const INTERVALS_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;
/// How far in the future a heartbeat's time may be (clock skew between hosts).
const MAX_AHEAD_MS: u64 = 60_000;

/// What one server says of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub instance: String,
    pub limen_version: String,
    /// Unix milliseconds: when the server started, and when this was written.
    pub started_at_ms: u64,
    pub written_at_ms: u64,
    /// How often it writes this file, and how often it polls the store.
    pub interval_ms: u64,
    pub poll_interval_ms: u64,
    /// When it last listed the store successfully (unix milliseconds).
    #[serde(default)]
    pub last_scan_ms: Option<u64>,
    /// Per model it knows of.
    pub models: BTreeMap<String, Served>,
}

/// What a server holds of one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Served {
    /// The production pointer as it last read it.
    pub production: Option<u64>,
    /// The version it answers with (differs from `production` while a load fails or is due).
    pub serving: Option<u64>,
    /// The candidate it has loaded (for shadow scoring).
    #[serde(default)]
    pub candidate: Option<u64>,
    /// Why it does not serve `production`, or cannot load the candidate.
    #[serde(default)]
    pub load_error: Option<String>,
    #[serde(default)]
    pub candidate_error: Option<String>,
    /// The version a switch record names that this server loads ahead of a promotion
    /// (`<model>/switch`), whether it is loaded and warm, why it cannot be, and when this server
    /// switches to it (unix milliseconds, its own clock) once the pointer names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_to: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub switch_ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_at_ms: Option<u64>,
    /// When the served version began answering here (unix milliseconds, this server's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_since_ms: Option<u64>,
    /// The served version's live counters since it was loaded here: instances scored,
    /// instances with a value outside the training range, requests it could not answer, and
    /// answers per predicted class (by class name).
    #[serde(default)]
    pub predictions: u64,
    #[serde(default)]
    pub out_of_range: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<String, u64>,
    /// The served version's live PSI per feature (over its drift window).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub psi: BTreeMap<String, f64>,
    /// The version this server served before `serving`, and its counters when it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<Retired>,
}

/// A version a server served before its current one, with its final counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Retired {
    pub version: u64,
    #[serde(default)]
    pub predictions: u64,
    #[serde(default)]
    pub classes: BTreeMap<String, u64>,
}

/// A heartbeat as read, with how old it is by the reader's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    pub heartbeat: Heartbeat,
    pub age_ms: u64,
    /// Rewritten within [`STALE_AFTER`] of its intervals.
    pub live: bool,
}

/// Every heartbeat in a store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fleet {
    /// Sorted by instance.
    pub replicas: Vec<Replica>,
    /// Files that are not heartbeats limen trusts: `file: why`.
    pub refused: Vec<String>,
    /// More than [`MAX_REPLICAS`] files: none was read.
    pub too_many: bool,
}

impl Fleet {
    /// The live replicas.
    pub fn live(&self) -> impl Iterator<Item = &Replica> {
        self.replicas.iter().filter(|r| r.live)
    }

    /// Models whose production version the live replicas do not all serve: for each, every
    /// version served and by whom.
    pub fn disagreements(&self) -> BTreeMap<String, BTreeMap<Option<u64>, Vec<String>>> {
        let mut by_model: BTreeMap<String, BTreeMap<Option<u64>, Vec<String>>> = BTreeMap::new();
        for replica in self.live() {
            for (model, served) in &replica.heartbeat.models {
                by_model
                    .entry(model.clone())
                    .or_default()
                    .entry(served.serving)
                    .or_default()
                    .push(replica.heartbeat.instance.clone());
            }
        }
        by_model.retain(|_, versions| versions.len() > 1);
        by_model
    }
}

/// `limen models fleet`: the live replicas and what they serve (of `model`, or of every model),
/// the stale ones, refused files, and the models whose live replicas serve different versions.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub replicas: Vec<ReplicaReport>,
    /// Instances whose heartbeat is older than [`STALE_AFTER`] of its intervals.
    pub stale: Vec<String>,
    pub refused: Vec<String>,
    /// Per model the live replicas disagree on: each version served ("none" when not loaded)
    /// and by which instances.
    pub disagreements: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    pub too_many: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicaReport {
    pub instance: String,
    pub limen_version: String,
    /// How old its heartbeat is, and how long since it last listed the store, by this clock.
    pub heartbeat_age_ms: u64,
    pub last_scan_age_ms: Option<u64>,
    pub poll_interval_ms: u64,
    pub models: BTreeMap<String, Served>,
}

impl FleetReport {
    /// The report of `fleet`, narrowed to `model` when given.
    pub fn new(fleet: &Fleet, model: Option<&str>, now_ms: u64) -> Self {
        let keep = |name: &str| model.is_none_or(|m| m == name);
        let replicas = fleet
            .live()
            .map(|r| ReplicaReport {
                instance: r.heartbeat.instance.clone(),
                limen_version: r.heartbeat.limen_version.clone(),
                heartbeat_age_ms: r.age_ms,
                last_scan_age_ms: r.heartbeat.last_scan_ms.map(|t| now_ms.saturating_sub(t)),
                poll_interval_ms: r.heartbeat.poll_interval_ms,
                models: r
                    .heartbeat
                    .models
                    .iter()
                    .filter(|(name, _)| keep(name))
                    .map(|(name, served)| (name.clone(), served.clone()))
                    .collect(),
            })
            .collect();
        let disagreements = fleet
            .disagreements()
            .into_iter()
            .filter(|(name, _)| keep(name))
            .map(|(name, versions)| {
                let versions = versions
                    .into_iter()
                    .map(|(v, who)| (version_name(v), who))
                    .collect();
                (name, versions)
            })
            .collect();
        Self {
            replicas,
            stale: fleet
                .replicas
                .iter()
                .filter(|r| !r.live)
                .map(|r| r.heartbeat.instance.clone())
                .collect(),
            refused: fleet.refused.clone(),
            disagreements,
            too_many: fleet.too_many,
        }
    }

    /// The longest poll interval among the live replicas plus their longest heartbeat interval:
    /// how long a disagreement after a promotion may last before it is a fault.
    pub fn settle_ms(fleet: &Fleet) -> u64 {
        fleet
            .live()
            .map(|r| r.heartbeat.poll_interval_ms + r.heartbeat.interval_ms)
            .max()
            .unwrap_or(0)
    }
}

impl std::fmt::Display for FleetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.too_many {
            return writeln!(f, "more than {MAX_REPLICAS} heartbeat files: none was read");
        }
        if self.replicas.is_empty() {
            writeln!(
                f,
                "no live replica (no heartbeat in the last {STALE_AFTER} intervals)"
            )?;
        }
        let version = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        for r in &self.replicas {
            let scan = r.last_scan_age_ms.map_or("never".to_owned(), |ms| {
                format!("{:.1} s ago", ms as f64 / 1000.0)
            });
            writeln!(
                f,
                "{}  limen {}  heartbeat {:.1} s ago  last scan {scan}",
                r.instance,
                r.limen_version,
                r.heartbeat_age_ms as f64 / 1000.0
            )?;
            for (name, s) in &r.models {
                write!(
                    f,
                    "  {name}: serving {} (production {}), candidate loaded {}, {} predictions, {} out of range, {} errors",
                    version(s.serving),
                    version(s.production),
                    version(s.candidate),
                    s.predictions,
                    s.out_of_range,
                    s.errors
                )?;
                if let Some(e) = &s.load_error {
                    write!(f, "; load error: {e}")?;
                }
                if let Some(e) = &s.candidate_error {
                    write!(f, "; candidate error: {e}")?;
                }
                if let Some(next) = s.switch_to {
                    let state = match (&s.switch_error, s.switch_ready, s.switch_at_ms) {
                        (Some(e), _, _) => format!("cannot load it: {e}"),
                        (None, true, Some(at)) => format!("switching at {at} ms"),
                        (None, true, None) => "loaded".to_owned(),
                        (None, false, _) => "loading".to_owned(),
                    };
                    write!(f, "; switch to {next}: {state}")?;
                }
                writeln!(f)?;
            }
        }
        for (name, versions) in &self.disagreements {
            let parts: Vec<String> = versions
                .iter()
                .map(|(v, who)| format!("{v} on {}", who.join(", ")))
                .collect();
            writeln!(f, "DISAGREE {name}: {}", parts.join("; "))?;
        }
        if !self.stale.is_empty() {
            writeln!(f, "stale (gone): {}", self.stale.join(", "))?;
        }
        for r in &self.refused {
            writeln!(f, "refused {r}")?;
        }
        Ok(())
    }
}

/// What a server's status page shows of its fleet: small and bounded whatever the fleet is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetSummary {
    /// Live replicas (at most [`SUMMARY_NAMES`]) and their heartbeats' ages in milliseconds.
    pub live: Vec<(String, u64)>,
    pub live_total: usize,
    pub stale: usize,
    pub refused: usize,
    /// Models the live replicas disagree on (at most [`SUMMARY_NAMES`]): each version served
    /// and by whom (at most [`SUMMARY_NAMES`] names each).
    pub disagreements: Vec<(String, Vec<ServedBy>)>,
    /// The heartbeats were not all read (too many, or past the bytes a server reads).
    pub partial: bool,
}

/// A version and the instances serving it.
pub type ServedBy = (String, Vec<String>);

/// Names a summary keeps of each list.
pub const SUMMARY_NAMES: usize = 20;

impl FleetSummary {
    pub fn of(fleet: &Fleet) -> Self {
        let live: Vec<(String, u64)> = fleet
            .live()
            .map(|r| (r.heartbeat.instance.clone(), r.age_ms))
            .collect();
        let disagreements = fleet
            .disagreements()
            .into_iter()
            .take(SUMMARY_NAMES)
            .map(|(model, versions)| {
                let versions = versions
                    .into_iter()
                    .take(SUMMARY_NAMES)
                    .map(|(v, mut who)| {
                        who.truncate(SUMMARY_NAMES);
                        (version_name(v), who)
                    })
                    .collect();
                (model, versions)
            })
            .collect();
        Self {
            live_total: live.len(),
            live: live.into_iter().take(SUMMARY_NAMES).collect(),
            stale: fleet.replicas.iter().filter(|r| !r.live).count(),
            refused: fleet.refused.len(),
            disagreements,
            partial: fleet.too_many || !fleet.refused.is_empty(),
        }
    }
}

/// A served version as reports name it: its id, or "none" when nothing is loaded.
fn version_name(v: Option<u64>) -> String {
    v.map_or("none".to_owned(), |v| v.to_string())
}

/// The heartbeat folder of the store at `root`.
pub fn folder(root: &Path) -> PathBuf {
    root.join(FOLDER)
}

/// Writes `beat` atomically as `<root>/.fleet/<instance>.json` (`instance` is made a file name
/// by [`instance_name`] first). Creates `.fleet` but never the store itself: a store folder
/// that is gone (an unmounted file system, a renamed folder) stays gone, and the server goes on
/// reporting it, rather than a heartbeat quietly making an empty store on local disk.
pub fn write(root: &Path, beat: &Heartbeat) -> Result<(), StoreError> {
    let dir = folder(root);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(StoreError::Io {
                action: "create",
                path: dir.clone(),
                source,
            })
        }
    }
    let name = instance_name(Some(&beat.instance));
    let bytes = serde_json::to_vec(beat).map_err(|e| StoreError::Io {
        action: "serialize",
        path: dir.clone(),
        source: io::Error::other(e),
    })?;
    store::replace_atomically(&dir, &dir.join(format!("{name}.json")), &bytes, ".tmp-")
}

/// Removes `instance`'s heartbeat (a graceful stop); a missing one is fine.
pub fn remove(root: &Path, instance: &str) -> Result<(), StoreError> {
    let path = folder(root).join(format!("{}.json", instance_name(Some(instance))));
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io {
            action: "remove",
            path,
            source,
        }),
    }
}

/// Reads every heartbeat under `root`, aging them against `now_ms` (unix milliseconds). No
/// folder is an empty fleet.
pub fn read(root: &Path, now_ms: u64) -> Result<Fleet, StoreError> {
    read_within(root, now_ms, MAX_TOTAL_BYTES)
}

/// [`read`], holding at most `max_total` bytes of heartbeats.
pub fn read_within(root: &Path, now_ms: u64, max_total: usize) -> Result<Fleet, StoreError> {
    let dir = folder(root);
    let Some(names) = instance_files(&dir, MAX_REPLICAS)? else {
        return Ok(Fleet {
            too_many: true,
            ..Fleet::default()
        });
    };
    let mut fleet = Fleet::default();
    let mut total = 0usize;
    for instance in names {
        let file = format!("{instance}.json");
        let left = max_total.saturating_sub(total) as u64;
        let beat = store::read_untrusted(&dir.join(&file), MAX_HEARTBEAT_BYTES.min(left), true)
            .map_err(|e| match e {
                StoreError::TooLarge { .. } if left < MAX_HEARTBEAT_BYTES => format!(
                    "the heartbeats read before it fill the {} KiB a reader holds",
                    max_total >> 10
                ),
                e => e.to_string(),
            })
            .inspect(|bytes| total += bytes.len())
            .and_then(|bytes| {
                serde_json::from_slice::<Heartbeat>(&bytes)
                    .map_err(|e| format!("not a heartbeat ({e})"))
            })
            .and_then(|beat| consistent(beat, &instance, now_ms));
        match beat {
            Ok(heartbeat) => {
                let age_ms = now_ms.saturating_sub(heartbeat.written_at_ms);
                let live = age_ms <= heartbeat.interval_ms.saturating_mul(STALE_AFTER);
                fleet.replicas.push(Replica {
                    heartbeat,
                    age_ms,
                    live,
                });
            }
            Err(why) => fleet.refused.push(format!("{file}: {why}")),
        }
    }
    Ok(fleet)
}

/// `beat` if it can be what `<instance>.json` says at `now_ms`.
fn consistent(beat: Heartbeat, instance: &str, now_ms: u64) -> Result<Heartbeat, String> {
    if instance_name(Some(&beat.instance)) != instance {
        return Err("it names another instance".into());
    }
    if !INTERVALS_MS.contains(&beat.interval_ms) || !INTERVALS_MS.contains(&beat.poll_interval_ms) {
        return Err("its intervals are out of range".into());
    }
    if beat.written_at_ms > now_ms.saturating_add(MAX_AHEAD_MS)
        || beat.started_at_ms > beat.written_at_ms
    {
        return Err("its times are in the future or out of order".into());
    }
    if beat
        .models
        .keys()
        .any(|m| m.parse::<store::ModelName>().is_err())
    {
        return Err("it names a model that cannot be in a store".into());
    }
    Ok(beat)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(instance: &str, written_at_ms: u64, serving: u64) -> Heartbeat {
        Heartbeat {
            instance: instance.to_owned(),
            limen_version: "0.1.0".into(),
            started_at_ms: written_at_ms.saturating_sub(5_000),
            written_at_ms,
            interval_ms: 1_000,
            poll_interval_ms: 1_000,
            last_scan_ms: Some(written_at_ms),
            models: [(
                "iris".to_owned(),
                Served {
                    production: Some(serving),
                    serving: Some(serving),
                    ..Served::default()
                },
            )]
            .into(),
        }
    }

    #[test]
    fn heartbeats_are_read_aged_and_compared() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_000_000;
        write(dir.path(), &beat("pod-a", now - 500, 7)).unwrap();
        write(dir.path(), &beat("pod-b", now - 200, 8)).unwrap();
        write(dir.path(), &beat("pod-c", now - 10_000, 6)).unwrap();
        let fleet = read(dir.path(), now).unwrap();
        let live: Vec<&str> = fleet
            .live()
            .map(|r| r.heartbeat.instance.as_str())
            .collect();
        assert_eq!(live, ["pod-a", "pod-b"], "pod-c is 10 intervals old");
        assert_eq!(fleet.replicas.len(), 3);
        let split = fleet.disagreements();
        assert_eq!(split["iris"][&Some(7)], ["pod-a"]);
        assert_eq!(split["iris"][&Some(8)], ["pod-b"]);

        remove(dir.path(), "pod-b").unwrap();
        remove(dir.path(), "pod-b").unwrap();
        assert!(read(dir.path(), now).unwrap().disagreements().is_empty());
    }

    #[test]
    fn a_heartbeat_never_creates_a_store_that_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("store");
        assert!(write(&gone, &beat("pod-a", 1_000, 7)).is_err());
        assert!(!gone.exists(), "the store folder was made by a heartbeat");
    }

    #[test]
    fn a_reader_holds_at_most_its_total_of_heartbeat_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_000_000;
        for i in 0..5 {
            write(dir.path(), &beat(&format!("pod-{i}"), now, 1)).unwrap();
        }
        let one = fs::metadata(folder(dir.path()).join("pod-0.json"))
            .unwrap()
            .len() as usize;
        let fleet = read_within(dir.path(), now, 2 * one + one / 2).unwrap();
        assert_eq!(fleet.replicas.len(), 2);
        assert_eq!(fleet.refused.len(), 3, "{:?}", fleet.refused);
        assert!(fleet.refused[0].contains("fill the"), "{:?}", fleet.refused);
    }

    #[test]
    fn untrusted_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let now = 10_000_000;
        let f = folder(dir.path());
        write(dir.path(), &beat("pod-a", now, 1)).unwrap();
        // Another instance's heartbeat copied under a new name.
        fs::copy(f.join("pod-a.json"), f.join("pod-z.json")).unwrap();
        // Garbage, a heartbeat from the future, absurd intervals, a bad model name.
        fs::write(f.join("junk.json"), b"{\"instance\": 3}").unwrap();
        write(dir.path(), &beat("ahead", now + 3_600_000, 1)).unwrap();
        let mut odd = beat("odd", now, 1);
        odd.interval_ms = 0;
        write(dir.path(), &odd).unwrap();
        let mut named = beat("named", now, 1);
        named.models.insert("../x".into(), Served::default());
        write(dir.path(), &named).unwrap();
        // Not heartbeats at all: ignored, not refused.
        fs::write(f.join(".tmp-123"), b"x").unwrap();
        fs::write(f.join("notes.txt"), b"x").unwrap();
        std::os::unix::fs::symlink(f.join("pod-a.json"), f.join("link.json")).unwrap();
        let fleet = read(dir.path(), now).unwrap();
        assert_eq!(fleet.replicas.len(), 1, "{fleet:?}");
        let refused = fleet.refused.join("\n");
        for file in ["pod-z", "junk", "ahead", "odd", "named", "link"] {
            assert!(
                refused.contains(&format!("{file}.json")),
                "{file}: {refused}"
            );
        }
    }
}
