//! A hostile store: whatever another host puts where limen expects a pointer or a model (a FIFO,
//! a socket, a directory, a link to a secret, a 2 GB sparse file, a version folder linked out of
//! the store, a model with too many features), the server keeps answering every route with the
//! last good model, at normal latency, small, and says what is wrong in `/models` and `/metrics`.
//!
//! Each case prints one `RELIABILITY` line with the server's peak-RSS growth (`VmHWM`), CPU time
//! and the slowest answer while the fault was present; `RELIABILITY.md` tabulates them.

mod common;

use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    eventually, get, http, limen_command, post, stderr, usage, Server, TestApp, TestStore,
};
use limen::model::ModelArtifact;

const BODY: &str = r#"{"petal_width": 2.1}"#;
/// What a single fault may add to the server's peak RSS.
const RSS_BUDGET_KIB: u64 = 32 * 1024;

/// Runs every route the fault must not disturb, `rounds` times; returns the slowest answer.
/// Every answer must be a success, and `/predict` must come from the last good version.
fn every_route_answers(app: &TestApp, rounds: usize) -> Duration {
    let agent = http();
    let mut slowest = Duration::ZERO;
    for _ in 0..rounds {
        for (method, path) in [
            ("GET", "/healthcheck"),
            ("POST", "/predict"),
            ("GET", "/metrics"),
            ("GET", "/models"),
            ("GET", "/models/iris"),
            ("GET", "/v2/health/live"),
        ] {
            let started = Instant::now();
            let answer = if method == "GET" {
                get(&agent, &app.url(path))
            } else {
                post(&agent, &app.url(path), BODY)
            };
            slowest = slowest.max(started.elapsed());
            assert_eq!(answer.status, 200, "{method} {path}: {}", answer.body);
            if path == "/predict" {
                assert_eq!(answer.version_header.as_deref(), Some(app.version.as_str()));
            }
        }
    }
    slowest
}

/// Injects a fault into a serving store, waits until `/models` reports `reported`, then checks
/// every route and reports the cost.
fn survive(case: &str, reported: &str, inject: impl FnOnce(&TestApp)) -> TestApp {
    let app = TestApp::spawn(&["--poll-interval", "50ms"]);
    every_route_answers(&app, 5);
    let pid = app.server.child.id();
    let (hwm_before, cpu_before) = usage(pid);
    inject(&app);
    let agent = http();
    eventually(
        common::PATIENCE,
        &format!("/models to report {reported:?}"),
        || {
            let models = get(&agent, &app.url("/models"));
            models.body.contains(reported).then_some(())
        },
    );
    let slowest = every_route_answers(&app, 50);
    let (hwm_after, cpu_after) = usage(pid);
    let grew = hwm_after.saturating_sub(hwm_before);
    eprintln!(
        "RELIABILITY | hostile store | {case} | peak RSS +{grew} KiB | CPU {} ms | slowest answer {:.1} ms | 300 requests, 0 failed",
        (cpu_after - cpu_before).as_millis(),
        slowest.as_secs_f64() * 1000.0
    );
    assert!(
        grew <= RSS_BUDGET_KIB,
        "{case}: peak RSS grew by {grew} KiB"
    );
    app
}

fn production(app: &TestApp) -> std::path::PathBuf {
    app.store.path().join("iris/production")
}

/// A new version folder of `iris` whose id is after every other, holding `model.json` bytes.
fn new_version(app: &TestApp, offset: u64) -> (String, std::path::PathBuf) {
    let version = (app.version.parse::<u64>().unwrap() + offset).to_string();
    let folder = app.store.path().join("iris").join(&version);
    std::fs::create_dir(&folder).unwrap();
    (version, folder)
}

fn point_production_at(app: &TestApp, version: &str) {
    let tmp = app.store.path().join("iris/.pointer-test");
    std::fs::write(&tmp, format!("{version}\n")).unwrap();
    std::fs::rename(&tmp, production(app)).unwrap();
}

#[test]
fn a_fifo_as_the_production_pointer_blocks_nothing() {
    let app = survive("FIFO as the production pointer", "a FIFO", |app| {
        std::fs::remove_file(production(app)).unwrap();
        let status = Command::new("mkfifo")
            .arg(production(app))
            .status()
            .unwrap();
        assert!(status.success());
    });
    let metrics = get(&http(), &app.url("/metrics")).body;
    assert!(
        metrics.contains(r#"limen_model_error{model="iris"} 1"#),
        "the problem shows in /metrics"
    );
}

#[test]
fn a_fifo_as_the_candidate_pointer_leaks_no_thread() {
    let app = survive(
        "FIFO as the candidate pointer",
        "\"candidate\":null",
        |app| {
            let candidate = app.store.path().join("iris/candidate");
            std::fs::remove_file(&candidate).unwrap();
            let status = Command::new("mkfifo").arg(&candidate).status().unwrap();
            assert!(status.success());
        },
    );
    let threads = std::fs::read_to_string(format!("/proc/{}/status", app.server.child.id()))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Threads:")
                .map(|t| t.trim().parse::<u32>().unwrap())
        })
        .unwrap();
    assert!(threads < 32, "{threads} threads after 50 /models calls");
}

#[test]
fn a_socket_or_a_directory_as_the_pointer_is_named_as_such() {
    survive("Unix socket as the production pointer", "a socket", |app| {
        std::fs::remove_file(production(app)).unwrap();
        // Bound, then leaked: the socket file stays while the test runs.
        std::mem::forget(std::os::unix::net::UnixListener::bind(production(app)).unwrap());
    });
    survive(
        "directory as the production pointer",
        "a directory",
        |app| {
            std::fs::remove_file(production(app)).unwrap();
            std::fs::create_dir(production(app)).unwrap();
        },
    );
}

#[test]
fn a_pointer_linked_to_a_secret_is_refused_and_never_echoed() {
    let store = TestStore::new();
    let version = store.promote_iris();
    let mut cmd = limen_command();
    cmd.env("LIMEN_TEST_SECRET", "hunter2-do-not-print")
        .arg("--store")
        .arg(store.path())
        .args(["serve", "--addr", "127.0.0.1:0", "--poll-interval", "50ms"]);
    let server = Server::spawn(&mut cmd, "listening on http://").ready();
    let app = TestApp {
        server,
        store,
        version,
    };
    let pointer = production(&app);
    std::fs::remove_file(&pointer).unwrap();
    symlink("/proc/self/environ", &pointer).unwrap();
    let agent = http();
    eventually(common::PATIENCE, "the link to be reported", || {
        get(&agent, &app.url("/models"))
            .body
            .contains("a symbolic link")
            .then_some(())
    });
    every_route_answers(&app, 5);
    for path in ["/models", "/models/iris", "/metrics", "/ready"] {
        let body = get(&agent, &app.url(path)).body;
        assert!(
            !body.contains("hunter2"),
            "{path} echoes the environment: {body}"
        );
    }
    // The same for a pointer holding garbage: described, not quoted.
    std::fs::remove_file(&pointer).unwrap();
    std::fs::write(&pointer, "SECRET=hunter2\n").unwrap();
    eventually(common::PATIENCE, "the garbage to be reported", || {
        let body = get(&agent, &app.url("/models")).body;
        body.contains("does not hold a version id (15 bytes)")
            .then_some(body)
    });
    assert!(!get(&agent, &app.url("/models")).body.contains("hunter2"));
}

#[test]
fn a_sparse_two_gigabyte_model_is_refused_unread() {
    let app = survive("2 GB sparse model.json", "over the limit", |app| {
        let (version, folder) = new_version(app, 1);
        let file = std::fs::File::create(folder.join("model.json")).unwrap();
        file.set_len(2 << 30).unwrap();
        point_production_at(app, &version);
    });
    // Remembered, not re-read every poll: the failed-load counter stays put across polls.
    let agent = http();
    let failed = |text: &str| {
        text.lines()
            .find(|l| l.starts_with(r#"limen_model_loads_total{model="iris",result="failed"}"#))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let first = failed(&get(&agent, &app.url("/metrics")).body);
    // Twenty more polls' worth of requests (50 ms apart at most), counted in scans, not sleeps.
    let scans_before = get(&agent, &app.url("/models")).json()["store"]["last_scan_ok_at"].clone();
    eventually(common::PATIENCE, "a few more scans", || {
        let now = get(&agent, &app.url("/models")).json()["store"]["last_scan_ok_at"].clone();
        (now != scans_before).then_some(())
    });
    let later = failed(&get(&agent, &app.url("/metrics")).body);
    assert!(
        later <= first + 1,
        "re-read on every poll: {first} → {later} failed loads"
    );
}

#[test]
fn a_version_folder_linked_out_of_the_store_is_not_a_version() {
    survive(
        "version folder linked outside the store",
        "symbolic link",
        |app| {
            let outside = tempfile::tempdir().unwrap().keep();
            let copy = outside.join("model");
            std::fs::create_dir(&copy).unwrap();
            let source = app
                .store
                .path()
                .join("iris")
                .join(&app.version)
                .join("model.json");
            std::fs::copy(source, copy.join("model.json")).unwrap();
            let version = (app.version.parse::<u64>().unwrap() + 1).to_string();
            symlink(&copy, app.store.path().join("iris").join(&version)).unwrap();
            point_production_at(app, &version);
        },
    );
}

/// A valid `model.json` for `iris` at `version` with `n` features, checksum and all.
fn wide_model(app: &TestApp, version: &str, n: usize) -> Vec<u8> {
    let bytes = std::fs::read(
        app.store
            .path()
            .join("iris")
            .join(&app.version)
            .join("model.json"),
    )
    .unwrap();
    let mut artifact: ModelArtifact = serde_json::from_slice(&bytes).unwrap();
    artifact.version = version.parse().unwrap();
    let mut template = artifact.features[0].clone();
    // The drift reference would only make the file bigger; this is about the feature count.
    template.reference = None;
    artifact.features = (0..n)
        .map(|i| {
            let mut f = template.clone();
            f.name = format!("f{i}");
            f
        })
        .collect();
    artifact.coefficients = vec![vec![0.001; n]];
    artifact.to_json_bytes()
}

#[test]
fn warm_up_memory_stays_linear_in_the_features_and_too_many_are_refused() {
    // 2,000 features: loads (its warm-up took +300 MB before), within the RSS budget.
    survive("2,000-feature model (loads)", "\"loaded\"", |app| {
        let (version, folder) = new_version(app, 1);
        std::fs::write(folder.join("model.json"), wide_model(app, &version, 2000)).unwrap();
        let agent = http();
        let answer = post(
            &agent,
            &app.url(&format!("/models/iris/versions/{version}/predict")),
            &format!(
                "{{{}}}",
                (0..2000)
                    .map(|i| format!("\"f{i}\": 1"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
    });
    // 5,000: refused with a clear error by the server, the gate and promote; nothing aborts.
    let app = survive("5,000-feature model (refused)", "at most 4096", |app| {
        let (version, folder) = new_version(app, 2);
        std::fs::write(folder.join("model.json"), wide_model(app, &version, 5_000)).unwrap();
        point_production_at(app, &version);
    });
    let wide = (app.version.parse::<u64>().unwrap() + 2).to_string();
    let out = app.store.limen(&["models", "promote", "iris", &wide]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("loads at most 4096"),
        "{}",
        stderr(&out)
    );
    std::fs::write(app.store.path().join("iris/candidate"), format!("{wide}\n")).unwrap();
    let out = app.store.limen(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("loads at most 4096"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pinned_requests_for_a_version_that_just_failed_answer_from_memory() {
    let app = TestApp::spawn(&["--poll-interval", "10s"]);
    let (version, folder) = new_version(&app, 1);
    std::fs::write(folder.join("model.json"), b"{\"truncated\": ").unwrap();
    let agent = http();
    let url = app.url(&format!("/models/iris/versions/{version}/predict"));
    for _ in 0..20 {
        let answer = post(&agent, &url, BODY);
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert_eq!(answer.json()["kind"], "unservable");
    }
    let metrics = get(&agent, &app.url("/metrics")).body;
    assert!(
        metrics.contains(r#"limen_model_loads_total{model="iris",result="failed"} 1"#),
        "20 requests read the broken file more than once:\n{metrics}"
    );
    // Fixed on disk (a new inode): the next request reads it again and it serves.
    let good = std::fs::read(
        app.store
            .path()
            .join("iris")
            .join(&app.version)
            .join("model.json"),
    )
    .unwrap();
    let text = String::from_utf8(good).unwrap();
    let artifact: ModelArtifact = serde_json::from_str(&text).unwrap();
    let mut fixed = artifact;
    fixed.version = version.parse().unwrap();
    let tmp = folder.join(".fixed");
    std::fs::write(&tmp, fixed.to_json_bytes()).unwrap();
    std::fs::rename(&tmp, folder.join("model.json")).unwrap();
    let answer = post(&agent, &url, BODY);
    assert_eq!(answer.status, 200, "{}", answer.body);
}
