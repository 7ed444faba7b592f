//! The fleet over real processes: two `limen serve` on one store write heartbeats that
//! `limen models fleet` reads; a promotion shows on both; a graceful stop leaves the fleet at
//! once; a live replica that serves another version makes `models fleet` exit 1, naming it, and
//! shows on the status page. A promotion waits for every live replica to load the version, then
//! both switch at one activation time, never before it; a replica that cannot load it blocks
//! the promotion by name and production stays everywhere. `limen watch` passes a clean window
//! and rolls a version that fails requests back, with the reason in the history.

mod common;

use common::{eventually, get, http, limen_command, post, Server, TestStore, PATIENCE};

/// A server on `store` named `instance`, rewriting its heartbeat every 200 ms.
fn replica(store: &TestStore, instance: &str) -> Server {
    replica_every(store, instance, "200ms")
}

/// A server on `store` whose heartbeat is rewritten every `heartbeat` (stale after 3 of them:
/// a test that needs it live throughout gives it seconds, which a loaded CI machine's delayed
/// writes stay within).
fn replica_every(store: &TestStore, instance: &str, heartbeat: &str) -> Server {
    replica_with(store, instance, heartbeat, &[])
}

/// [`replica_every`] with more global flags (before `serve`).
fn replica_with(store: &TestStore, instance: &str, heartbeat: &str, flags: &[&str]) -> Server {
    let mut cmd = limen_command();
    cmd.arg("--store").arg(store.path()).args(flags).args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--poll-interval",
        "100ms",
        "--heartbeat-interval",
        heartbeat,
        "--instance",
        instance,
    ]);
    Server::spawn(&mut cmd, "listening on http://").ready()
}

/// `limen models fleet --json`, its exit code and report.
fn fleet(store: &TestStore) -> (Option<i32>, serde_json::Value) {
    let out = store.limen(&["models", "fleet", "--json"]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), report)
}

/// The version each live replica serves of `model`, by instance.
fn serving(report: &serde_json::Value, model: &str) -> Vec<(String, Option<u64>)> {
    served(report, model)
        .into_iter()
        .map(|(name, s)| (name, s["serving"].as_u64()))
        .collect()
}

#[test]
fn replicas_report_what_they_serve_switch_together_and_leave_on_stop() {
    let store = TestStore::new();
    let first: u64 = store.promote_iris().parse().unwrap();
    let a = replica_every(&store, "pod-a", "1s");
    let mut b = replica_every(&store, "pod-b", "1s");
    eventually(PATIENCE, "both replicas in the fleet", || {
        let (code, report) = fleet(&store);
        let both = serving(&report, "iris")
            == [("pod-a".into(), Some(first)), ("pod-b".into(), Some(first))];
        (code == Some(0) && both).then_some(())
    });

    let second: u64 = store.promote_iris().parse().unwrap();
    eventually(PATIENCE, "both replicas on the new version", || {
        let (code, report) = fleet(&store);
        let both = serving(&report, "iris")
            == [
                ("pod-a".into(), Some(second)),
                ("pod-b".into(), Some(second)),
            ];
        (code == Some(0) && both).then_some(())
    });
    let report = eventually(PATIENCE, "a report of both", || {
        let (_, report) = fleet(&store);
        (report["replicas"].as_array().map(Vec::len) == Some(2)).then_some(report)
    });
    assert_eq!(
        report["replicas"][0]["models"]["iris"]["production"],
        second
    );
    assert!(report["replicas"][0]["last_scan_age_ms"].as_u64().is_some());

    // A graceful stop removes the heartbeat: the fleet is one replica at once.
    b.terminate();
    assert!(b.wait_exit(PATIENCE).success());
    assert!(!store.path().join(".fleet/pod-b.json").exists());
    let (code, report) = fleet(&store);
    assert_eq!(code, Some(0));
    assert!(
        serving(&report, "iris")
            .iter()
            .all(|(who, _)| who == "pod-a"),
        "{report}"
    );
    drop(a);
}

#[test]
fn a_live_replica_on_another_version_fails_the_fleet_check_by_name() {
    let store = TestStore::new();
    let production: u64 = store.promote_iris().parse().unwrap();
    let a = replica_every(&store, "pod-a", "2s");
    eventually(PATIENCE, "pod-a in the fleet", || {
        let (_, report) = fleet(&store);
        (serving(&report, "iris") == [("pod-a".into(), Some(production))]).then_some(())
    });
    // A replica that is live (its heartbeat fresh for 15 s) but still serves an old
    // version, as one whose load failed would.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let stuck = serde_json::json!({
        "instance": "pod-stuck", "limen_version": "0.1.0",
        "started_at_ms": now - 1000, "written_at_ms": now,
        "interval_ms": 5_000, "poll_interval_ms": 100,
        "models": {"iris": {"production": production, "serving": production - 1,
                            "load_error": "iris/… cannot be served: too large"}}
    });
    std::fs::write(
        store.path().join(".fleet/pod-stuck.json"),
        serde_json::to_vec(&stuck).unwrap(),
    )
    .unwrap();
    let out = store.limen(&["models", "fleet"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DISAGREE iris")
            && text.contains("pod-stuck")
            && text.contains("load error: iris/… cannot be served: too large"),
        "{text}"
    );
    // Narrowed to a model nobody disagrees on, it passes.
    let other = store.limen(&["models", "fleet", "species"]);
    assert_eq!(other.status.code(), Some(0), "{}", common::stderr(&other));
    // The server's status page shows the fleet and the disagreement.
    let agent = http();
    eventually(PATIENCE, "the status page to show the split", || {
        let page = get(&agent, &a.url("/")).body;
        (page.contains("fleet: 2 live servers")
            && page.contains(&format!(
                "servers disagree on iris: {} on pod-stuck",
                production - 1
            )))
        .then_some(())
    });
}

#[test]
fn a_killed_replica_goes_stale_after_three_intervals_and_never_counts_again() {
    let store = TestStore::new();
    let first: u64 = store.promote_iris().parse().unwrap();
    let _a = replica(&store, "pod-a");
    let b = replica(&store, "pod-b");
    wait_for_replicas(&store, 2);
    // kill -9 (the harness's drop): no graceful stop, so its heartbeat stays behind.
    drop(b);
    assert!(store.path().join(".fleet/pod-b.json").exists());
    let second: u64 = store.promote_iris().parse().unwrap();
    assert_ne!(first, second);
    let report = eventually(PATIENCE, "pod-b to go stale", || {
        let (code, report) = fleet(&store);
        (code == Some(0) && report["stale"] == serde_json::json!(["pod-b"])).then_some(report)
    });
    // Only the live replica counts, on the new version; the dead one's old version is no
    // disagreement.
    eventually(PATIENCE, "pod-a on the new version", || {
        let (code, report) = fleet(&store);
        (code == Some(0) && serving(&report, "iris") == [("pod-a".into(), Some(second))])
            .then_some(())
    });
    assert!(report["disagreements"].as_object().unwrap().is_empty());
}

/// Waits until `n` live replicas report on `iris`.
fn wait_for_replicas(store: &TestStore, n: usize) {
    eventually(PATIENCE, &format!("{n} replica(s) in the fleet"), || {
        let (_, report) = fleet(store);
        (serving(&report, "iris").len() == n).then_some(())
    });
}

/// The live replicas' heartbeat entries for `model`, by instance.
fn served(report: &serde_json::Value, model: &str) -> Vec<(String, serde_json::Value)> {
    report["replicas"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let name = r["instance"].as_str().unwrap_or_default().to_owned();
                    (name, r["models"][model].clone())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_promotion_waits_for_every_replica_and_they_switch_at_one_time() {
    let store = TestStore::new();
    let first: u64 = store.promote_iris().parse().unwrap();
    let _a = replica_every(&store, "pod-a", "1s");
    let _b = replica_every(&store, "pod-b", "1s");
    wait_for_replicas(&store, 2);
    let second = store.train(&["--cv-folds", "0", "--alpha", "30"]);
    let out = store.limen(&["models", "--json", "promote", "iris", &second]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let switched: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(switched["replicas"], serde_json::json!(["pod-a", "pod-b"]));
    let at = switched["activate_at_ms"]
        .as_u64()
        .expect("an activation time");
    let history = store.ok(&["models", "--json", "show", "iris"]);
    assert!(history.contains("\"switch\""), "{history}");

    // Each replica serves the new version from the activation time on, by its own clock,
    // never before it (the 50 ms skew claim is measured in RELIABILITY.md, not here).
    let second: u64 = second.parse().unwrap();
    let report = eventually(PATIENCE, "both replicas on the new version", || {
        let (code, report) = fleet(&store);
        let on = served(&report, "iris");
        (code == Some(0) && on.len() == 2 && on.iter().all(|(_, s)| s["serving"] == second))
            .then_some(on)
    });
    for (pod, s) in report {
        let since = s["serving_since_ms"].as_u64().unwrap();
        assert!(since >= at, "{pod} switched {} ms early", at - since);
        assert_ne!(s["serving"], first);
    }
}

#[test]
fn a_replica_that_cannot_load_the_version_blocks_the_promotion_by_name() {
    let store = TestStore::new();
    let production: u64 = store.promote_iris().parse().unwrap();
    let a = replica_every(&store, "pod-a", "1s");
    // The logistic model is about 2 KB, a 20-tree forest about 16 KB.
    let small = replica_with(&store, "pod-small", "1s", &["--max-model-size", "8KiB"]);
    wait_for_replicas(&store, 2);
    let forest = store.train(&[
        "--kind",
        "random-forest",
        "--trees",
        "20",
        "--cv-folds",
        "0",
    ]);
    let out = store.limen(&["models", "promote", "iris", &forest]);
    let why = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{why}");
    assert!(
        why.contains("pod-small cannot load it")
            && why.contains("--max-model-size")
            && why.contains(&format!("production stays {production}"))
            && !why.contains("pod-a"),
        "{why}"
    );
    assert_eq!(
        store.pointer("iris", "production"),
        Some(production.to_string())
    );
    assert!(!store.path().join("iris/switch").exists());
    let (code, report) = fleet(&store);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(
        serving(&report, "iris"),
        [
            ("pod-a".into(), Some(production)),
            ("pod-small".into(), Some(production))
        ]
    );

    // The same refusal through the gate: `validate` exits 1 with a failed fleet check.
    let out = store.limen(&["validate", "--min-accuracy", "0", "--tolerance", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAIL fleet"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        store.pointer("iris", "production"),
        Some(production.to_string())
    );

    // --no-wait moves production as before: the replica that can load it switches.
    store.ok(&["models", "promote", "iris", &forest, "--no-wait"]);
    let forest: u64 = forest.parse().unwrap();
    eventually(PATIENCE, "pod-a on the forest", || {
        let (_, report) = fleet(&store);
        serving(&report, "iris")
            .contains(&("pod-a".into(), Some(forest)))
            .then_some(())
    });
    drop((a, small));
}

/// The training table's petal widths as one batch request: live traffic shaped like training.
fn training_batch() -> String {
    let table = std::fs::read_to_string(common::repo().join("data/iris.csv")).unwrap();
    let rows: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(3))
        .map(|w| format!("{{\"petal_width\": {w}}}"))
        .collect();
    format!("{{\"instances\": [{}]}}", rows.join(","))
}

#[test]
fn watch_passes_a_clean_window_and_rolls_back_a_version_that_fails_requests() {
    let store = TestStore::new();
    let first: u64 = store.promote_iris().parse().unwrap();
    let a = replica_every(&store, "pod-a", "1s");
    wait_for_replicas(&store, 1);
    let second: u64 = store.promote_iris().parse().unwrap();
    let agent = http();
    eventually(PATIENCE, "pod-a on the new version", || {
        let (_, report) = fleet(&store);
        (serving(&report, "iris") == [("pod-a".into(), Some(second))]).then_some(())
    });
    assert_eq!(
        post(&agent, &a.url("/predict"), &training_batch()).status,
        200
    );
    let counted = |field: &str, at_least: u64| {
        eventually(PATIENCE, "the heartbeat to count the traffic", || {
            let (_, report) = fleet(&store);
            let n = served(&report, "iris")[0].1[field].as_u64().unwrap_or(0);
            (n >= at_least).then_some(())
        })
    };
    counted("predictions", 150);
    let watch = |window: &str| {
        store.limen(&[
            "watch",
            "iris",
            "--for",
            window,
            "--every",
            "100ms",
            "--min-samples",
            "100",
            "--json",
        ])
    };
    // Traffic like the training data, no errors: a clean window leaves production alone.
    let out = watch("300ms");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{report} {}",
        common::stderr(&out)
    );
    assert_eq!(report["verdict"], "clean");
    assert_eq!(report["previous"], first);
    assert_eq!(
        store.pointer("iris", "production"),
        Some(second.to_string())
    );

    // Requests the new version cannot answer: 10 of 160 fail, over the 1 % limit.
    for _ in 0..10 {
        let answer = post(&agent, &a.url("/predict"), r#"{"petal_width": "wide"}"#);
        assert_eq!(answer.status, 422);
    }
    counted("errors", 10);
    let out = watch("10s");
    let text = common::stderr(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report} {text}");
    assert_eq!(report["verdict"], "tripped");
    assert_eq!(report["trip"]["guardrail"], "error share");
    assert_eq!(report["rolled_back_to"], first);
    assert_eq!(store.pointer("iris", "production"), Some(first.to_string()));
    let history = store.ok(&["models", "--json", "show", "iris"]);
    let shown: serde_json::Value = serde_json::from_str(&history).unwrap();
    let last = shown["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "rollback", "{last}");
    assert_eq!(last["details"]["via"], "limen watch");
    assert_eq!(last["details"]["guardrail"], "error share");
    eventually(PATIENCE, "pod-a back on the first version", || {
        let (_, report) = fleet(&store);
        (serving(&report, "iris") == [("pod-a".into(), Some(first))]).then_some(())
    });
}
