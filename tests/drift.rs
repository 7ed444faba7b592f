//! Drift over real HTTP and the real inference log: traffic like the training data gives a PSI
//! near 0, shifted traffic a large one, in `limen drift` (which gates with --max-psi) and in the
//! server's live `limen_feature_psi` gauge.

mod common;

use common::{eventually, get, http, limen_command, post, stderr, Server, TestStore, PATIENCE};

/// The petal widths of data/iris.csv, in file order.
fn training_widths() -> Vec<f64> {
    std::fs::read_to_string(common::repo().join("data/iris.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(3)?.parse().ok())
        .collect()
}

fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn drift(store: &TestStore, log: &std::path::Path) -> (Option<i32>, serde_json::Value) {
    let out = store.limen(&[
        "drift",
        "iris",
        "--log",
        log.to_str().unwrap(),
        "--max-psi",
        "0.25",
        "--json",
        "--min-samples",
        "100",
    ]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(&out)));
    (out.status.code(), report)
}

/// [`drift`] once the log holds `instances` lines of production (before the writer has
/// written any, `limen drift` exits 2: no data).
fn drift_of(
    store: &TestStore,
    log: &std::path::Path,
    instances: u64,
) -> (Option<i32>, serde_json::Value) {
    eventually(PATIENCE, "the log lines", || {
        let out = store.limen(&[
            "drift",
            "iris",
            "--log",
            log.to_str().unwrap(),
            "--json",
            "--min-samples",
            "0",
        ]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (report["instances"] == instances).then_some(())
    });
    drift(store, log)
}

#[test]
fn training_like_traffic_is_stable_and_shifted_traffic_is_drift() {
    let store = TestStore::new();
    store.promote_iris();
    let log = tempfile::tempdir().unwrap();
    let mut cmd = limen_command();
    cmd.arg("--store").arg(store.path()).args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--instance",
        "pod-a",
        "--drift-window",
        "300",
    ]);
    cmd.arg("--inference-log").arg(log.path());
    let server = Server::spawn(&mut cmd, "listening on http://").ready();
    let agent = http();
    let psi_series = r#"limen_feature_psi{feature="petal_width",model="iris"}"#;

    // No traffic yet: no estimate (no series, which no alert fires on), not "everything
    // drifted" as an empty window would say; the page says it is collecting.
    let metrics = get(&agent, &server.url("/metrics")).body;
    assert_eq!(sample(&metrics, psi_series), None, "{metrics}");
    let page = get(&agent, &server.url("/models/iris/report")).body;
    assert!(
        page.contains("live PSI: collecting (0 of 150 instances)"),
        "{page}"
    );

    // The training rows themselves, as a batch: the same distribution.
    let widths = training_widths();
    let instances: Vec<String> = widths
        .iter()
        .map(|w| format!(r#"{{"petal_width": {w}}}"#))
        .collect();
    let batch = format!(r#"{{"instances": [{}]}}"#, instances.join(","));
    assert_eq!(post(&agent, &server.url("/predict"), &batch).status, 200);
    let live = sample(&get(&agent, &server.url("/metrics")).body, psi_series).unwrap();
    assert!(live < 0.01, "live PSI of the training data itself: {live}");
    let (code, report) = drift_of(&store, log.path(), 150);
    let psi = report["features"][0]["psi"].as_f64().unwrap();
    assert!(psi < 0.01, "{report}");
    assert_eq!(report["features"][0]["out_of_range"], 0.0);
    assert_eq!(code, Some(0));
    // By default `limen drift` wants 200 instances before it gives a verdict.
    let out = store.limen(&["drift", "iris", "--log", log.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("150 logged instance(s)")
            && stderr(&out).contains("fewer than --min-samples 200"),
        "{}",
        stderr(&out)
    );

    // Production now sees only wide petals, half of them wider than any in training.
    for i in 0..300 {
        let w = 2.3 + (i % 2) as f64 * 0.5;
        assert_eq!(
            post(
                &agent,
                &server.url("/predict"),
                &format!(r#"{{"petal_width": {w}}}"#)
            )
            .status,
            200
        );
    }
    let live = sample(&get(&agent, &server.url("/metrics")).body, psi_series).unwrap();
    assert!(live > 0.25, "live PSI after the shift: {live}");
    let (code, report) = drift_of(&store, log.path(), 450);
    assert_eq!(code, Some(1), "--max-psi 0.25 is exceeded: {report}");
    assert!(report["features"][0]["psi"].as_f64().unwrap() > 0.25);
    let out_of_range = report["features"][0]["out_of_range"].as_f64().unwrap();
    assert!((out_of_range - 150.0 / 450.0).abs() < 1e-9, "{report}");
    assert_eq!(report["exceeded"][0], "petal_width");

    // The text form says what to do.
    let out = store.limen(&[
        "drift",
        "iris",
        "--log",
        log.path().to_str().unwrap(),
        "--max-psi",
        "0.25",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("petal_width") && text.contains("retrain"),
        "{text}"
    );
}

#[test]
fn drift_with_no_logged_data_is_an_error_not_a_pass() {
    let store = TestStore::new();
    let version = store.promote_iris();
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("nonexistent");
    for (log, says) in [
        (empty.path(), "0 log file(s) read"),
        (missing.as_path(), "the folder does not exist"),
    ] {
        let out = store.limen(&[
            "drift",
            "iris",
            "--log",
            log.to_str().unwrap(),
            "--max-psi",
            "0.25",
        ]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{log:?}: {}",
            common::stderr(&out)
        );
        let why = common::stderr(&out);
        assert!(
            why.contains("no data")
                && why.contains(&format!("iris/{version}"))
                && why.contains(says),
            "{why}"
        );
    }
}
