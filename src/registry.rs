//! The models a server answers with, and how they change: scan the store's `production`
//! pointers, then load → verify → warm up → swap, one model at a time.
//!
//! The serving table is an [`ArcSwap`]: a request takes an `Arc` of its model with one atomic
//! load and keeps it to the end, so a swap never disturbs a request in flight, and a version that
//! fails any step is never swapped in (the previous one keeps serving and the failure is recorded
//! for `/models` and logged once). The statuses are an `ArcSwap` too, rebuilt by each scan, so a
//! request never waits on a lock that is held across file I/O. No sockets and no JSON here:
//! statuses are plain data that `serve` renders.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use lru::LruCache;

use crate::api::Template;
use crate::budget::Budget;
use crate::catalog::{Catalog, LoadError};
use crate::fleet::FleetSummary;
use crate::model::{Model, DRIFT_BINS, LOAD_BYTES_PER_FILE_BYTE};
use crate::oip::InferTemplate;
use crate::store::{FileIdentity, ModelName, Pointer, StoreError, VersionId};
use crate::telemetry::{error_chain, Metrics, ModelMetrics};
use crate::watch::{ChangeSource, ScanOutcome};

/// A verified, warmed-up model as served.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: Model,
    pub version: VersionId,
    pub loaded_at: SystemTime,
    /// Its prediction and drift counters, resolved at load so scoring does no label lookups.
    pub metrics: ModelMetrics,
    /// Its `/predict` answers' fixed parts, rendered at load.
    pub template: Template,
    /// Its `/v2` inference answers' fixed parts, rendered at load.
    pub infer: InferTemplate,
    /// Where its recent inputs fell in the training reference's bins, when it has one.
    pub drift: Option<DriftWindow>,
    /// When it began answering as production here (unix milliseconds; 0 until then).
    pub serving_since_ms: std::sync::atomic::AtomicU64,
    /// Its live tallies here: answers per predicted class, instances with a value outside its
    /// training range, and requests it could not answer (bad input for it, unscorable rows).
    pub classes: crate::model::ClassTally,
    pub rows_out_of_range: std::sync::atomic::AtomicU64,
    pub errors: std::sync::atomic::AtomicU64,
}

impl LoadedModel {
    /// A model ready to serve, loaded now: its answers' fixed parts are rendered here.
    pub fn new(
        model: Model,
        version: VersionId,
        metrics: ModelMetrics,
        drift: Option<DriftWindow>,
    ) -> Self {
        Self {
            template: Template::new(&model),
            infer: InferTemplate::new(&model),
            classes: crate::model::ClassTally::new(model.classes().len()),
            model,
            version,
            loaded_at: SystemTime::now(),
            metrics,
            drift,
            serving_since_ms: std::sync::atomic::AtomicU64::new(0),
            rows_out_of_range: std::sync::atomic::AtomicU64::new(0),
            errors: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Its live counters now.
    pub fn live(&self) -> LiveCounters {
        use std::sync::atomic::Ordering::Relaxed;
        LiveCounters {
            predictions: self.metrics.predictions.get(),
            out_of_range: self.rows_out_of_range.load(Relaxed),
            errors: self.errors.load(Relaxed),
            classes: self
                .model
                .classes()
                .iter()
                .cloned()
                .zip(self.classes.counts())
                .collect(),
            serving_since_ms: Some(self.serving_since_ms.load(Relaxed)).filter(|&t| t > 0),
        }
    }

    /// Records that it answers as production from `now_ms` on (the first time only).
    fn serving_from(&self, now_ms: u64) {
        let _ = self.serving_since_ms.compare_exchange(
            0,
            now_ms,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Counts one scored instance, each of its values outside the feature's training range, and
    /// the drift window's bins. A missing value (NaN, for a model that scores them) is in no
    /// range and no bin: it counts toward neither.
    pub fn observe_row(&self, row: &[f64]) {
        let features = &self.model.artifact().features;
        let mut outside = false;
        let ranges = row.iter().zip(features).zip(&self.metrics.out_of_range);
        if self.model.preprocessing().is_none() {
            // Numbers only (the common case, kept to its few instructions).
            for ((value, feature), counter) in ranges {
                if *value < feature.stats.min || *value > feature.stats.max {
                    counter.inc();
                    outside = true;
                }
            }
        } else {
            let unseen = self.metrics.unseen.iter().chain(std::iter::repeat(&None));
            for (((value, feature), counter), unseen) in ranges.zip(unseen) {
                let out = match unseen {
                    // A category: out of range is a value the model never saw (a negative code).
                    Some(unseen) if *value < 0.0 => {
                        unseen.inc();
                        true
                    }
                    Some(_) => false,
                    None => *value < feature.stats.min || *value > feature.stats.max,
                };
                if out {
                    counter.inc();
                    outside = true;
                }
            }
        }
        if outside {
            self.rows_out_of_range
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(drift) = &self.drift {
            drift.observe(row, &self.model);
        }
        self.metrics.predictions.inc();
    }

    /// The live PSI of each feature (empty without a drift window or traffic).
    pub fn psi(&self) -> Vec<(String, f64)> {
        let Some(drift) = &self.drift else {
            return Vec::new();
        };
        self.model
            .artifact()
            .features
            .iter()
            .enumerate()
            .filter_map(|(i, f)| Some((f.name.clone(), drift.psi(i, &self.model)?)))
            .collect()
    }

    /// While the live PSI waits for enough instances: how many there are, and how many it needs.
    pub fn drift_collecting(&self) -> Option<(u64, u64)> {
        self.drift.as_ref()?.collecting()
    }

    /// Sets the `limen_feature_psi` gauges from the drift window (called when `/metrics` is
    /// read, not per request).
    pub fn publish_psi(&self) {
        let Some(drift) = &self.drift else { return };
        for (i, gauge) in self.metrics.psi.iter().enumerate() {
            // No estimate yet (a restart, a new version): no series, so no alert fires on it.
            gauge.set(drift.psi(i, &self.model));
        }
    }
}

/// The fewest instances in a feature's drift window before its live PSI is reported, unless
/// `--drift-min-samples` says otherwise: with a handful, every empty bin of the twelve counts
/// as a large shift (4 requests after a restart gave 6.9 for every feature, an alert on every
/// deploy).
pub const MIN_PSI_INSTANCES: u64 = 200;

/// Bin counts of a model's recent inputs, per feature, over about the last `window` instances:
/// two generations of atomic counters of `window / 2` instances each; when the current one is
/// full, the older is cleared and becomes current. Lock-free on the request path (one relaxed
/// atomic add per feature and one for the instance); the rare generation switch takes a lock
/// that no request waits on.
#[derive(Debug)]
pub struct DriftWindow {
    generations: [Vec<std::sync::atomic::AtomicU64>; 2],
    /// Per feature, its first bin; the last entry is the number of bins.
    offsets: Vec<usize>,
    current: std::sync::atomic::AtomicUsize,
    seen: std::sync::atomic::AtomicU64,
    half: u64,
    /// Instances a feature's window needs before its PSI is reported.
    min: u64,
    switching: Mutex<()>,
}

impl DriftWindow {
    /// A window over `model`'s features ([`Model::drift_bins`] each) of about `window`
    /// instances that reports PSI from `min` on (at most half the window, all a small window is
    /// sure to hold).
    fn new(model: &Model, window: u64, min: u64) -> Self {
        let mut offsets = vec![0];
        for i in 0..model.feature_names().len() {
            offsets.push(offsets[i] + model.drift_bins(i));
        }
        let bins = offsets.last().copied().unwrap_or(0);
        let generation = || {
            (0..bins)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect()
        };
        Self {
            generations: [generation(), generation()],
            offsets,
            current: std::sync::atomic::AtomicUsize::new(0),
            seen: std::sync::atomic::AtomicU64::new(0),
            half: (window / 2).max(1),
            min: min.min((window / 2).max(1)),
            switching: Mutex::new(()),
        }
    }

    /// Feature `i`'s PSI against its training reference, once its window holds enough values.
    fn psi(&self, i: usize, model: &Model) -> Option<f64> {
        let counts = self.counts(i);
        if counts.iter().sum::<u64>() < self.min {
            return None;
        }
        model.drift_psi(i, &counts)
    }

    /// While the first feature's window holds fewer values than PSI needs: how many it holds,
    /// and how many it needs.
    fn collecting(&self) -> Option<(u64, u64)> {
        let held: u64 = self.counts(0).iter().sum();
        (held < self.min).then_some((held, self.min))
    }

    fn observe(&self, row: &[f64], model: &Model) {
        use std::sync::atomic::Ordering::Relaxed;
        let generation = &self.generations[self.current.load(Relaxed) & 1];
        if model.preprocessing().is_none() {
            // Numbers only: every feature's reference bins, DRIFT_BINS each.
            for (i, (value, feature)) in row.iter().zip(&model.artifact().features).enumerate() {
                if let (Some(reference), false) = (&feature.reference, value.is_nan()) {
                    let bin = reference.bin(*value, &feature.stats);
                    if let Some(counter) = generation.get(i * DRIFT_BINS + bin) {
                        counter.fetch_add(1, Relaxed);
                    }
                }
            }
        } else {
            for (i, value) in row.iter().enumerate() {
                if let (Some(bin), Some(first)) = (model.drift_bin(i, *value), self.offsets.get(i))
                {
                    if let Some(counter) = generation.get(first + bin) {
                        counter.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        let seen = self.seen.fetch_add(1, Relaxed) + 1;
        if seen.is_multiple_of(self.half) {
            if let Ok(_switching) = self.switching.try_lock() {
                let next = (self.current.load(Relaxed) + 1) & 1;
                for counter in &self.generations[next] {
                    counter.store(0, Relaxed);
                }
                self.current.store(next, Relaxed);
            }
        }
    }

    /// Feature `i`'s bin counts over both generations.
    fn counts(&self, i: usize) -> Vec<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let (first, end) = match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => (a, b),
            _ => return Vec::new(),
        };
        let mut counts = vec![0u64; end - first];
        for generation in &self.generations {
            for (bin, count) in counts.iter_mut().enumerate() {
                *count += generation.get(first + bin).map_or(0, |c| c.load(Relaxed));
            }
        }
        counts
    }
}

/// One model as the server sees it.
#[derive(Debug, Clone, Default)]
pub struct ModelStatus {
    pub name: String,
    /// The `production` pointer as last read.
    pub production: Option<VersionId>,
    /// The `candidate` pointer (read by scans when shadow scoring is on, else when reported).
    pub candidate: Option<VersionId>,
    /// The candidate version loaded for shadow scoring.
    pub shadow: Option<VersionId>,
    /// Why the candidate cannot be shadowed, if it cannot.
    pub candidate_error: Option<String>,
    /// The version being served.
    pub loaded: Option<VersionId>,
    pub loaded_at: Option<SystemTime>,
    /// Why the production version is not the one served, if it is not.
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    /// Whether that error is the store's content (a file or pointer limen refuses, which no
    /// waiting mends) rather than a passing one (memory budget, unreadable store, a version not
    /// there yet).
    pub refused: bool,
    /// The version the model's switch record names, loaded ahead of a promotion (see
    /// `store::SwitchRecord`); whether it is loaded and warm, or why it cannot be; and when this
    /// server switches to it, once the pointer names it (unix milliseconds).
    pub switch_to: Option<VersionId>,
    pub switch_ready: bool,
    pub switch_error: Option<String>,
    pub switch_at_ms: Option<u64>,
}

/// The store itself as the server sees it.
#[derive(Debug, Clone, Default)]
pub struct StoreStatus {
    pub root: String,
    /// When the store was last listed successfully.
    pub last_scan_ok_at: Option<SystemTime>,
    /// Why the last scan could not list the store (unmounted, unreadable…), if it could not.
    pub error: Option<String>,
}

/// One model in full: its status, the versions on disk and the model being served.
#[derive(Debug, Clone)]
pub struct ModelDetail {
    pub status: ModelStatus,
    pub versions: Vec<VersionId>,
    pub served: Option<Arc<LoadedModel>>,
}

/// What the last scan found; replaced whole by each scan.
#[derive(Debug, Default)]
struct Book {
    models: BTreeMap<ModelName, ModelStatus>,
    store: StoreStatus,
}

/// Served models by name. A B-tree: a lookup is a few comparisons of short names, cheaper than
/// hashing the name per request, and listings come out sorted.
type Table = BTreeMap<ModelName, Arc<LoadedModel>>;

/// What a served version has done here since it was loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveCounters {
    /// Instances scored.
    pub predictions: u64,
    /// Instances with a value outside its feature's training range.
    pub out_of_range: u64,
    /// Requests it could not answer (bad input for it, unscorable rows).
    pub errors: u64,
    /// Answers per predicted class, by class name.
    pub classes: BTreeMap<String, u64>,
    pub serving_since_ms: Option<u64>,
}

/// A production version loaded and due to be served at its switch record's activation time.
struct Pending {
    loaded: Arc<LoadedModel>,
    /// Unix milliseconds, this server's clock.
    at_ms: u64,
    /// The pointer's age when the scan read it, and when that was: the swap-lag metric.
    pointer_age: Option<f64>,
    seen: Instant,
}

/// The furthest ahead an activation time is honoured: a record that says later (a clock far
/// off, a forged file) switches at once rather than pin the old version.
const MAX_ACTIVATION_LEAD_MS: u64 = 60_000;

/// What one model's scan found.
struct ModelScan {
    status: ModelStatus,
    /// A new production version to serve now.
    load: Option<Arc<LoadedModel>>,
    /// A new production version to serve at its activation time.
    pending: Option<Pending>,
    /// A version loaded ahead of a switch.
    staged: Option<Arc<LoadedModel>>,
}

/// Why a version asked for by name and number cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("model \"{name}\" has no version {version}")]
    NotFound { name: String, version: VersionId },
    #[error("{name}/{version} cannot be served: {why}")]
    Unservable {
        name: String,
        version: VersionId,
        why: String,
    },
    /// Not the file's fault, and retried after its backoff: the memory budget cannot hold the
    /// load now, or the store could not be read.
    #[error("{name}/{version} cannot be loaded now: {why}")]
    Unavailable {
        name: String,
        version: VersionId,
        why: String,
        /// The memory budget (else the store) is what stood in the way.
        budget: bool,
    },
}

impl VersionError {
    /// Whether waiting can mend it: the version may appear (a pointer read before its folder on
    /// a lagging NFS client), memory may free up, the store may come back. The alternative is a
    /// file that will not load however long one waits.
    pub fn passes(&self) -> bool {
        !matches!(self, Self::Unservable { .. })
    }
}

/// A version loaded on request (`/models/{name}/versions/{version}/predict`).
struct Pinned {
    loaded: Arc<LoadedModel>,
    /// When its `model.json` was last seen on disk: versions are immutable, but `gc` deletes.
    checked: Instant,
}

/// A version that failed to load, remembered so that its file is not read again until it changes
/// (size, mtime or inode) or its backoff passes: a broken or hostile file costs one read, not one
/// per poll or per request.
struct Failure {
    error: VersionError,
    identity: Option<FileIdentity>,
    attempts: u32,
    retry_at: Instant,
}

/// How many failed versions are remembered (least recently used are forgotten first).
const REMEMBERED_FAILURES: usize = 1024;
/// The longest wait before a failed version whose file has not changed is read again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Where the server stands on the models it must serve before it takes traffic (`/ready`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Models whose production version is loaded, with it.
    pub loaded: Vec<(String, VersionId)>,
    /// Models whose production version was read and refused (why): no replica of a shared store
    /// can load that file, so waiting for it would only take every other model down with it.
    /// A failure that passes (memory budget, an unreadable store) waits instead, and named
    /// models (`--model`) always wait.
    pub refused: Vec<(String, String)>,
    /// Models still to load: with a production pointer and nothing served yet, or named by
    /// `--model` and not served.
    pub waiting: Vec<String>,
}

impl Readiness {
    /// Ready: nothing left to load and at least one model served.
    pub fn ready(&self) -> bool {
        self.waiting.is_empty() && !self.loaded.is_empty()
    }
}

/// Settings of a [`Registry`].
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// How many pinned (non-production) versions stay loaded.
    pub pinned_capacity: NonZeroUsize,
    /// How long a pinned version answers from memory before its file is checked again.
    pub revalidate_after: Duration,
    /// Whether scans also load each model's candidate (when it is not production) for shadow
    /// scoring.
    pub shadow: bool,
    /// How many recent instances the live PSI gauges cover; 0 turns them off.
    pub drift_window: u64,
    /// How many instances a feature's window holds before its PSI is reported.
    pub drift_min_samples: u64,
    /// What a load reserves its peak memory from ([`LOAD_BYTES_PER_FILE_BYTE`] per byte of the
    /// file) before reading it: a load that does not fit fails and is retried after its backoff.
    pub budget: Budget,
    /// The models served (`limen serve --model a,b`); `None` serves every model in the store.
    pub only: Option<BTreeSet<ModelName>>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            pinned_capacity: NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN),
            revalidate_after: Duration::from_secs(1),
            shadow: false,
            drift_window: 10_000,
            drift_min_samples: MIN_PSI_INSTANCES,
            budget: Budget::unlimited(),
            only: None,
        }
    }
}

/// The loaded models of one store.
pub struct Registry {
    catalog: Catalog,
    serving: ArcSwap<Table>,
    /// Each model's candidate, loaded for shadow scoring when it is not production.
    shadows: ArcSwap<Table>,
    /// Versions loaded ahead of a switch of production (their model's switch record names them).
    staged: ArcSwap<Table>,
    /// Production versions waiting for their activation time, and a wake-up when they change.
    pending: Mutex<BTreeMap<ModelName, Pending>>,
    activations: tokio::sync::Notify,
    /// Per model, the version swapped out last and its final counters.
    retired: Mutex<BTreeMap<ModelName, (VersionId, LiveCounters)>>,
    /// Rung when what the heartbeat says changed (a switch's version loaded, a switch made), so
    /// a waiting promoter hears of it before the next interval.
    beat_now: tokio::sync::Notify,
    book: ArcSwap<Book>,
    pinned: Mutex<LruCache<(ModelName, VersionId), Pinned>>,
    failures: Mutex<LruCache<(ModelName, VersionId), Failure>>,
    config: RegistryConfig,
    metrics: Arc<Metrics>,
    /// The fleet as this server's heartbeat task last read it (for the status page).
    fleet: ArcSwap<Option<FleetSummary>>,
}

impl Registry {
    pub fn new(catalog: Catalog, config: RegistryConfig, metrics: Arc<Metrics>) -> Self {
        let book = Book {
            store: StoreStatus {
                root: catalog.root().display().to_string(),
                ..StoreStatus::default()
            },
            ..Book::default()
        };
        Self {
            catalog,
            serving: ArcSwap::from_pointee(Table::new()),
            shadows: ArcSwap::from_pointee(Table::new()),
            staged: ArcSwap::from_pointee(Table::new()),
            pending: Mutex::new(BTreeMap::new()),
            activations: tokio::sync::Notify::new(),
            retired: Mutex::new(BTreeMap::new()),
            beat_now: tokio::sync::Notify::new(),
            book: ArcSwap::from_pointee(book),
            pinned: Mutex::new(LruCache::new(config.pinned_capacity)),
            failures: Mutex::new(LruCache::new(
                NonZeroUsize::new(REMEMBERED_FAILURES).unwrap_or(NonZeroUsize::MIN),
            )),
            config,
            metrics,
            fleet: ArcSwap::from_pointee(None),
        }
    }

    /// The fleet as last read (none before the first heartbeat, or with heartbeats off).
    pub fn fleet(&self) -> Arc<Option<FleetSummary>> {
        self.fleet.load_full()
    }

    /// Records the fleet as just read.
    pub fn set_fleet(&self, summary: FleetSummary) {
        self.fleet.store(Arc::new(Some(summary)));
    }

    /// The store's root folder.
    pub fn root(&self) -> &std::path::Path {
        self.catalog.root()
    }

    /// What `/ready` waits for: each model named by `--model`, else every model whose production
    /// pointer the last scan read, loaded; a refused version counts as settled unless named.
    /// Never touches a file.
    pub fn readiness(&self) -> Readiness {
        let serving = self.serving.load();
        let book = self.book.load();
        let mut readiness = Readiness::default();
        let mut settle = |name: &str, named: bool| {
            if let Some(loaded) = serving.get(name) {
                readiness.loaded.push((name.to_owned(), loaded.version));
                return;
            }
            match book.models.get(name).filter(|s| s.refused) {
                Some(status) if !named => readiness.refused.push((
                    name.to_owned(),
                    status.last_error.clone().unwrap_or_default(),
                )),
                _ => readiness.waiting.push(name.to_owned()),
            }
        };
        match &self.config.only {
            Some(only) => only.iter().for_each(|name| settle(name.as_str(), true)),
            None => book
                .models
                .values()
                .filter(|s| s.production.is_some())
                .for_each(|s| settle(&s.name, false)),
        }
        readiness
    }

    /// Whether this server serves `name`: every model, or one named by `--model`.
    pub fn serves(&self, name: &str) -> bool {
        self.config
            .only
            .as_ref()
            .is_none_or(|only| only.iter().any(|n| n.as_str() == name))
    }

    /// The models `--model` narrowed serving to, if it did.
    pub fn only(&self) -> Option<&BTreeSet<ModelName>> {
        self.config.only.as_ref()
    }

    /// Complete versions of `name` on disk. Blocking.
    pub fn versions(&self, name: &ModelName) -> Result<Vec<VersionId>, StoreError> {
        self.catalog.versions(name)
    }

    /// Whether the last scan saw a folder for `name` in the store.
    pub fn knows(&self, name: &str) -> bool {
        self.book.load().models.contains_key(name)
    }

    /// `name` at `version` from memory: the production model if that is the version, else a
    /// pinned version checked on disk within the last `revalidate_after`. Never touches a file.
    pub fn cached_version(&self, name: &ModelName, version: VersionId) -> Option<Arc<LoadedModel>> {
        if let Some(loaded) = self.get(name.as_str()).filter(|m| m.version == version) {
            return Some(loaded);
        }
        let mut pinned = self.pinned();
        let entry = pinned.get(&(name.clone(), version))?;
        (entry.checked.elapsed() < self.config.revalidate_after).then(|| Arc::clone(&entry.loaded))
    }

    /// `name` at `version`, loaded (load → verify → warm up) and cached if need be. Blocking: run
    /// it off the async threads. A version deleted from disk stops answering once its cache
    /// entry is re-checked. The cache's lock is never held across file I/O.
    pub fn load_version(
        &self,
        name: &ModelName,
        version: VersionId,
    ) -> Result<Arc<LoadedModel>, VersionError> {
        if let Some(loaded) = self.cached_version(name, version) {
            return Ok(loaded);
        }
        let key = (name.clone(), version);
        let stale = self.pinned().get(&key).map(|p| Arc::clone(&p.loaded));
        if let Some(loaded) = stale {
            if self.catalog.has_version(name, version) {
                if let Some(entry) = self.pinned().get_mut(&key) {
                    entry.checked = Instant::now();
                }
                return Ok(loaded);
            }
            self.pinned().pop(&key);
            return Err(VersionError::NotFound {
                name: name.to_string(),
                version,
            });
        }
        let loaded = Arc::new(self.load(name, version)?);
        let entry = Pinned {
            loaded: Arc::clone(&loaded),
            checked: Instant::now(),
        };
        self.pinned().put(key, entry);
        Ok(loaded)
    }

    fn pinned(&self) -> MutexGuard<'_, LruCache<(ModelName, VersionId), Pinned>> {
        // Each update is a single cache operation, so a poisoned lock is still consistent.
        self.pinned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything `/models/{name}` shows: pointers, what is served and why not, the versions on
    /// disk, and the served model. Blocking (lists the model's folder). `None` for a model the
    /// last scan did not see.
    pub fn detail(&self, name: &ModelName) -> Option<Result<ModelDetail, StoreError>> {
        let mut status = self.status(name.as_str())?;
        status.candidate = self
            .catalog
            .pointer(name, Pointer::Candidate)
            .ok()
            .flatten();
        let versions = match self.catalog.versions(name) {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(ModelDetail {
            status,
            versions,
            served: self.get(name.as_str()),
        }))
    }

    /// The production model served under `name`, if one is loaded. Lock-free.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedModel>> {
        self.serving.load().get(name).cloned()
    }

    /// Per served model: instances scored and inputs out of range so far (by its version's
    /// counters). Never touches a file.
    pub fn counters(&self) -> HashMap<String, LiveCounters> {
        self.serving
            .load()
            .iter()
            .map(|(name, loaded)| (name.to_string(), loaded.live()))
            .collect()
    }

    /// Per model, the version served before the current one here and its counters when it
    /// stopped (what `limen watch` compares the new version's predicted classes against).
    pub fn retired(&self) -> HashMap<String, (VersionId, LiveCounters)> {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, r)| (name.to_string(), r.clone()))
            .collect()
    }

    /// Remembers `old`'s counters as `name`'s retired version (it is being swapped out).
    fn retire(&self, name: &ModelName, old: &LoadedModel) {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), (old.version, old.live()));
    }

    /// `name`'s history (the last `last` entries), read from the end of the file: memory is
    /// bounded by `last` lines whatever the file holds. Blocking.
    pub fn history(&self, name: &ModelName, last: usize) -> Vec<crate::store::HistoryEntry> {
        self.catalog
            .history_tail(name, last, |_| true)
            .map(|t| t.entries)
            .unwrap_or_default()
    }

    /// Sets every served model's live PSI gauges (for `/metrics`).
    pub fn publish_psi(&self) {
        for loaded in self.serving.load().values() {
            loaded.publish_psi();
        }
    }

    /// `name`'s candidate loaded for shadow scoring, if there is one. Lock-free.
    pub fn shadow(&self, name: &str) -> Option<Arc<LoadedModel>> {
        self.shadows.load().get(name).cloned()
    }

    /// Every (model, candidate version) in shadow now.
    pub fn shadow_keys(&self) -> std::collections::HashSet<(ModelName, VersionId)> {
        self.shadows
            .load()
            .iter()
            .map(|(name, loaded)| (name.clone(), loaded.version))
            .collect()
    }

    /// Status of every model known from the last scan, sorted by name, with each `candidate`
    /// pointer read now (scans skip candidates: serving never needs them). Blocking.
    pub fn report(&self) -> Vec<ModelStatus> {
        let mut statuses = self.statuses();
        for status in &mut statuses {
            if let Ok(name) = status.name.parse() {
                status.candidate = self
                    .catalog
                    .pointer(&name, Pointer::Candidate)
                    .ok()
                    .flatten();
            }
        }
        statuses
    }

    /// One model's status from the last scan, without its candidate. Never touches a file.
    pub fn status(&self, name: &str) -> Option<ModelStatus> {
        let serving = self.serving.load();
        let status = self.book.load().models.get(name)?.clone();
        Some(with_served(status, &serving))
    }

    /// Status of every model known from the last scan, sorted by name, without candidates.
    pub fn statuses(&self) -> Vec<ModelStatus> {
        let serving = self.serving.load();
        self.book
            .load()
            .models
            .values()
            .map(|status| with_served(status.clone(), &serving))
            .collect()
    }

    pub fn store_status(&self) -> StoreStatus {
        self.book.load().store.clone()
    }

    /// Whether the last scan could list the store.
    pub fn store_readable(&self) -> bool {
        self.book.load().store.error.is_none()
    }

    /// Seconds since the store was last listed successfully, if ever.
    pub fn seconds_since_scan(&self) -> Option<f64> {
        let at = self.book.load().store.last_scan_ok_at?;
        Some(at.elapsed().map_or(0.0, |d| d.as_secs_f64()))
    }

    /// Reads every model's pointers and swaps in production versions that changed. Blocking:
    /// run it off the async threads. Only one scan runs at a time ([`Registry::run`]).
    pub fn scan(&self) -> ScanOutcome {
        let names = match self.catalog.models() {
            Ok(names) => names
                .into_iter()
                .filter(|name| self.serves(name.as_str()))
                .collect::<Vec<_>>(),
            Err(e) => {
                self.note_store_error(&e);
                return ScanOutcome::default();
            }
        };
        let current = self.serving.load_full();
        let before = self.book.load_full();
        let shadows_before = self.shadows.load_full();
        let staged_before = self.staged.load_full();
        let mut loads = Vec::new();
        let mut statuses = BTreeMap::new();
        let mut shadows = Table::new();
        let mut staged = Table::new();
        let mut pending = BTreeMap::new();
        let mut heard = false;
        for name in &names {
            let previous = before.models.get(name);
            let shadowed = shadows_before.get(name);
            let loaded = [shadowed, staged_before.get(name)];
            let mut scanned = self.scan_model(name, current.get(name), loaded, previous);
            let mut status = scanned.status;
            if self.config.shadow {
                let loaded = [shadowed, current.get(name)];
                if let Some(shadow) = self.scan_candidate(name, &mut status, loaded) {
                    shadows.insert(name.clone(), shadow);
                }
            }
            heard |= previous.is_none_or(|p| {
                (p.switch_to, p.switch_ready, p.switch_at_ms)
                    != (status.switch_to, status.switch_ready, status.switch_at_ms)
                    || p.switch_error.is_some() != status.switch_error.is_some()
            });
            statuses.insert(name.clone(), status);
            if let Some(loaded) = scanned.load.take() {
                loads.push((name.clone(), loaded));
            }
            if let Some(ahead) = scanned.staged.take() {
                staged.insert(name.clone(), ahead);
            }
            if let Some(due) = scanned.pending.take() {
                pending.insert(name.clone(), due);
            }
        }
        self.staged.store(Arc::new(staged));
        *self.pending() = pending;
        self.activations.notify_one();
        let shadows_changed = shadows.len() != shadows_before.len()
            || shadows.iter().any(|(name, loaded)| {
                shadows_before
                    .get(name)
                    .is_none_or(|old| !Arc::ptr_eq(old, loaded))
            });
        if shadows_changed {
            for (name, old) in shadows_before.iter() {
                if shadows
                    .get(name)
                    .is_none_or(|new| new.version != old.version)
                {
                    tracing::info!(model = %name, candidate = old.version.get(), "shadow run ended");
                }
            }
            self.shadows.store(Arc::new(shadows));
        }
        for (name, status) in &statuses {
            let failing = status.last_error.is_some();
            let before = before.models.get(name).map(|s| s.last_error.is_some());
            if before != Some(failing) {
                self.metrics.model_error(name.as_str(), Some(failing));
            }
        }
        for name in before.models.keys().filter(|n| !statuses.contains_key(*n)) {
            self.metrics.model_error(name.as_str(), None);
        }
        let gone: Vec<&ModelName> = current
            .keys()
            .filter(|n| !statuses.contains_key(*n))
            .collect();
        // An activation may have served a version since `current` was read: not again.
        let served_now = self.serving.load_full();
        loads.retain(|(name, loaded)| {
            served_now
                .get(name)
                .is_none_or(|m| m.version != loaded.version)
        });
        if !loads.is_empty() || !gone.is_empty() {
            for name in &gone {
                tracing::info!(model = %name, "model folder removed from the store; no longer serving it");
                if let Some(old) = current.get(*name) {
                    self.metrics
                        .removed(name.as_str(), &old.version.to_string());
                }
            }
            for (name, loaded) in &loads {
                let previous = served_now.get(name).map(|m| m.version.to_string());
                self.metrics.swapped(
                    name.as_str(),
                    &loaded.version.to_string(),
                    previous.as_deref(),
                    self.pointer_age(name),
                );
            }
            let now = crate::fleet::now_ms();
            for (name, loaded) in &loads {
                loaded.serving_from(now);
                let old = served_now.get(name);
                if let Some(old) = old {
                    self.retire(name, old);
                }
                tracing::info!(
                    model = %name,
                    version = loaded.version.get(),
                    previous = old.map(|s| s.version.get()),
                    switched_at_ms = now,
                    "serving new production version"
                );
            }
            self.serving.rcu(|table| {
                let mut table: Table = table
                    .iter()
                    .filter(|(n, _)| statuses.contains_key(*n))
                    .map(|(n, m)| (n.clone(), Arc::clone(m)))
                    .collect();
                for (name, loaded) in &loads {
                    table.insert(name.clone(), Arc::clone(loaded));
                }
                table
            });
        }
        if before.store.error.is_some() {
            tracing::info!(root = %before.store.root, "store is readable again");
        }
        self.book.store(Arc::new(Book {
            models: statuses,
            store: StoreStatus {
                root: before.store.root.clone(),
                last_scan_ok_at: Some(SystemTime::now()),
                error: None,
            },
        }));
        if heard {
            self.beat_now.notify_one();
        }
        ScanOutcome {
            readable: true,
            model_dirs: names.iter().map(|n| self.catalog.model_dir(n)).collect(),
        }
    }

    /// Reads one model's production pointer, then its switch record (in that order: a promoter
    /// writes the record first, so a pointer naming the record's version is read with it).
    /// Loads the production version if it is not what is served, to serve now or at the record's
    /// activation time, and loads ahead the version a switch record names. `loaded` are versions
    /// already in memory (the shadowed candidate, the one loaded ahead), reused when named.
    fn scan_model(
        &self,
        name: &ModelName,
        served: Option<&Arc<LoadedModel>>,
        loaded: [Option<&Arc<LoadedModel>>; 2],
        previous: Option<&ModelStatus>,
    ) -> ModelScan {
        let mut status = ModelStatus {
            name: name.to_string(),
            ..ModelStatus::default()
        };
        let pointer = self.catalog.pointer(name, Pointer::Production);
        let record = match self.catalog.switch_record(name) {
            Ok(record) => record,
            Err(e) => {
                status.switch_error = Some(format!("cannot read the switch record: {e}"));
                None
            }
        };
        let reuse = |version: VersionId| {
            loaded
                .into_iter()
                .flatten()
                .find(|m| m.version == version)
                .map(Arc::clone)
        };
        let get = |version: VersionId| match reuse(version) {
            Some(model) => Ok(model),
            None => self.load(name, version).map(Arc::new),
        };
        let mut scan = ModelScan {
            status: ModelStatus::default(),
            load: None,
            pending: None,
            staged: None,
        };
        // Why the production version is not served, and whether waiting can mend it (a pointer
        // or file the store cannot read now) or not (one that holds what limen refuses).
        let error = match pointer {
            Err(e) => Some((
                format!("cannot read the production pointer: {e}"),
                matches!(e, StoreError::Io { .. } | StoreError::Missing(_)),
            )),
            Ok(None) => served.map(|s| {
                (
                    format!(
                        "the production pointer is missing; still serving version {}",
                        s.version
                    ),
                    true,
                )
            }),
            Ok(Some(version)) => {
                status.production = Some(version);
                if served.is_some_and(|s| s.version == version) {
                    None
                } else {
                    match get(version).map_err(|e| (e.to_string(), e.passes())) {
                        Ok(model) => {
                            let now = crate::fleet::now_ms();
                            let at = record
                                .filter(|r| r.version == version && served.is_some())
                                .and_then(|r| r.activate_at_ms)
                                .filter(|&at| at > now && at - now <= MAX_ACTIVATION_LEAD_MS);
                            if let Some(at_ms) = at {
                                tracing::info!(
                                    model = %name,
                                    version = version.get(),
                                    previous = served.map(|s| s.version.get()),
                                    in_ms = at_ms - now,
                                    "new production version loaded; switching at the fleet's activation time"
                                );
                                status.switch_at_ms = Some(at_ms);
                                scan.staged = Some(Arc::clone(&model));
                                scan.pending = Some(Pending {
                                    loaded: model,
                                    at_ms,
                                    pointer_age: self.pointer_age(name),
                                    seen: Instant::now(),
                                });
                            } else {
                                scan.load = Some(model);
                            }
                            None
                        }
                        Err(e) => Some(e),
                    }
                }
            }
        };
        if let Some(record) = record {
            let version = record.version;
            status.switch_to = Some(version);
            let serving_it = scan
                .load
                .as_ref()
                .or(served)
                .is_some_and(|m| m.version == version);
            if serving_it || scan.staged.is_some() {
                status.switch_ready = true;
            } else {
                match get(version) {
                    Ok(model) => {
                        if !loaded.into_iter().flatten().any(|m| m.version == version) {
                            tracing::info!(
                                model = %name,
                                version = version.get(),
                                "loaded ahead of a switch of production"
                            );
                        }
                        status.switch_ready = true;
                        scan.staged = Some(model);
                    }
                    Err(e) => status.switch_error = Some(e.to_string()),
                }
            }
        }
        if let Some((error, passes)) = error {
            status.refused = !passes;
            let same_as_before = previous.and_then(|p| p.last_error.as_ref()) == Some(&error);
            if same_as_before {
                status.last_error_at = previous.and_then(|p| p.last_error_at);
            } else {
                tracing::warn!(model = %name, error = %error, "keeping the version already served");
                status.last_error_at = Some(SystemTime::now());
            }
            status.last_error = Some(error);
        }
        scan.status = status;
        scan
    }

    /// Reads `name`'s candidate pointer; returns the candidate to shadow (the one loaded before if
    /// unchanged, else freshly loaded), or none when it is production, missing or unloadable (the
    /// reason goes in `status`).
    fn scan_candidate(
        &self,
        name: &ModelName,
        status: &mut ModelStatus,
        loaded: [Option<&Arc<LoadedModel>>; 2],
    ) -> Option<Arc<LoadedModel>> {
        let candidate = match self.catalog.pointer(name, Pointer::Candidate) {
            Ok(c) => c,
            Err(e) => {
                status.candidate_error = Some(format!("cannot read the candidate pointer: {e}"));
                return None;
            }
        };
        status.candidate = candidate;
        let version = candidate.filter(|c| Some(*c) != status.production)?;
        // Already loaded, as the shadow or as the production version still served: reuse it.
        if let Some(current) = loaded.into_iter().flatten().find(|c| c.version == version) {
            status.shadow = Some(version);
            return Some(Arc::clone(current));
        }
        match self.load(name, version) {
            Ok(loaded) => {
                tracing::info!(
                    model = %name,
                    candidate = version.get(),
                    production = status.production.map(VersionId::get),
                    "shadow scoring the candidate beside production"
                );
                status.shadow = Some(version);
                Some(Arc::new(loaded))
            }
            Err(e) => {
                status.candidate_error = Some(e.to_string());
                None
            }
        }
    }

    /// Load → verify (checksum, schema, identity) → warm up (the probe self-test), counted in
    /// `limen_model_loads_total`. A version that failed before and whose file has not changed
    /// answers with its remembered error until its backoff passes (the poll interval, doubling
    /// per failure up to five minutes), without touching the file beyond one `lstat`.
    fn load(&self, name: &ModelName, version: VersionId) -> Result<LoadedModel, VersionError> {
        let key = (name.clone(), version);
        let identity = self.catalog.model_identity(name, version);
        let now = Instant::now();
        let mut attempts = 0;
        if let Some(failure) = self.failures().get(&key) {
            if failure.identity == identity {
                if now < failure.retry_at {
                    return Err(failure.error.clone());
                }
                attempts = failure.attempts;
            }
        }
        let result = self.try_load(name, version, identity.as_ref());
        // Verifying a file holds about three times its size for a moment (a big tree ensemble:
        // tens of MB); give it back now rather than keep it in this blocking thread's heap.
        crate::budget::release_idle_memory();
        crate::budget::note_large_work();
        self.metrics.load(name.as_str(), result.is_ok());
        match &result {
            Ok(_) => {
                self.failures().pop(&key);
            }
            Err(error) => {
                let attempts = attempts.saturating_add(1);
                let backoff = self
                    .config
                    .revalidate_after
                    .saturating_mul(1 << attempts.min(16).saturating_sub(1))
                    .min(MAX_BACKOFF);
                self.failures().put(
                    key,
                    Failure {
                        error: error.clone(),
                        identity,
                        attempts,
                        retry_at: now + backoff,
                    },
                );
            }
        }
        result
    }

    fn failures(&self) -> MutexGuard<'_, LruCache<(ModelName, VersionId), Failure>> {
        // Each update is a single cache operation, so a poisoned lock is still consistent.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_load(
        &self,
        name: &ModelName,
        version: VersionId,
        identity: Option<&FileIdentity>,
    ) -> Result<LoadedModel, VersionError> {
        let unservable = |why: String| VersionError::Unservable {
            name: name.to_string(),
            version,
            why,
        };
        let unavailable = |budget: bool, why: String| VersionError::Unavailable {
            name: name.to_string(),
            version,
            why,
            budget,
        };
        // The file's size as listed. A file over --max-model-size is refused unread (with that
        // error, so nothing is reserved for it); one that grows after this is still read only up
        // to that limit.
        let len = identity
            .map_or(0, |i| i.len)
            .min(self.catalog.max_model_bytes().saturating_add(1));
        let peak = if len > self.catalog.max_model_bytes() {
            0
        } else {
            usize::try_from(len.saturating_mul(LOAD_BYTES_PER_FILE_BYTE)).unwrap_or(usize::MAX)
        };
        let _reservation = self.config.budget.try_reserve(peak).map_err(|e| {
            unavailable(
                true,
                format!(
                "loading its {len}-byte model.json needs {} MiB of the memory budget and only {} \
                 of {} MiB are free; it is retried after its backoff (raise --memory-budget or \
                 the pod's memory limit if this lasts)",
                peak >> 20,
                e.total.saturating_sub(e.reserved) >> 20,
                e.total >> 20
            ),
            )
        })?;
        let model = self
            .catalog
            .load_verified(name, version)
            .map_err(|e| match e {
                LoadError::Store(StoreError::UnknownVersion { .. }) => VersionError::NotFound {
                    name: name.to_string(),
                    version,
                },
                LoadError::Store(e @ (StoreError::Io { .. } | StoreError::Missing(_))) => {
                    unavailable(false, error_chain(&e))
                }
                LoadError::Store(e) => unservable(error_chain(&e)),
                LoadError::Model(e) => unservable(error_chain(&e)),
            })?;
        model
            .self_test()
            .map_err(|why| unservable(format!("it failed its warm-up: {why}")))?;
        let categorical: Vec<bool> = model
            .preprocessing()
            .map(|c| c.iter().map(|c| c.is_categorical()).collect())
            .unwrap_or_default();
        let metrics = self.metrics.model_handles(
            name.as_str(),
            &version.to_string(),
            model.feature_names(),
            &categorical,
        );
        let drift = (model.has_drift_reference() && self.config.drift_window > 0).then(|| {
            DriftWindow::new(
                &model,
                self.config.drift_window,
                self.config.drift_min_samples,
            )
        });
        Ok(LoadedModel::new(model, version, metrics, drift))
    }

    /// Seconds since `name`'s production pointer changed, by its mtime: the pointer-to-swap lag.
    /// One `stat` per swap, never per poll (on NFS a `stat` can lag a minute behind a change).
    fn pointer_age(&self, name: &ModelName) -> Option<f64> {
        let modified = self.catalog.pointer_modified(name, Pointer::Production)?;
        SystemTime::now()
            .duration_since(modified)
            .ok()
            .map(|d| d.as_secs_f64())
    }

    fn note_store_error(&self, e: &StoreError) {
        let message = error_chain(e);
        let before = self.book.load_full();
        if before.store.error.as_ref() != Some(&message) {
            tracing::warn!(error = %message, "cannot read the store; still serving the models already loaded");
        }
        self.book.store(Arc::new(Book {
            models: before.models.clone(),
            store: StoreStatus {
                error: Some(message),
                ..before.store.clone()
            },
        }));
    }

    /// Rescans whenever `changes` says so, until the returned future is dropped.
    pub async fn run(self: Arc<Self>, mut changes: ChangeSource) {
        loop {
            changes.changed().await;
            let registry = Arc::clone(&self);
            let started = Instant::now();
            match tokio::task::spawn_blocking(move || registry.scan()).await {
                Ok(outcome) => {
                    tracing::debug!(
                        models = outcome.model_dirs.len(),
                        readable = outcome.readable,
                        micros = started.elapsed().as_micros() as u64,
                        "store scanned"
                    );
                    changes.rearm(&outcome);
                }
                Err(e) => {
                    tracing::error!(error = %e, "store scan panicked; retrying at the next change")
                }
            }
        }
    }
}

impl Registry {
    fn pending(&self) -> MutexGuard<'_, BTreeMap<ModelName, Pending>> {
        // Each update replaces or removes whole entries, so a poisoned lock is still consistent.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves when what this server's heartbeat says has changed since it was last written.
    pub async fn heartbeat_due(&self) {
        self.beat_now.notified().await;
    }

    /// Swaps in every pending production version whose activation time has come. No file I/O.
    fn activate_due(&self) {
        let now = crate::fleet::now_ms();
        let due: Vec<(ModelName, Pending)> = {
            let mut pending = self.pending();
            let names: Vec<ModelName> = pending
                .iter()
                .filter(|(_, p)| p.at_ms <= now)
                .map(|(n, _)| n.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| pending.remove(&n).map(|p| (n, p)))
                .collect()
        };
        // A scan that overlapped the switch may have served it already.
        let serving = self.serving.load();
        let due: Vec<(ModelName, Pending)> = due
            .into_iter()
            .filter(|(n, p)| serving.get(n).is_none_or(|m| m.version != p.loaded.version))
            .collect();
        if due.is_empty() {
            return;
        }
        for (name, p) in &due {
            p.loaded.serving_from(now);
            if let Some(old) = serving.get(name) {
                self.retire(name, old);
            }
        }
        self.serving.rcu(|table| {
            let mut table = Table::clone(table);
            for (name, p) in &due {
                table.insert(name.clone(), Arc::clone(&p.loaded));
            }
            table
        });
        for (name, p) in &due {
            let version = p.loaded.version;
            // What this swap replaced (not what the scan saw: a scan may have swapped since).
            let replaced = serving.get(name).map(|m| m.version);
            let previous = replaced.map(|v| v.to_string());
            let lag = p
                .pointer_age
                .map(|age| age + p.seen.elapsed().as_secs_f64());
            self.metrics.swapped(
                name.as_str(),
                &version.to_string(),
                previous.as_deref(),
                lag,
            );
            tracing::info!(
                model = %name,
                version = version.get(),
                previous = replaced.map(VersionId::get),
                switched_at_ms = now,
                late_ms = now - p.at_ms,
                "serving new production version (at the fleet's activation time)"
            );
        }
        self.beat_now.notify_one();
    }

    /// Switches pending production versions at their activation times (by this host's clock),
    /// until the returned future is dropped. Independent of scans, so a slow scan of a large
    /// store never delays a switch.
    pub async fn run_activations(self: Arc<Self>) {
        loop {
            let next = self.pending().values().map(|p| p.at_ms).min();
            match next {
                Some(at) => {
                    let wait = Duration::from_millis(at.saturating_sub(crate::fleet::now_ms()));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => self.activate_due(),
                        () = self.activations.notified() => {}
                    }
                }
                None => self.activations.notified().await,
            }
        }
    }
}

/// `status` with what the serving table says is loaded for it.
fn with_served(mut status: ModelStatus, serving: &Table) -> ModelStatus {
    if let Some(loaded) = serving.get(status.name.as_str()) {
        status.loaded = Some(loaded.version);
        status.loaded_at = Some(loaded.loaded_at);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Move;
    use crate::model::tests::{binary_artifact, multinomial_artifact};

    fn publish(
        catalog: &Catalog,
        name: &ModelName,
        tweak: impl Fn(&mut crate::model::ModelArtifact),
    ) -> VersionId {
        catalog
            .publish_candidate(name, |v| {
                let mut a = binary_artifact();
                a.name = name.to_string();
                a.version = v.get();
                tweak(&mut a);
                a.to_json_bytes()
            })
            .unwrap()
    }

    fn set_production(catalog: &Catalog, name: &ModelName, version: VersionId) {
        catalog
            .lock(name)
            .unwrap()
            .move_production(Move::Promote, version, serde_json::Value::Null)
            .unwrap();
    }

    #[test]
    fn a_load_reserves_its_peak_memory_and_gives_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let iris: ModelName = "iris".parse().unwrap();
        let v1 = publish(&catalog, &iris, |_| {});
        set_production(&catalog, &iris, v1);
        let len = catalog.model_identity(&iris, v1).unwrap().len as usize;
        let peak = len * LOAD_BYTES_PER_FILE_BYTE as usize;
        let budget = Budget::new(peak * 2);
        let _held = budget.try_reserve(peak + 1).unwrap();
        let config = RegistryConfig {
            revalidate_after: Duration::ZERO,
            budget: budget.clone(),
            ..RegistryConfig::default()
        };
        let registry = Registry::new(catalog.clone(), config, Arc::default());
        registry.scan();
        assert!(registry.get("iris").is_none(), "loaded past its budget");
        let error = registry.load_version(&iris, v1).unwrap_err().to_string();
        assert!(error.contains("memory budget"), "{error}");

        drop(_held);
        registry.scan();
        assert_eq!(registry.get("iris").unwrap().version, v1);
        assert_eq!(budget.reserved(), 0, "the load kept its reservation");
    }

    #[test]
    fn live_psi_waits_for_enough_instances() {
        let mut artifact = binary_artifact();
        let stats = artifact.features[0].stats;
        let training: Vec<f64> = (0..1000)
            .map(|i| 0.1 + 2.4 * f64::from(i) / 1000.0)
            .collect();
        artifact.features[0].reference = Some(crate::model::Reference::of(training.iter(), &stats));
        let model = Model::new(artifact).unwrap();
        let window = DriftWindow::new(&model, 10_000, MIN_PSI_INSTANCES);
        for &x in training.iter().step_by(10).take(4) {
            window.observe(&[x], &model);
        }
        assert_eq!(window.psi(0, &model), None, "4 instances");
        assert_eq!(window.collecting(), Some((4, MIN_PSI_INSTANCES)));
        for &x in training.iter().step_by(5) {
            window.observe(&[x], &model);
        }
        let psi = window.psi(0, &model).unwrap();
        assert!(psi < 0.1, "traffic like training: {psi}");
        assert_eq!(window.collecting(), None);
    }

    #[test]
    fn a_missing_value_falls_in_no_drift_bin() {
        let mut artifact = binary_artifact();
        let stats = artifact.features[0].stats;
        artifact.features[0].reference =
            Some(crate::model::Reference::of([0.5, 1.0, 2.0].iter(), &stats));
        let model = Model::new(artifact).unwrap();
        let window = DriftWindow::new(&model, 100, MIN_PSI_INSTANCES);
        window.observe(&[f64::NAN], &model);
        assert_eq!(window.counts(0).iter().sum::<u64>(), 0);
        window.observe(&[1.0], &model);
        assert_eq!(window.counts(0).iter().sum::<u64>(), 1);
    }

    #[test]
    fn a_scan_loads_production_and_swaps_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let iris: ModelName = "iris".parse().unwrap();
        let registry = Registry::new(catalog.clone(), RegistryConfig::default(), Arc::default());
        assert!(registry.scan().readable);
        assert!(registry.get("iris").is_none());

        let v1 = publish(&catalog, &iris, |_| {});
        set_production(&catalog, &iris, v1);
        registry.scan();
        let first = registry.get("iris").unwrap();
        assert_eq!(first.version, v1);
        registry.scan();
        assert!(
            Arc::ptr_eq(&first, &registry.get("iris").unwrap()),
            "reloaded an unchanged model"
        );

        let v2 = publish(&catalog, &iris, |_| {});
        set_production(&catalog, &iris, v2);
        registry.scan();
        assert_eq!(registry.get("iris").unwrap().version, v2);
        // The request that held the old model still has it, whole.
        assert_eq!(first.version, v1);
    }

    /// Writes `name`'s switch record (as a waiting promoter does).
    fn write_switch(catalog: &Catalog, name: &ModelName, record: crate::store::SwitchRecord) {
        catalog.lock(name).unwrap().write_switch(&record).unwrap();
    }

    /// Writes the record and moves production to its version under one lock, as a promoter
    /// does (a later lock holder drops a record production does not name).
    fn switch_production(catalog: &Catalog, name: &ModelName, record: crate::store::SwitchRecord) {
        let guard = catalog.lock(name).unwrap();
        guard.write_switch(&record).unwrap();
        guard
            .move_production(Move::Promote, record.version, serde_json::Value::Null)
            .unwrap();
    }

    /// A record naming `version` in place of `previous`, with an activation time or none.
    fn record(
        version: VersionId,
        previous: VersionId,
        activate_at_ms: Option<u64>,
    ) -> crate::store::SwitchRecord {
        crate::store::SwitchRecord {
            version,
            previous: Some(previous),
            written_at_ms: crate::fleet::now_ms(),
            activate_at_ms,
        }
    }

    /// A store whose `iris` production version is served by a registry that scanned it.
    fn serving_iris() -> (tempfile::TempDir, Catalog, ModelName, VersionId, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let iris: ModelName = "iris".parse().unwrap();
        let v1 = publish(&catalog, &iris, |_| {});
        set_production(&catalog, &iris, v1);
        let registry = Registry::new(catalog.clone(), RegistryConfig::default(), Arc::default());
        registry.scan();
        (dir, catalog, iris, v1, registry)
    }

    #[test]
    fn a_switch_is_loaded_ahead_then_served_at_its_activation_time() {
        let (_dir, catalog, iris, v1, registry) = serving_iris();
        let v2 = publish(&catalog, &iris, |_| {});
        // Step 1: the record names v2; the server loads it beside v1 and says it is ready.
        write_switch(&catalog, &iris, record(v2, v1, None));
        registry.scan();
        let status = registry.status("iris").unwrap();
        assert_eq!((status.switch_to, status.switch_ready), (Some(v2), true));
        assert_eq!(registry.get("iris").unwrap().version, v1);
        let ahead = Arc::clone(&registry.staged.load()[&iris]);

        // Step 2: an activation time ahead, and the pointer: still v1 until the time comes.
        let at = crate::fleet::now_ms() + 30_000;
        switch_production(&catalog, &iris, record(v2, v1, Some(at)));
        registry.scan();
        assert_eq!(registry.get("iris").unwrap().version, v1);
        assert_eq!(registry.status("iris").unwrap().switch_at_ms, Some(at));
        registry.activate_due();
        assert_eq!(registry.get("iris").unwrap().version, v1, "switched early");

        // The time comes (moved here rather than waited for): the version loaded ahead serves.
        registry.pending().get_mut(&iris).unwrap().at_ms = crate::fleet::now_ms() - 1;
        registry.activate_due();
        let served = registry.get("iris").unwrap();
        assert!(Arc::ptr_eq(&served, &ahead), "loaded again at the switch");
        assert!(
            served
                .serving_since_ms
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        );
        registry.scan();
        assert!(Arc::ptr_eq(&registry.get("iris").unwrap(), &ahead));
        assert!(registry.pending().is_empty());
    }

    #[test]
    fn a_switch_time_past_or_too_far_ahead_switches_at_once_and_a_bad_version_is_reported() {
        let (_dir, catalog, iris, v1, registry) = serving_iris();
        // A record that would pin the old version for an hour (a forged file, a clock far
        // off): the pointer wins at once.
        let v2 = publish(&catalog, &iris, |_| {});
        let hour = crate::fleet::now_ms() + 3_600_000;
        switch_production(&catalog, &iris, record(v2, v1, Some(hour)));
        registry.scan();
        assert_eq!(registry.get("iris").unwrap().version, v2);

        // A version the server cannot load: reported, nothing served changes.
        let v3 = publish(&catalog, &iris, |a| a.intercepts = vec![f64::NAN]);
        write_switch(&catalog, &iris, record(v3, v2, None));
        registry.scan();
        let status = registry.status("iris").unwrap();
        assert_eq!((status.switch_to, status.switch_ready), (Some(v3), false));
        assert!(status.switch_error.is_some(), "{status:?}");
        assert_eq!(registry.get("iris").unwrap().version, v2);
    }

    #[test]
    fn a_bad_version_keeps_the_old_one_serving_and_is_reported() {
        let (dir, catalog, iris, v1, registry) = serving_iris();

        // Weights so large that probes overflow: the file verifies, but the warm-up fails.
        let v2 = publish(&catalog, &iris, |a| {
            let huge = multinomial_artifact();
            a.kind = huge.kind;
            a.classes = huge.classes;
            a.positive_class = None;
            a.coefficients = vec![vec![1e300], vec![0.0], vec![0.0]];
            a.intercepts = vec![0.0; 3];
        });
        set_production(&catalog, &iris, v2);
        registry.scan();
        assert_eq!(registry.get("iris").unwrap().version, v1);
        let status = &registry.statuses()[0];
        assert_eq!(status.production, Some(v2));
        assert_eq!(status.loaded, Some(v1));
        let err = status.last_error.as_deref().unwrap();
        assert!(
            err.contains(&v2.to_string()) && err.contains("warm-up"),
            "{err}"
        );

        // Garbage in the pointer: same story, and the garbage is described, never quoted.
        std::fs::write(dir.path().join("iris/production"), "oops").unwrap();
        registry.scan();
        assert_eq!(registry.get("iris").unwrap().version, v1);
        let err = registry.statuses()[0].last_error.clone().unwrap();
        assert!(
            err.contains("does not hold a version id (4 bytes)"),
            "{err}"
        );
        assert!(!err.contains("oops"), "{err}");

        // Fixed (by hand, as it was broken): the error clears.
        std::fs::write(dir.path().join("iris/production"), format!("{v1}\n")).unwrap();
        registry.scan();
        assert_eq!(registry.statuses()[0].last_error, None);
    }

    #[test]
    fn pinned_versions_load_on_demand_and_stop_when_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let iris: ModelName = "iris".parse().unwrap();
        let old = publish(&catalog, &iris, |_| {});
        let new = publish(&catalog, &iris, |_| {});
        set_production(&catalog, &iris, new);
        let config = RegistryConfig {
            revalidate_after: Duration::ZERO,
            ..RegistryConfig::default()
        };
        let registry = Registry::new(catalog.clone(), config, Arc::default());
        registry.scan();
        // Production answers from the serving table; the old version loads on demand.
        assert!(registry.cached_version(&iris, new).is_some());
        assert!(registry.cached_version(&iris, old).is_none());
        assert_eq!(registry.load_version(&iris, old).unwrap().version, old);
        let missing = VersionId::try_from(new.get() + 1).unwrap();
        assert!(matches!(
            registry.load_version(&iris, missing),
            Err(VersionError::NotFound { .. })
        ));
        catalog
            .lock(&iris)
            .unwrap()
            .delete(&[old], &[], serde_json::Value::Null)
            .unwrap();
        assert!(matches!(
            registry.load_version(&iris, old),
            Err(VersionError::NotFound { .. })
        ));
        // A corrupt version is an error that says so, not a missing one.
        let bad = publish(&catalog, &iris, |_| {});
        std::fs::write(
            dir.path().join(format!("iris/{bad}/model.json")),
            b"{\"truncated\": ",
        )
        .unwrap();
        let err = registry.load_version(&iris, bad).unwrap_err();
        assert!(matches!(err, VersionError::Unservable { .. }), "{err}");
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }

    #[test]
    fn detail_shows_metadata_versions_and_pointers() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let iris: ModelName = "iris".parse().unwrap();
        let v = publish(&catalog, &iris, |_| {});
        set_production(&catalog, &iris, v);
        let registry = Registry::new(catalog.clone(), RegistryConfig::default(), Arc::default());
        assert!(registry.detail(&iris).is_none());
        registry.scan();
        let detail = registry.detail(&iris).unwrap().unwrap();
        assert_eq!(detail.status.loaded, Some(v));
        assert_eq!(detail.status.production, Some(v));
        assert_eq!(detail.status.candidate, Some(v));
        assert_eq!(detail.versions, vec![v]);
        assert_eq!(detail.served.unwrap().model.classes()[1], "virginica");
    }

    #[test]
    fn an_unreadable_store_keeps_serving_and_a_removed_model_stops() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let catalog = Catalog::open(&root);
        let iris: ModelName = "iris".parse().unwrap();
        let v1 = publish(&catalog, &iris, |_| {});
        set_production(&catalog, &iris, v1);
        let registry = Registry::new(catalog.clone(), RegistryConfig::default(), Arc::default());
        registry.scan();

        // The root gone (an unmounted volume): keep serving, and say why.
        let aside = dir.path().join("aside");
        std::fs::rename(&root, &aside).unwrap();
        assert!(!registry.scan().readable);
        assert_eq!(registry.get("iris").unwrap().version, v1);
        assert!(registry
            .store_status()
            .error
            .unwrap()
            .contains("does not exist"));
        std::fs::rename(&aside, &root).unwrap();
        assert!(registry.scan().readable);

        // The root replaced by a file: keep serving.
        std::fs::rename(&root, &aside).unwrap();
        std::fs::write(&root, b"not a folder").unwrap();
        assert!(!registry.scan().readable);
        assert_eq!(registry.get("iris").unwrap().version, v1);
        assert!(registry.store_status().error.is_some());

        // Back, then the model's folder removed: it stops being served.
        std::fs::remove_file(&root).unwrap();
        std::fs::rename(&aside, &root).unwrap();
        assert!(registry.scan().readable);
        assert!(registry.store_status().error.is_none());
        std::fs::remove_dir_all(catalog.model_dir(&iris)).unwrap();
        registry.scan();
        assert!(registry.get("iris").is_none());
        assert!(registry.statuses().is_empty());
    }
}
