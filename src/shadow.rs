//! Shadow scoring: a fraction of live requests is scored again, off the response path, by the
//! model's candidate version, and the two answers are compared per instance.
//!
//! The request path only draws a random number and, for a sampled request, copies its decoded
//! rows into a bounded queue (`try_send`: a full queue drops the sample and counts it, never
//! waits, and never wakes a thread: the worker is not parked on the queue but drains it every
//! few milliseconds, so a sample costs the request no system call). One worker thread scores
//! each sample with production and the candidate and keeps
//! running totals per (model, candidate version): label agreement and |Δp| of the top class
//! (binary models: of the positive class). The client's answer, latency and status never depend
//! on the candidate. Totals are shown in `/models/{name}` and `/metrics`, and written as evidence
//! files for `limen validate` at most once per poll interval.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::IntCounter;

use crate::budget::{Budget, Reservation};
use crate::evidence::{self, ShadowTotals};
use crate::model::ColumnMap;
use crate::registry::LoadedModel;
use crate::store::{now_rfc3339, ModelName, VersionId};
use crate::telemetry::{error_chain, Metrics};

/// Samples waiting for the worker; beyond this, samples are dropped and counted.
const QUEUE: usize = 4096;
/// How long the worker sleeps after it has drained the queue. It then takes everything queued
/// meanwhile in one go: 100 wake-ups a second whatever the traffic (each one a context switch
/// on a machine the requests need), and at 100,000 sampled requests a second the queue holds
/// 1,000 samples when it wakes, under [`QUEUE`].
const NAP: std::time::Duration = std::time::Duration::from_millis(10);

/// Checked settings of shadow scoring.
#[derive(Debug, Clone)]
pub struct ShadowConfig {
    /// The fraction of eligible requests scored by the candidate too, 0 to 1 (0 turns it off).
    pub rate: f64,
    /// Where to write evidence files, if anywhere.
    pub evidence: Option<PathBuf>,
    /// This server's name in evidence files.
    pub instance: String,
}

/// A sampled request: its rows, and the two versions to compare on them.
struct Job {
    production: Arc<LoadedModel>,
    candidate: Arc<LoadedModel>,
    rows: Vec<f64>,
    /// The rows' bytes in the memory budget, given back when the worker is done with them.
    _held: Reservation,
}

/// What a queued job holds besides its rows' values: the job itself and the queue's slot.
const JOB_BYTES: usize = 128;

type Key = (ModelName, VersionId);

/// Running totals, and whether they changed since the evidence was last written.
#[derive(Debug, Clone, Default)]
struct Entry {
    totals: ShadowTotals,
    dirty: bool,
}

/// Shadow scoring for one server.
pub struct Shadow {
    config: ShadowConfig,
    sender: Option<SyncSender<Job>>,
    totals: Arc<Mutex<HashMap<Key, Entry>>>,
    budget: Budget,
    /// `limen_shadow_dropped_total` by reason: the queue was full, the budget could not hold it.
    queue_full: IntCounter,
    over_budget: IntCounter,
}

impl Shadow {
    /// Starts the worker thread (unless the rate is 0). The worker stops when the `Shadow` is
    /// dropped. Queued samples reserve their bytes from `budget`.
    pub fn start(config: ShadowConfig, metrics: Arc<Metrics>, budget: Budget) -> Self {
        let totals: Arc<Mutex<HashMap<Key, Entry>>> = Arc::default();
        let queue_full = metrics.shadow_dropped("queue_full");
        let over_budget = metrics.shadow_dropped("over_budget");
        let sender = (config.rate > 0.0).then(|| {
            let (sender, receiver) = mpsc::sync_channel(QUEUE);
            let worker_totals = Arc::clone(&totals);
            let spawned = std::thread::Builder::new()
                .name("limen-shadow".to_owned())
                .spawn(move || work(receiver, &worker_totals));
            match spawned {
                Ok(_) => Some(sender),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the shadow worker; shadow scoring is off");
                    None
                }
            }
        });
        Self {
            config,
            sender: sender.flatten(),
            totals,
            budget,
            queue_full,
            over_budget,
        }
    }

    /// Whether shadow scoring is on.
    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Decides whether this request is sampled: true with probability `rate`.
    pub fn sample(&self) -> bool {
        self.sender.is_some() && (self.config.rate >= 1.0 || fastrand::f64() < self.config.rate)
    }

    /// Queues `rows` (row-major, the production model's feature order) to be compared; drops
    /// them, counted, when the memory budget cannot hold them or the queue is full.
    pub fn submit(
        &self,
        production: Arc<LoadedModel>,
        candidate: Arc<LoadedModel>,
        rows: Vec<f64>,
    ) {
        let Some(sender) = &self.sender else { return };
        let bytes = rows.capacity() * std::mem::size_of::<f64>() + JOB_BYTES;
        let Ok(held) = self.budget.try_reserve(bytes) else {
            self.over_budget.inc();
            return;
        };
        let job = Job {
            production,
            candidate,
            rows,
            _held: held,
        };
        match sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.queue_full.inc(),
        }
    }

    /// The totals for `model`'s candidate `version`, if any sample was taken.
    pub fn totals(&self, model: &ModelName, version: VersionId) -> Option<ShadowTotals> {
        lock(&self.totals)
            .get(&(model.clone(), version))
            .map(|e| e.totals.clone())
    }

    /// Writes the evidence of every candidate whose totals changed since the last write.
    /// Blocking (file I/O); the totals' lock is not held while writing.
    pub fn write_evidence(&self) {
        let Some(root) = &self.config.evidence else {
            return;
        };
        let changed: Vec<(Key, ShadowTotals)> = {
            let mut totals = lock(&self.totals);
            totals
                .iter_mut()
                .filter(|(_, e)| e.dirty)
                .map(|(key, e)| {
                    e.dirty = false;
                    let mut totals = e.totals.clone();
                    totals.instance = self.config.instance.clone();
                    (key.clone(), totals)
                })
                .collect()
        };
        for ((model, version), totals) in changed {
            if let Err(e) = evidence::write(root, &model, version, &self.config.instance, &totals) {
                tracing::warn!(model = %model, candidate = version.get(), error = %error_chain(&e), "cannot write shadow evidence; retrying at the next interval");
                if let Some(entry) = lock(&self.totals).get_mut(&(model, version)) {
                    entry.dirty = true;
                }
            }
        }
    }

    /// Forgets the totals of candidates no longer in shadow (after their evidence is written).
    pub fn retain(&self, live: &HashSet<Key>) {
        lock(&self.totals).retain(|key, e| e.dirty || live.contains(key));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a few field assignments, so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How production's rows map onto a candidate's features (by name), for the production version
/// last seen with it.
struct Handles {
    columns: Option<(VersionId, ColumnMap)>,
}

/// The worker: compares each queued sample, until the sending side is gone.
fn work(receiver: Receiver<Job>, totals: &Mutex<HashMap<Key, Entry>>) {
    let mut handles: HashMap<Key, Handles> = HashMap::new();
    let (mut p_prod, mut p_cand, mut gathered) = (Vec::new(), Vec::new(), Vec::new());
    let mut large = false;
    loop {
        // Polled, not parked: a sender that finds no parked receiver makes no system call.
        let job = match receiver.try_recv() {
            Ok(job) => job,
            Err(mpsc::TryRecvError::Empty) => {
                if std::mem::take(&mut large) {
                    // Idle after large samples: their rows go back (crate::budget says why).
                    crate::budget::release_idle_memory();
                    crate::budget::note_large_work();
                }
                std::thread::sleep(NAP);
                continue;
            }
            Err(mpsc::TryRecvError::Disconnected) => return,
        };
        let Ok(model) = job.candidate.model.name().parse::<ModelName>() else {
            continue;
        };
        let key = (model, job.candidate.version);
        large |= job.rows.len() > 8 * 1024;
        let width = job.production.model.feature_names().len().max(1);
        let binary = job.production.model.positive_probability_index().is_some();
        let (mut samples, mut agreements, mut errors) = (0u64, 0u64, 0u64);
        let (mut sum, mut max) = (0.0f64, 0.0f64);
        // The candidate's own series: they end when it is no longer loaded anywhere.
        let series = job.candidate.metrics.shadow();
        if handles.len() > 64 {
            // Candidates come and go: forget the maps of those not seen lately.
            handles.clear();
        }
        let h = handles
            .entry(key.clone())
            .or_insert(Handles { columns: None });
        let production_version = job.production.version;
        if h.columns
            .as_ref()
            .is_none_or(|(v, _)| *v != production_version)
        {
            let map = ColumnMap::between(&job.production.model, &job.candidate.model);
            if let ColumnMap::Missing(feature) = &map {
                tracing::warn!(model = %key.0, candidate = key.1.get(), production = production_version.get(), feature = %feature, "the candidate needs a feature production's requests do not carry; every shadowed row counts as a candidate error");
            }
            h.columns = Some((production_version, map));
        }
        let Some((_, columns)) = &h.columns else {
            continue;
        };
        for row in job.rows.chunks_exact(width) {
            let Ok(label) = job.production.model.predict_into(row, &mut p_prod) else {
                continue;
            };
            // The candidate sees the same values by feature name, whatever its column order.
            let scored = columns
                .apply(row, &mut gathered)
                .map(|row| job.candidate.model.predict_into(row, &mut p_cand));
            let Some(Ok(candidate_label)) = scored else {
                errors += 1;
                continue;
            };
            // The top class's probability (for a binary model, the positive class's), found by
            // name in the candidate, whose classes may be ordered or numbered differently.
            let top = if binary { 1 } else { label };
            let top_class = &job.production.model.classes()[top];
            let candidate_p = job
                .candidate
                .model
                .classes()
                .iter()
                .position(|c| c == top_class)
                .map_or(0.0, |i| p_cand[i]);
            let diff = (p_prod[top] - candidate_p).abs();
            samples += 1;
            if job.candidate.model.classes()[candidate_label]
                == job.production.model.classes()[label]
            {
                agreements += 1;
            } else {
                series.disagreements.inc();
            }
            sum += diff;
            max = max.max(diff);
            series.abs_diff.observe(diff);
        }
        series.samples.inc_by(samples);
        let now = now_rfc3339();
        let mut all = lock(totals);
        let entry = all.entry(key.clone()).or_insert_with(|| {
            tracing::info!(model = %key.0, candidate = key.1.get(), production = job.production.version.get(), "first shadow sample for this candidate");
            Entry {
                totals: ShadowTotals {
                    model: key.0.to_string(),
                    candidate: key.1.get(),
                    first_at: Some(now.clone()),
                    ..ShadowTotals::default()
                },
                dirty: true,
            }
        });
        let t = &mut entry.totals;
        t.samples += samples;
        t.label_agreements += agreements;
        t.candidate_errors += errors;
        t.sum_abs_diff += sum;
        t.max_abs_diff = t.max_abs_diff.max(max);
        t.last_at = Some(now);
        entry.dirty = true;
    }
}
