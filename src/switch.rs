//! Switching production together: a promotion, rollback or `limen models promote` first has
//! every live server (by its heartbeat) load the new version, then gives the fleet one time to
//! switch at, so the replicas change within their clocks' skew instead of a poll interval.
//!
//! Under the model's lock:
//!
//! 1. read the fleet; no live server (one server with heartbeats off, or none) moves production
//!    at once, as before;
//! 2. write `<model>/switch` naming the version (no activation time): every server loads it,
//!    verifies and warms it beside what it serves, and says so in its heartbeat;
//! 3. wait until each server live at the start reports it loaded (a server that stops
//!    heartbeating drops out; one that joins meanwhile is not waited for), or until one reports
//!    it cannot load it, or the timeout: then remove the record and refuse, naming the servers,
//!    with production untouched;
//! 4. rewrite the record with an activation time a poll interval and a margin ahead, move the
//!    pointer (the catalog's crash-safe move), and return once that time has passed.
//!
//! A server that reads the pointer naming the record's version before its activation time keeps
//! the old version until then, by its own clock; one that reads it later switches at once. The
//! pointer stays a version id, so readers that know nothing of the record switch on their next
//! poll, as before.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::catalog::{ModelGuard, Move, ProductionChange};
use crate::fleet::{self, Fleet};
use crate::store::{Pointer, StoreError, SwitchRecord, VersionId};

/// How long a promotion waits for the fleet by default (`--switch-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the waiting promoter re-reads the heartbeats.
const RECHECK: Duration = Duration::from_millis(100);
/// The least margin past the slowest poll interval before the activation time.
const MIN_MARGIN_MS: u64 = 500;

/// How a move of production treats the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchOptions {
    /// Wait for every live server to load the version first (`false`: `--no-wait`, move now).
    pub wait: bool,
    /// How long to wait before refusing.
    pub timeout: Duration,
}

impl Default for SwitchOptions {
    fn default() -> Self {
        Self {
            wait: true,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Why production was not moved.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{name}/{version} was not promoted: {}; production stays {}. Fix or stop those servers (`limen models fleet {name}` shows them), or pass --no-wait to switch without them", not_ready.join("; "), previous.map_or("unset".to_owned(), |v| v.to_string()))]
    FleetNotReady {
        name: String,
        version: VersionId,
        previous: Option<VersionId>,
        /// `instance: why`, one per server that held the switch up.
        not_ready: Vec<String>,
    },
}

/// What a move of production did, and with which servers.
#[derive(Debug, Clone, Serialize)]
pub struct Switched {
    #[serde(flatten)]
    pub change: ProductionChange,
    /// The live servers that loaded the version before the switch (empty: nobody was waited for).
    pub replicas: Vec<String>,
    /// When the fleet switched (unix milliseconds), if it switched together.
    pub activate_at_ms: Option<u64>,
    /// How long the servers took to load it.
    pub waited_ms: u64,
}

/// Moves `guard`'s model's production to `to`, with the fleet (see the module docs). `details`
/// go in the history line, with the switch's servers and time added.
pub fn move_production(
    guard: &ModelGuard<'_>,
    kind: Move,
    to: VersionId,
    details: serde_json::Value,
    options: SwitchOptions,
) -> Result<Switched, SwitchError> {
    let from = guard.pointer(Pointer::Production)?;
    let started = Instant::now();
    let alone = |guard: &ModelGuard<'_>, details| -> Result<Switched, SwitchError> {
        guard.clear_switch()?;
        Ok(Switched {
            change: guard.move_production(kind, to, details)?,
            replicas: Vec::new(),
            activate_at_ms: None,
            waited_ms: 0,
        })
    };
    if from == Some(to) || !options.wait {
        return alone(guard, details);
    }
    let fleet = fleet::read(guard.root(), fleet::now_ms())?;
    if fleet.too_many {
        // Which servers are live cannot be told: refuse rather than move without them.
        return Err(SwitchError::FleetNotReady {
            name: guard.name().to_string(),
            version: to,
            previous: from,
            not_ready: vec![format!(
                "{} holds more than {} heartbeat files, so which servers are live cannot be told (remove the stale ones)",
                fleet::folder(guard.root()).display(),
                fleet::MAX_REPLICAS
            )],
        });
    }
    let waiting: BTreeSet<String> = fleet.live().map(|r| r.heartbeat.instance.clone()).collect();
    if waiting.is_empty() {
        return alone(guard, details);
    }
    let prepared_at_ms = fleet::now_ms();
    let mut record = SwitchRecord {
        version: to,
        previous: from,
        written_at_ms: prepared_at_ms,
        activate_at_ms: None,
    };
    guard.write_switch(&record)?;
    tracing::info!(
        model = %guard.name(),
        version = to.get(),
        servers = waiting.len(),
        "waiting for every live server to load the new version"
    );
    let ready = match wait_for_fleet(guard, to, &waiting, prepared_at_ms, options.timeout) {
        Ok(ready) => ready,
        Err(not_ready) => {
            guard.clear_switch()?;
            return Err(SwitchError::FleetNotReady {
                name: guard.name().to_string(),
                version: to,
                previous: from,
                not_ready,
            });
        }
    };
    let now = fleet::now_ms();
    let activate_at_ms = now + lead_ms(&ready.fleet);
    record.written_at_ms = now;
    record.activate_at_ms = Some(activate_at_ms);
    guard.write_switch(&record)?;
    let mut details = details;
    let switch = serde_json::json!({
        "replicas": ready.replicas,
        "activate_at": crate::store::rfc3339_from_ms(activate_at_ms),
        "waited_ms": ready.waited_ms,
    });
    match details.as_object_mut() {
        Some(map) => {
            map.insert("switch".to_owned(), switch);
        }
        None => details = serde_json::json!({ "switch": switch }),
    }
    let change = guard.move_production(kind, to, details)?;
    // Return once the fleet has switched, still holding the lock: the next move starts after.
    std::thread::sleep(Duration::from_millis(
        activate_at_ms.saturating_sub(fleet::now_ms()),
    ));
    tracing::info!(
        model = %guard.name(),
        version = to.get(),
        servers = ready.replicas.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "the fleet switched together"
    );
    Ok(Switched {
        change,
        replicas: ready.replicas,
        activate_at_ms: Some(activate_at_ms),
        waited_ms: ready.waited_ms,
    })
}

/// The fleet once every awaited server had the version loaded.
struct Ready {
    fleet: Fleet,
    replicas: Vec<String>,
    waited_ms: u64,
}

/// Re-reads the heartbeats until every server in `waiting` that is still live reports `to`
/// loaded; `Err` names each server that could not load it, or that had not by `timeout`.
fn wait_for_fleet(
    guard: &ModelGuard<'_>,
    to: VersionId,
    waiting: &BTreeSet<String>,
    prepared_at_ms: u64,
    timeout: Duration,
) -> Result<Ready, Vec<String>> {
    let started = Instant::now();
    let name = guard.name().as_str();
    loop {
        let fleet = fleet::read(guard.root(), fleet::now_ms())
            .map_err(|e| vec![format!("cannot read the fleet's heartbeats: {e}")])?;
        let mut ready = Vec::new();
        let mut failed = Vec::new();
        let mut pending = Vec::new();
        for instance in waiting {
            match readiness(&fleet, name, to, instance, prepared_at_ms) {
                Readiness::Ready => ready.push(instance.clone()),
                Readiness::Failed(why) => failed.push(format!("{instance} {why}")),
                Readiness::Pending(why) => pending.push((instance.clone(), why)),
                Readiness::Gone => {}
            }
        }
        if !failed.is_empty() {
            return Err(failed);
        }
        if pending.is_empty() {
            return Ok(Ready {
                fleet,
                replicas: ready,
                waited_ms: started.elapsed().as_millis() as u64,
            });
        }
        if started.elapsed() >= timeout {
            return Err(pending
                .into_iter()
                .map(|(i, why)| {
                    format!(
                        "{i} {why} within {} (--switch-timeout)",
                        humantime::format_duration(timeout)
                    )
                })
                .collect());
        }
        std::thread::sleep(RECHECK);
    }
}

/// Where one awaited server stands in a switch, by the heartbeats just read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Readiness {
    /// It serves `to`, or holds it loaded and warm.
    Ready,
    /// It read the switch record and cannot load the version (why).
    Failed(String),
    /// Not yet (why): still loading, or its heartbeat cannot be read.
    Pending(String),
    /// Its heartbeat went stale: it stopped or was killed, and serves nothing to switch.
    Gone,
}

/// `instance`'s readiness for the switch of `model` to `to` in `fleet`. A heartbeat that was
/// live and is now refused (malformed, too large, a link) holds the switch up: an unreadable
/// server is not a stopped one.
fn readiness(
    fleet: &Fleet,
    model: &str,
    to: VersionId,
    instance: &str,
    prepared_at_ms: u64,
) -> Readiness {
    let Some(replica) = fleet.live().find(|r| r.heartbeat.instance == instance) else {
        let file = format!("{}.json:", crate::evidence::instance_name(Some(instance)));
        return match fleet.refused.iter().find(|r| r.starts_with(&file)) {
            Some(why) => Readiness::Pending(format!(
                "has a heartbeat that cannot be read ({why}) and did not report it loaded"
            )),
            None if fleet.too_many => Readiness::Pending(
                "cannot be seen (too many heartbeat files) and did not report it loaded".into(),
            ),
            None => Readiness::Gone,
        };
    };
    let served = replica.heartbeat.models.get(model);
    let loaded = served.is_some_and(|s| {
        s.serving == Some(to.get()) || (s.switch_to == Some(to.get()) && s.switch_ready)
    });
    let error = served
        .filter(|s| s.switch_to == Some(to.get()))
        .and_then(|s| s.switch_error.as_ref())
        .filter(|_| replica.heartbeat.last_scan_ms >= Some(prepared_at_ms));
    match (loaded, error) {
        (true, _) => Readiness::Ready,
        (false, Some(error)) => Readiness::Failed(format!("cannot load it: {error}")),
        (false, None) => Readiness::Pending("did not report it loaded".into()),
    }
}

/// How far ahead the activation time is: two of the slowest live server's poll intervals, at
/// least one plus [`MIN_MARGIN_MS`]. Each server must read the moved pointer before the time
/// comes: up to a poll interval after the move, which itself takes a few fsyncs and renames
/// after the time is chosen, plus a scan. With one interval and a half, 1 of 20 promotions in
/// the nfs-vm guest (an emulated CPU under load) was read late.
pub fn lead_ms(fleet: &Fleet) -> u64 {
    let poll = fleet
        .live()
        .map(|r| r.heartbeat.poll_interval_ms)
        .max()
        .unwrap_or(0);
    poll + poll.max(MIN_MARGIN_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::publish;
    use crate::catalog::Catalog;
    use crate::fleet::{Heartbeat, Served};
    use crate::store::ModelName;

    fn iris() -> ModelName {
        "iris".parse().unwrap()
    }

    /// A store with production at one version and a second version to move to.
    fn store() -> (tempfile::TempDir, Catalog, VersionId, VersionId) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let first = publish(&catalog, &iris());
        let second = publish(&catalog, &iris());
        catalog
            .lock(&iris())
            .unwrap()
            .move_production(Move::Promote, first, serde_json::Value::Null)
            .unwrap();
        (dir, catalog, first, second)
    }

    /// A live server's heartbeat saying what it has of `iris`.
    fn beat(catalog: &Catalog, instance: &str, served: Served) {
        let now = fleet::now_ms();
        let beat = Heartbeat {
            instance: instance.to_owned(),
            limen_version: "0.1.0".into(),
            started_at_ms: now - 1_000,
            written_at_ms: now,
            interval_ms: 60_000,
            poll_interval_ms: 200,
            // Its last scan read whatever switch record the test writes next.
            last_scan_ms: Some(now + 60_000),
            models: [("iris".to_owned(), served)].into(),
        };
        fleet::write(catalog.root(), &beat).unwrap();
    }

    fn quick() -> SwitchOptions {
        SwitchOptions {
            wait: true,
            timeout: Duration::from_millis(300),
        }
    }

    fn production(catalog: &Catalog) -> Option<VersionId> {
        catalog.pointer(&iris(), Pointer::Production).unwrap()
    }

    #[test]
    fn without_live_servers_production_moves_at_once() {
        let (_dir, catalog, first, second) = store();
        let guard = catalog.lock(&iris()).unwrap();
        let switched = move_production(
            &guard,
            Move::Promote,
            second,
            serde_json::json!({}),
            quick(),
        )
        .unwrap();
        assert!(switched.change.changed && switched.replicas.is_empty());
        assert_eq!(switched.activate_at_ms, None);
        assert_eq!(production(&catalog), Some(second));
        assert_eq!(catalog.switch_record(&iris()).unwrap(), None);
        assert_eq!(switched.change.from, Some(first));
    }

    #[test]
    fn a_server_that_never_loads_it_blocks_the_move_by_name() {
        let (_dir, catalog, first, second) = store();
        beat(
            &catalog,
            "pod-slow",
            Served {
                serving: Some(first.get()),
                ..Served::default()
            },
        );
        let guard = catalog.lock(&iris()).unwrap();
        let err = move_production(
            &guard,
            Move::Promote,
            second,
            serde_json::json!({}),
            quick(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("pod-slow did not report it loaded within 300ms")
                && text.contains(&format!("production stays {first}")),
            "{text}"
        );
        assert_eq!(production(&catalog), Some(first));
        assert_eq!(
            catalog.switch_record(&iris()).unwrap(),
            None,
            "record removed"
        );
        assert!(
            guard.history().unwrap().entries.len() == 1,
            "no line for a refusal"
        );
    }

    #[test]
    fn a_server_that_joins_during_a_switch_does_not_hold_it_up() {
        let (dir, catalog, first, second) = store();
        let serving_first = Served {
            serving: Some(first.get()),
            ..Served::default()
        };
        beat(&catalog, "pod-a", serving_first.clone());
        let root = dir.path().to_owned();
        let promoter = std::thread::spawn(move || {
            let catalog = Catalog::open(&root);
            let guard = catalog.lock(&iris()).unwrap();
            let options = SwitchOptions {
                timeout: Duration::from_secs(60),
                ..quick()
            };
            move_production(
                &guard,
                Move::Promote,
                second,
                serde_json::json!({}),
                options,
            )
        });
        // The record is out: the fleet is being waited for. A replica starts (the autoscaler, a
        // rolling update) and heartbeats before it has loaded anything of the switch.
        let deadline = Instant::now() + Duration::from_secs(30);
        while catalog.switch_record(&iris()).unwrap().is_none() {
            assert!(Instant::now() < deadline, "no switch record within 30 s");
            std::thread::yield_now();
        }
        beat(&catalog, "pod-new", serving_first);
        beat(
            &catalog,
            "pod-a",
            Served {
                serving: Some(first.get()),
                switch_to: Some(second.get()),
                switch_ready: true,
                ..Served::default()
            },
        );
        let switched = promoter.join().unwrap().unwrap();
        assert_eq!(
            switched.replicas,
            ["pod-a"],
            "only the replica live at the start"
        );
        assert_eq!(production(&catalog), Some(second));
    }

    #[test]
    fn a_server_that_cannot_load_it_refuses_at_once_with_its_reason() {
        let (_dir, catalog, first, second) = store();
        beat(
            &catalog,
            "pod-small",
            Served {
                serving: Some(first.get()),
                switch_to: Some(second.get()),
                switch_error: Some("its 5000-byte model.json is over --max-model-size".into()),
                ..Served::default()
            },
        );
        let guard = catalog.lock(&iris()).unwrap();
        let options = SwitchOptions {
            timeout: Duration::from_secs(60),
            ..quick()
        };
        let started = Instant::now();
        let err = move_production(
            &guard,
            Move::Promote,
            second,
            serde_json::json!({}),
            options,
        )
        .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not the timeout"
        );
        assert!(
            err.to_string()
                .contains("pod-small cannot load it: its 5000-byte model.json is over"),
            "{err}"
        );
        assert_eq!(production(&catalog), Some(first));
    }

    #[test]
    fn ready_servers_get_an_activation_time_ahead_and_the_history_says_so() {
        let (_dir, catalog, first, second) = store();
        for pod in ["pod-a", "pod-b"] {
            beat(
                &catalog,
                pod,
                Served {
                    serving: Some(first.get()),
                    switch_to: Some(second.get()),
                    switch_ready: true,
                    ..Served::default()
                },
            );
        }
        // A stale heartbeat (a killed server) is not waited for.
        let mut gone = fleet::read(catalog.root(), fleet::now_ms())
            .unwrap()
            .replicas[0]
            .heartbeat
            .clone();
        gone.instance = "pod-gone".into();
        gone.written_at_ms -= 1_000_000;
        gone.started_at_ms -= 1_000_000;
        gone.models.clear();
        fleet::write(catalog.root(), &gone).unwrap();

        let guard = catalog.lock(&iris()).unwrap();
        let before = fleet::now_ms();
        let switched = move_production(
            &guard,
            Move::Promote,
            second,
            serde_json::json!({"gate": "x"}),
            quick(),
        )
        .unwrap();
        let at = switched.activate_at_ms.unwrap();
        assert!(
            at >= before + 200 + MIN_MARGIN_MS,
            "a poll and a margin ahead"
        );
        assert!(fleet::now_ms() >= at, "returns once the time has passed");
        assert_eq!(switched.replicas, ["pod-a", "pod-b"]);
        assert_eq!(production(&catalog), Some(second));
        let record = catalog.switch_record(&iris()).unwrap().unwrap();
        assert_eq!(
            (record.version, record.previous, record.activate_at_ms),
            (second, Some(first), Some(at))
        );
        let last = guard.history().unwrap().entries.pop().unwrap();
        assert_eq!(last.details["gate"], "x");
        assert_eq!(
            last.details["switch"]["replicas"],
            serde_json::json!(["pod-a", "pod-b"])
        );
        drop(guard);
        // The record stays for servers that poll late; a later lock holder keeps it while
        // production names its version, and drops it once production moves elsewhere.
        drop(catalog.lock(&iris()).unwrap());
        assert!(catalog.switch_record(&iris()).unwrap().is_some());
        let guard = catalog.lock(&iris()).unwrap();
        let back = SwitchOptions {
            wait: false,
            ..quick()
        };
        move_production(&guard, Move::Rollback, first, serde_json::Value::Null, back).unwrap();
        assert_eq!(
            catalog.switch_record(&iris()).unwrap(),
            None,
            "--no-wait clears it"
        );
    }

    #[test]
    fn an_unreadable_heartbeat_holds_the_switch_up_and_a_stale_one_does_not() {
        let (_dir, catalog, first, second) = store();
        beat(
            &catalog,
            "pod-garbled",
            Served {
                serving: Some(first.get()),
                ..Served::default()
            },
        );
        let folder = fleet::folder(catalog.root());
        std::fs::write(folder.join("pod-garbled.json"), b"{\"instance\": 3}").unwrap();
        let mut seen = fleet::read(catalog.root(), fleet::now_ms()).unwrap();
        assert!(seen.replicas.is_empty() && seen.refused.len() == 1);
        let waited = readiness(&seen, "iris", second, "pod-garbled", 0);
        assert!(
            matches!(&waited, Readiness::Pending(why) if why.contains("cannot be read")),
            "{waited:?}"
        );
        // Without the refusal (the file gone), the server is taken as stopped.
        seen.refused.clear();
        assert_eq!(
            readiness(&seen, "iris", second, "pod-garbled", 0),
            Readiness::Gone
        );
    }

    #[test]
    fn a_fleet_too_large_to_read_refuses_the_move() {
        let (_dir, catalog, first, second) = store();
        let folder = fleet::folder(catalog.root());
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..=fleet::MAX_REPLICAS {
            std::fs::write(folder.join(format!("pod-{i}.json")), b"{}").unwrap();
        }
        let guard = catalog.lock(&iris()).unwrap();
        let err = move_production(
            &guard,
            Move::Promote,
            second,
            serde_json::json!({}),
            quick(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot be told"), "{err}");
        assert_eq!(production(&catalog), Some(first));
    }

    #[test]
    fn a_record_left_by_a_killed_promoter_is_removed_by_the_next_lock_holder() {
        let (_dir, catalog, first, second) = store();
        let guard = catalog.lock(&iris()).unwrap();
        guard
            .write_switch(&SwitchRecord {
                version: second,
                previous: Some(first),
                written_at_ms: fleet::now_ms(),
                activate_at_ms: None,
            })
            .unwrap();
        drop(guard);
        assert!(catalog.switch_record(&iris()).unwrap().is_some());
        drop(catalog.lock(&iris()).unwrap());
        assert_eq!(catalog.switch_record(&iris()).unwrap(), None);
    }
}
