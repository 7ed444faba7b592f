//! `limen watch NAME --for 10m`: watches a new production version through the fleet's
//! heartbeats for a window after its promotion, and rolls it back when a guardrail trips.
//!
//! Every `--every` it sums, over the live servers that serve the version, their live counters
//! (instances scored, requests they could not answer, instances out of the training range,
//! answers per predicted class) and reads their live PSI; once at least `--min-samples`
//! instances are in, it checks:
//!
//! - error share: failed requests / (failed requests + instances scored);
//! - out-of-range share: instances with a value outside its training range / instances;
//! - live PSI: the largest feature PSI any server with `--min-samples` instances reports;
//! - class shift: the largest change of a predicted class's share against the version it
//!   replaced, as the servers counted it until they switched (when that had `--min-samples`).
//!
//! A trip rolls production back to the version it replaced at once (no waiting for the fleet:
//! speed matters more than switching together here; each server follows on its next poll) with
//! the guardrail, the value and the limit in the history line, and exits 1. A window with too
//! few instances to judge exits 1 without rolling back (missing evidence is not a pass); a
//! clean window exits 0. Production moved by someone else meanwhile ends the watch (exit 0).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::catalog::Catalog;
use crate::fleet::{self, Fleet};
use crate::ops::{self, OpsError};
use crate::store::{ModelName, Pointer, StoreError, VersionId};
use crate::switch::SwitchOptions;

/// The limits and the window of one watch.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub model: ModelName,
    /// How long to watch.
    pub window: Duration,
    /// How often to read the fleet.
    pub every: Duration,
    /// The least instances scored before the shares are judged (and per server for its PSI,
    /// and for the replaced version's class shares).
    pub min_samples: u64,
    pub max_error_share: f64,
    pub max_out_of_range_share: f64,
    pub max_psi: f64,
    pub max_class_shift: f64,
    /// Roll back on a trip (`false`: `--no-rollback`, report and exit 1 only).
    pub rollback: bool,
}

impl WatchConfig {
    pub const DEFAULT_MIN_SAMPLES: u64 = 100;
    pub const DEFAULT_MAX_ERROR_SHARE: f64 = 0.01;
    pub const DEFAULT_MAX_OUT_OF_RANGE_SHARE: f64 = 0.25;
    pub const DEFAULT_MAX_PSI: f64 = 0.5;
    pub const DEFAULT_MAX_CLASS_SHIFT: f64 = 0.2;
}

/// Why a watch could not run.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} has no production version to watch: promote one first (`limen validate`)")]
    NoProduction(String),
    #[error("cannot roll back: {0}")]
    Rollback(#[from] OpsError),
}

/// What the live servers of a version have counted, summed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observation {
    /// Live servers serving the version.
    pub servers: usize,
    pub predictions: u64,
    pub errors: u64,
    pub out_of_range: u64,
    pub classes: BTreeMap<String, u64>,
    /// The replaced version's answers per class, summed over the servers that served it.
    pub previous_classes: BTreeMap<String, u64>,
    /// The largest feature PSI a server with enough instances reports: (feature, PSI, server).
    pub max_psi: Option<(String, f64, String)>,
}

impl Observation {
    /// Sums what the live servers of `fleet` say of `model` at `version`; `previous` is the
    /// version it replaced.
    pub fn of(
        fleet: &Fleet,
        model: &str,
        version: VersionId,
        previous: Option<VersionId>,
        min_samples: u64,
    ) -> Self {
        let mut seen = Self::default();
        for replica in fleet.live() {
            let Some(served) = replica.heartbeat.models.get(model) else {
                continue;
            };
            if let Some(retired) = served
                .retired
                .as_ref()
                .filter(|r| Some(r.version) == previous.map(VersionId::get))
            {
                add(&mut seen.previous_classes, &retired.classes);
            }
            if served.serving != Some(version.get()) {
                continue;
            }
            seen.servers += 1;
            seen.predictions = seen.predictions.saturating_add(served.predictions);
            seen.errors = seen.errors.saturating_add(served.errors);
            seen.out_of_range = seen.out_of_range.saturating_add(served.out_of_range);
            add(&mut seen.classes, &served.classes);
            if served.predictions >= min_samples {
                for (feature, &psi) in &served.psi {
                    if psi.is_finite() && seen.max_psi.as_ref().is_none_or(|m| psi > m.1) {
                        let who = replica.heartbeat.instance.clone();
                        seen.max_psi = Some((feature.clone(), psi, who));
                    }
                }
            }
        }
        seen
    }

    pub fn error_share(&self) -> f64 {
        share(self.errors, self.errors.saturating_add(self.predictions))
    }

    pub fn out_of_range_share(&self) -> f64 {
        share(self.out_of_range, self.predictions)
    }

    /// The largest change of a class's share of answers against the replaced version, and the
    /// class; `None` while either side has fewer than `min_samples` answers.
    pub fn class_shift(&self, min_samples: u64) -> Option<(String, f64)> {
        let (new, old) = (
            self.classes.values().sum::<u64>(),
            self.previous_classes.values().sum::<u64>(),
        );
        if new < min_samples.max(1) || old < min_samples.max(1) {
            return None;
        }
        self.classes
            .keys()
            .chain(self.previous_classes.keys())
            .map(|c| {
                let get = |m: &BTreeMap<String, u64>| m.get(c).copied().unwrap_or(0);
                let delta =
                    share(get(&self.classes), new) - share(get(&self.previous_classes), old);
                (c.clone(), delta.abs())
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

fn add(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (class, &n) in from {
        let total = into.entry(class.clone()).or_default();
        *total = total.saturating_add(n);
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// A guardrail that tripped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trip {
    pub guardrail: &'static str,
    pub observed: f64,
    pub limit: f64,
    pub detail: String,
}

/// The first guardrail `seen` trips under `cfg`, if any (shares are judged only from
/// `min_samples` instances on).
pub fn check(seen: &Observation, cfg: &WatchConfig) -> Option<Trip> {
    if seen.predictions.saturating_add(seen.errors) < cfg.min_samples.max(1) {
        return None;
    }
    let trip = |guardrail, observed: f64, limit: f64, detail: String| {
        (observed > limit).then_some(Trip {
            guardrail,
            observed,
            limit,
            detail,
        })
    };
    let errors = seen.error_share();
    trip(
        "error share",
        errors,
        cfg.max_error_share,
        format!(
            "{} of {} requests failed",
            seen.errors,
            seen.errors + seen.predictions
        ),
    )
    .or_else(|| {
        trip(
            "out-of-range share",
            seen.out_of_range_share(),
            cfg.max_out_of_range_share,
            format!(
                "{} of {} instances had a value outside the training range",
                seen.out_of_range, seen.predictions
            ),
        )
    })
    .or_else(|| {
        let (feature, psi, who) = seen.max_psi.clone()?;
        trip(
            "live PSI",
            psi,
            cfg.max_psi,
            format!("feature {feature} on {who}"),
        )
    })
    .or_else(|| {
        let (class, shift) = seen.class_shift(cfg.min_samples)?;
        trip(
            "class shift",
            shift,
            cfg.max_class_shift,
            format!("the share of {class:?} answers against the version it replaced"),
        )
    })
}

/// How a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The window passed with enough instances and no guardrail tripped.
    Clean,
    /// A guardrail tripped; production was rolled back (unless `--no-rollback`).
    Tripped,
    /// Too few instances by the end of the window to judge: not a pass.
    Inconclusive,
    /// Production moved to another version meanwhile: nothing left to watch.
    Superseded,
}

/// What `limen watch` found.
#[derive(Debug, Clone, Serialize)]
pub struct WatchReport {
    pub model: String,
    pub version: VersionId,
    pub previous: Option<VersionId>,
    pub verdict: Verdict,
    pub trip: Option<Trip>,
    /// Where production went on a trip.
    pub rolled_back_to: Option<VersionId>,
    pub last: Observation,
    pub watched_ms: u64,
}

impl fmt::Display for WatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, v) = (&self.model, self.version);
        match (self.verdict, &self.trip) {
            (Verdict::Tripped, Some(t)) => {
                write!(
                    f,
                    "TRIPPED {name}/{v}: {} {:.4} > {:.4} ({})",
                    t.guardrail, t.observed, t.limit, t.detail
                )?;
                match self.rolled_back_to {
                    Some(to) => writeln!(f, "; rolled back to {to}"),
                    None => writeln!(f, "; not rolled back"),
                }
            }
            (Verdict::Clean, _) => writeln!(
                f,
                "clean: {name}/{v} passed its {:.0} s watch ({} instances on {} servers)",
                self.watched_ms as f64 / 1000.0,
                self.last.predictions,
                self.last.servers
            ),
            (Verdict::Inconclusive, _) => {
                write!(
                    f,
                    "inconclusive: {name}/{v} scored {} instances in its watch, fewer than --min-samples; not rolled back",
                    self.last.predictions
                )?;
                if self.last.servers == 0 {
                    write!(f, " (no live server serves it: servers report through heartbeats in <store>/.fleet, see --heartbeat-interval)")?;
                }
                writeln!(f)
            }
            (Verdict::Superseded, _) => {
                writeln!(f, "{name}: production moved on from {v}; the watch ends")
            }
            (Verdict::Tripped, None) => writeln!(f, "TRIPPED {name}/{v}"),
        }
    }
}

/// One line of progress per look at the fleet.
fn progress(seen: &Observation, cfg: &WatchConfig, elapsed: Duration) {
    tracing::info!(
        model = %cfg.model,
        elapsed_s = elapsed.as_secs(),
        servers = seen.servers,
        instances = seen.predictions,
        error_share = seen.error_share(),
        out_of_range_share = seen.out_of_range_share(),
        max_psi = seen.max_psi.as_ref().map(|m| m.1),
        class_shift = seen.class_shift(cfg.min_samples).map(|c| c.1),
        "watching"
    );
}

/// Runs the watch (blocking: it sleeps between looks).
pub fn run(catalog: &Catalog, cfg: &WatchConfig) -> Result<WatchReport, WatchError> {
    let name = &cfg.model;
    catalog.require_model(name)?;
    let version = catalog
        .pointer(name, Pointer::Production)?
        .ok_or_else(|| WatchError::NoProduction(name.to_string()))?;
    // The move that made it production (read from the history's end, not the whole file).
    let previous = catalog
        .last_move(name)?
        .filter(|e| e.version == Some(version))
        .and_then(|e| e.previous);
    let started = Instant::now();
    let mut report = WatchReport {
        model: name.to_string(),
        version,
        previous,
        verdict: Verdict::Inconclusive,
        trip: None,
        rolled_back_to: None,
        last: Observation::default(),
        watched_ms: 0,
    };
    loop {
        let fleet = fleet::read(catalog.root(), fleet::now_ms())?;
        let seen = Observation::of(&fleet, name.as_str(), version, previous, cfg.min_samples);
        progress(&seen, cfg, started.elapsed());
        report.last = seen;
        report.watched_ms = started.elapsed().as_millis() as u64;
        if catalog.pointer(name, Pointer::Production)? != Some(version) {
            report.verdict = Verdict::Superseded;
            return Ok(report);
        }
        if let Some(trip) = check(&report.last, cfg) {
            tracing::warn!(model = %name, version = version.get(), guardrail = trip.guardrail, observed = trip.observed, limit = trip.limit, "guardrail tripped");
            if cfg.rollback && previous.is_some() {
                let details = serde_json::json!({
                    "via": "limen watch",
                    "guardrail": trip.guardrail,
                    "observed": trip.observed,
                    "limit": trip.limit,
                    "reason": trip.detail,
                    "instances": report.last.predictions,
                });
                let back = ops::rollback_from(
                    catalog,
                    name,
                    Some(version),
                    details,
                    SwitchOptions {
                        wait: false,
                        ..SwitchOptions::default()
                    },
                )?;
                report.rolled_back_to = Some(back.switched.change.to);
            }
            report.verdict = Verdict::Tripped;
            report.trip = Some(trip);
            return Ok(report);
        }
        let left = cfg.window.saturating_sub(started.elapsed());
        if left.is_zero() {
            // `--min-samples 0` says no traffic is needed for a pass.
            let enough =
                report.last.predictions.saturating_add(report.last.errors) >= cfg.min_samples;
            report.verdict = if enough {
                Verdict::Clean
            } else {
                Verdict::Inconclusive
            };
            return Ok(report);
        }
        std::thread::sleep(cfg.every.min(left));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> WatchConfig {
        WatchConfig {
            model: "iris".parse().unwrap(),
            window: Duration::from_secs(60),
            every: Duration::from_secs(1),
            min_samples: 100,
            max_error_share: 0.01,
            max_out_of_range_share: 0.25,
            max_psi: 0.5,
            max_class_shift: 0.2,
            rollback: true,
        }
    }

    fn seen(predictions: u64, errors: u64, out: u64) -> Observation {
        Observation {
            servers: 2,
            predictions,
            errors,
            out_of_range: out,
            classes: [("a".into(), predictions / 2), ("b".into(), predictions / 2)].into(),
            previous_classes: [("a".into(), 500), ("b".into(), 500)].into(),
            max_psi: None,
        }
    }

    #[test]
    fn nothing_is_judged_below_the_least_samples() {
        assert_eq!(check(&seen(50, 40, 50), &cfg()), None);
    }

    #[test]
    fn each_guardrail_trips_past_its_limit_and_not_at_it() {
        let c = cfg();
        assert_eq!(check(&seen(1000, 0, 0), &c), None);
        let t = check(&seen(990, 10, 0), &c);
        assert_eq!(t, None, "10 of 1000 is exactly 1 %: not past the limit");
        let t = check(&seen(980, 20, 0), &c).unwrap();
        assert_eq!((t.guardrail, t.observed), ("error share", 0.02));
        let t = check(&seen(1000, 0, 300), &c).unwrap();
        assert_eq!((t.guardrail, t.observed), ("out-of-range share", 0.3));
        let mut drifted = seen(1000, 0, 0);
        drifted.max_psi = Some(("petal_width".into(), 0.9, "pod-a".into()));
        let t = check(&drifted, &c).unwrap();
        assert!(
            t.guardrail == "live PSI" && t.detail.contains("pod-a"),
            "{t:?}"
        );
        let mut shifted = seen(1000, 0, 0);
        shifted.classes = [("a".into(), 900), ("b".into(), 100)].into();
        let t = check(&shifted, &c).unwrap();
        assert_eq!(t.guardrail, "class shift");
        assert!((t.observed - 0.4).abs() < 1e-12, "{t:?}");
    }

    #[test]
    fn a_class_shift_needs_enough_answers_on_both_sides() {
        let mut s = seen(1000, 0, 0);
        s.previous_classes = [("a".into(), 10)].into();
        assert_eq!(s.class_shift(100), None);
        // A class the new version never answers counts in full.
        s.previous_classes = [("a".into(), 500), ("c".into(), 500)].into();
        let (class, shift) = s.class_shift(100).unwrap();
        assert!(
            shift == 0.5 && (class == "b" || class == "c"),
            "{class} {shift}"
        );
    }
}
