//! The inference log over real HTTP: exact line counts after known traffic (singles, a batch,
//! errors, every route), the request id echoed, size rotation with whole lines, a disk that
//! refuses writes mid-run (answers keep flowing, drops counted), and a graceful stop that
//! flushes everything.

mod common;

use std::path::Path;

use common::{
    eventually, get, http, limen_command, log_files, post, unprivileged, Server, TestStore,
    PATIENCE,
};

/// Every whole line of every `.jsonl` file under `dir`, parsed (a line that does not parse
/// fails); the unterminated end of a file a server is still writing is left for later.
fn lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in log_files(dir) {
        let text = std::fs::read_to_string(&p).unwrap();
        // A line still being written (no newline yet) is not a line yet.
        let whole = text.rsplit_once('\n').map_or("", |(whole, _)| whole);
        for line in whole.lines() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("a partial or bad line in {} ({e}): {line}", p.display())
            }));
        }
    }
    out
}

fn files(dir: &Path) -> usize {
    log_files(dir).len()
}

/// `limen_inference_log_dropped_total{reason="…"}` in `metrics`.
fn dropped(metrics: &str, reason: &str) -> f64 {
    let series = format!("limen_inference_log_dropped_total{{reason=\"{reason}\"}}");
    metrics
        .lines()
        .find(|l| l.starts_with(&series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A batch of `n` instances.
fn batch_of(n: usize) -> String {
    let one = r#"{"petal_width": 1.2}"#;
    format!(r#"{{"instances": [{}]}}"#, vec![one; n].join(","))
}

fn logging_server(store: &TestStore, log: &Path, extra: &[&str]) -> Server {
    logging_server_with(store, log, "pod-a", extra)
}

fn logging_server_as(store: &TestStore, log: &Path, instance: &str) -> Server {
    logging_server_with(store, log, instance, &[])
}

fn logging_server_with(store: &TestStore, log: &Path, instance: &str, extra: &[&str]) -> Server {
    common::logging_server(store, log, instance, extra)
}

#[test]
fn every_request_is_logged_once_per_instance_and_a_graceful_stop_flushes() {
    let store = TestStore::new();
    let version = store.promote_iris();
    let log = tempfile::tempdir().unwrap();
    let mut server = logging_server(&store, log.path(), &[]);
    let agent = http();

    let answer = agent
        .post(&server.url("/predict"))
        .header("X-Request-Id", "req-1")
        .send(r#"{"petal_width": 2.1}"#)
        .unwrap();
    assert_eq!(answer.headers().get("x-request-id").unwrap(), "req-1");
    let generated = post(&agent, &server.url("/predict"), r#"{"petal_width": 0.3}"#);
    assert_eq!(generated.status, 200);
    for i in 0..10 {
        let body = format!(r#"{{"petal_width": {}}}"#, 0.2 * i as f64);
        assert_eq!(
            post(&agent, &server.url("/models/iris/predict"), &body).status,
            200
        );
    }
    let batch =
        r#"{"instances": [{"petal_width": 0.1}, {"petal_width": 1.7}, {"petal_width": 2.4}]}"#;
    assert_eq!(post(&agent, &server.url("/predict"), batch).status, 200);
    let pinned = format!("/models/iris/versions/{version}/predict");
    assert_eq!(
        post(&agent, &server.url(&pinned), r#"{"petal_width": 1}"#).status,
        200
    );
    let infer = r#"{"inputs": [{"name": "input", "shape": [2, 1], "datatype": "FP64", "data": [1.0, 2.0]}]}"#;
    assert_eq!(
        post(&agent, &server.url("/v2/models/iris/infer"), infer).status,
        200
    );
    // Two failures: logged with their status and error, without features.
    assert_eq!(
        post(&agent, &server.url("/predict"), r#"{"petal_width": "x"}"#).status,
        422
    );
    assert_eq!(
        post(&agent, &server.url("/predict"), "not json").status,
        400
    );

    // A graceful stop writes everything queued and closes the files.
    server.terminate();
    assert!(server.wait_exit(PATIENCE).success());
    let lines = lines(log.path());
    // 1 + 1 + 10 singles, 3 batch rows, 1 pinned, 2 v2 rows, 2 failures.
    assert_eq!(lines.len(), 20, "{lines:#?}");
    let first = lines.iter().find(|l| l["request_id"] == "req-1").unwrap();
    assert_eq!(first["model"], "iris");
    assert_eq!(first["version"], version.as_str());
    assert_eq!(first["route"], "/predict");
    assert_eq!(first["status"], 200);
    assert_eq!(first["features"]["petal_width"], 2.1);
    assert_eq!(first["label"], "virginica");
    assert!(first["probabilities"]["virginica"].as_f64().unwrap() > 0.87);
    assert!(first["ts"].as_str().unwrap().ends_with('Z'));
    let batch_rows: Vec<_> = lines.iter().filter(|l| l["batch"] == true).collect();
    assert_eq!(batch_rows.len(), 5, "3 batch rows and 2 v2 rows are marked");
    assert!(
        lines
            .iter()
            .filter(|l| l["status"] == 200)
            .all(|l| l["index"].is_u64()),
        "every instance carries its index"
    );
    let failures: Vec<_> = lines.iter().filter(|l| l["status"] != 200).collect();
    assert_eq!(failures.len(), 2);
    assert!(failures
        .iter()
        .all(|l| l["features"].is_null() && l["error"].is_string()));
    assert!(lines
        .iter()
        .any(|l| l["route"] == "/models/{name}/versions/{version}/predict"));
    assert!(lines
        .iter()
        .any(|l| l["route"] == "/v2/models/{name}/infer"));
    let day = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    assert!(log
        .path()
        .join("iris")
        .join(&day[..10])
        .join("pod-a-0.jsonl")
        .exists());
}

#[test]
fn files_rotate_by_size_and_every_line_stays_whole() {
    let store = TestStore::new();
    store.promote_iris();
    let log = tempfile::tempdir().unwrap();
    let server = logging_server(&store, log.path(), &["--inference-log-max-file", "64KiB"]);
    let agent = http();
    for _ in 0..20 {
        assert_eq!(
            post(&agent, &server.url("/predict"), &batch_of(100)).status,
            200
        );
    }
    eventually(PATIENCE, "every line written", || {
        (lines(log.path()).len() == 2000).then_some(())
    });
    let n = files(log.path());
    assert!(
        n >= 5,
        "2,000 lines of ~280 bytes in 64 KiB files: {n} files"
    );
    for file in log_files(log.path()) {
        let size = std::fs::metadata(&file).unwrap().len();
        assert!(size <= 65536, "{} is {size} bytes", file.display());
        let text = std::fs::read(&file).unwrap();
        assert_eq!(
            text.last(),
            Some(&b'\n'),
            "{} ends mid-line",
            file.display()
        );
    }
}

#[test]
fn a_disk_that_refuses_writes_drops_lines_not_answers() {
    use std::os::unix::fs::PermissionsExt as _;
    let store = TestStore::new();
    store.promote_iris();
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = tempfile::tempdir().unwrap();
    std::fs::set_permissions(log.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = limen_command();
    cmd.arg("--store").arg(store.path()).args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--instance",
        "pod-a",
        "--inference-log-max-file",
        "64KiB",
    ]);
    cmd.arg("--inference-log").arg(log.path());
    let server = Server::spawn(
        unprivileged(&mut cmd, scratch.path()),
        "listening on http://",
    )
    .ready();
    let agent = http();
    for _ in 0..5 {
        assert_eq!(
            post(&agent, &server.url("/predict"), r#"{"petal_width": 1}"#).status,
            200
        );
    }
    eventually(PATIENCE, "the first lines", || {
        (lines(log.path()).len() == 5).then_some(())
    });
    // The day's folder turns read-only: no new file can be created once this one is full
    // (batches of 10 instances, ~2.8 KB each, fill 64 KiB within 25 requests).
    let day = log_files(log.path())[0].parent().unwrap().to_owned();
    std::fs::set_permissions(&day, std::fs::Permissions::from_mode(0o555)).unwrap();
    for _ in 0..100 {
        assert_eq!(
            post(&agent, &server.url("/predict"), &batch_of(10)).status,
            200
        );
    }
    let dropped = eventually(PATIENCE, "drops to be counted", || {
        let metrics = get(&agent, &server.url("/metrics")).body;
        Some(dropped(&metrics, "write_failed")).filter(|d| *d > 0.0)
    });
    assert_eq!(
        log_files(&day)
            .iter()
            .filter(|f| std::fs::metadata(f).unwrap().len() == 0)
            .count(),
        0,
        "no empty file is left behind"
    );
    // Writable again: logging resumes by itself once its pause (at most 5 s) is over; what
    // arrives during the pause is dropped and counted, never queued without bound.
    std::fs::set_permissions(&day, std::fs::Permissions::from_mode(0o777)).unwrap();
    let written = lines(log.path()).len();
    eventually(PATIENCE, "logging to resume", || {
        assert_eq!(
            post(&agent, &server.url("/predict"), r#"{"petal_width": 1}"#).status,
            200
        );
        (lines(log.path()).len() > written).then_some(())
    });
    eprintln!("RELIABILITY | inference log on a folder that turns read-only | 1 | 110 requests, 0 failed | {dropped} lines dropped and counted");
    let _ = files;
}

#[test]
fn the_next_training_set_is_production_traffic_joined_with_its_labels() {
    let store = TestStore::new();
    store.promote_iris();
    let log = tempfile::tempdir().unwrap();
    let mut server = logging_server(&store, log.path(), &[]);
    let agent = http();
    let iris = std::fs::read_to_string(common::repo().join("data/iris.csv")).unwrap();
    let rows: Vec<(f64, String)> = iris
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            (cells[3].parse().unwrap(), cells[4].to_owned())
        })
        .collect();
    for (i, (width, _)) in rows.iter().enumerate() {
        let answer = agent
            .post(&server.url("/predict"))
            .header("X-Request-Id", &format!("r{i}"))
            .send(&format!(r#"{{"petal_width": {width}}}"#))
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let batch =
        r#"{"instances": [{"petal_width": 0.2}, {"petal_width": 2.2}, {"petal_width": 1.5}]}"#;
    let answer = agent
        .post(&server.url("/predict"))
        .header("X-Request-Id", "b")
        .send(batch)
        .unwrap();
    assert_eq!(answer.status(), 200);
    server.terminate();
    assert!(server.wait_exit(PATIENCE).success());

    // Ground truth arrives later, keyed by request id (and #index within a batch); one batch
    // instance is never labelled.
    let mut labels = String::from("request_id,species\n");
    for (i, (_, species)) in rows.iter().enumerate() {
        labels += &format!("r{i},{species}\n");
    }
    labels += "b#0,setosa\nb#1,virginica\n";
    let labels_file = log.path().join("labels.csv");
    std::fs::write(&labels_file, labels).unwrap();

    let folder = log.path().to_str().unwrap().to_owned();
    let glob = format!("{folder}/iris/*/*.jsonl");
    for data in [&folder, &glob] {
        let out = store.ok(&[
            "train",
            "--model",
            "iris-next",
            "--log-model",
            "iris",
            "--data",
            data,
            "--labels",
            labels_file.to_str().unwrap(),
            "--cv-folds",
            "0",
            "--holdout",
            "0",
            "--target",
            "virginica",
        ]);
        assert!(
            out.contains("153 logged instances") && out.contains("152 with a label"),
            "{out}"
        );
        assert!(out.contains("train accuracy 0.96"), "{out}");
        let version = out.lines().last().unwrap().trim().to_owned();
        let model: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(store.path().join(format!("iris-next/{version}/model.json")))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(model["provenance"]["rows"], 152);
        assert_eq!(model["provenance"]["data_path"], data.as_str());
    }
    // A model fitted on every logged row cannot be gated on them by default.
    let labels = labels_file.to_str().unwrap();
    let out = store.limen(&["validate", "--model", "iris-next"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::stderr(&out).contains("fitted on every row"),
        "{}",
        common::stderr(&out)
    );

    // The default hold-out: a fifth of the requests, by request id. The gate finds them again
    // in the log, with --data and --labels or from the candidate's own record.
    let train_next = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--model",
            "iris-next",
            "--log-model",
            "iris",
            "--data",
            &folder,
            "--labels",
            labels,
            "--cv-folds",
            "0",
        ];
        args.extend_from_slice(extra);
        store.ok(&args)
    };
    let out = train_next(&[]);
    let held: usize = out
        .split("holding out ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        out.contains("% by request id") && (10..=50).contains(&held),
        "{out}"
    );
    assert!(
        out.contains(&format!("on {} of the 152 rows", 152 - held)),
        "{out}"
    );
    let phrase = format!("the {held} labelled requests in {folder} that version");
    let gate = store.ok(&["validate", "--model", "iris-next", "--min-accuracy", "0.5"]);
    assert!(
        gate.contains(&phrase) && gate.contains("held out (by request id)"),
        "{gate}"
    );
    // Explicitly (a new candidate, the same rows): --data LOG --labels FILE, like train.
    train_next(&["--alpha", "2"]);
    let gate = store.ok(&[
        "validate",
        "--model",
        "iris-next",
        "--data",
        &folder,
        "--labels",
        labels,
        "--min-accuracy",
        "0.5",
        "--tolerance",
        "1",
    ]);
    assert!(gate.contains(&phrase), "{gate}");

    let missing = store.limen(&[
        "train",
        "--data",
        log.path().join("nowhere").to_str().unwrap(),
        "--labels",
        labels_file.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(common::stderr(&missing).contains("no .jsonl files"));
}

#[test]
fn a_shadowed_request_logs_the_candidates_answer_beside_productions() {
    let store = TestStore::new();
    let (production, candidate) = store.promote_iris_with_a_different_candidate();
    let log = tempfile::tempdir().unwrap();
    // Unlike logging_server, this one shadows every request.
    let mut cmd = limen_command();
    cmd.arg("--store").arg(store.path()).args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--instance",
        "pod-b",
        "--shadow-rate",
        "1",
        "--poll-interval",
        "50ms",
    ]);
    cmd.arg("--inference-log").arg(log.path());
    let mut server = Server::spawn(&mut cmd, "listening on http://").ready();
    let agent = http();
    eventually(PATIENCE, "the candidate in shadow", || {
        let shadow = get(&agent, &server.url("/models/iris")).json()["shadow"].clone();
        (shadow["version"].as_u64().map(|v| v.to_string()).as_deref() == Some(&candidate))
            .then_some(())
    });
    assert_eq!(
        post(&agent, &server.url("/predict"), r#"{"petal_width": 1.6}"#).status,
        200
    );
    server.terminate();
    assert!(server.wait_exit(PATIENCE).success());
    let line = lines(log.path())
        .into_iter()
        .find(|l| l["request_id"].is_string() && l["shadow"].is_object())
        .expect("a line with the shadow answer");
    assert_eq!(line["version"], production.as_str());
    assert_eq!(line["shadow"]["version"], candidate.as_str());
    let theirs = line["shadow"]["probabilities"]["virginica"]
        .as_f64()
        .unwrap();
    let ours = line["probabilities"]["virginica"].as_f64().unwrap();
    assert!((theirs - ours).abs() > 1e-3, "two different models: {line}");
}

#[test]
fn a_second_server_with_the_same_instance_is_refused_rather_than_losing_lines() {
    let store = TestStore::new();
    store.promote_iris();
    let log = tempfile::tempdir().unwrap();
    let _first = logging_server(&store, log.path(), &[]);
    let mut cmd = limen_command();
    cmd.arg("--store").arg(store.path()).args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--instance",
        "pod-a",
    ]);
    cmd.arg("--inference-log").arg(log.path());
    let mut second = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second server did not stop"
        );
        std::thread::yield_now();
    };
    let mut why = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut why).unwrap();
    assert_eq!(status.code(), Some(2), "{why}");
    assert!(
        why.contains("already logs as instance \"pod-a\"") && why.contains("--instance"),
        "{why}"
    );
    // Another instance name on the same folder is fine.
    let _other = logging_server_as(&store, log.path(), "pod-b");
}

#[test]
fn a_logging_server_killed_under_load_leaves_only_whole_lines_to_its_readers() {
    let store = TestStore::new();
    store.promote_iris();
    let log = tempfile::tempdir().unwrap();
    let mut server = logging_server(&store, log.path(), &[]);
    let url = server.url("/predict");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (url, stop, answered) = (url.clone(), stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let agent = http();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if post(&agent, &url, &batch_of(50)).status == 200 {
                        answered.fetch_add(50, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    eventually(PATIENCE, "lines under load", || {
        (log_files(log.path())
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum::<u64>()
            > 200_000)
            .then_some(())
    });
    let _ = server.child.kill(); // SIGKILL, mid-traffic
    let _ = server.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    // Every line but perhaps a file's last one (a write the kill cut) is whole JSON.
    let mut whole = 0u64;
    let mut cut = 0;
    for file in log_files(log.path()) {
        let text = std::fs::read(&file).unwrap();
        let ends_whole = text.last() == Some(&b'\n');
        let lines: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        for (i, line) in lines.iter().enumerate() {
            let last = i + 1 == lines.len();
            match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(_) if !last || ends_whole => whole += 1,
                _ => {
                    assert!(last && !ends_whole, "a bad line inside {}", file.display());
                    cut += 1;
                }
            }
        }
    }
    let answered = answered.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        whole > 0 && whole <= answered + 100,
        "{whole} lines, {answered} answered"
    );
    // `limen drift` reads them all (the cut line skipped, not an error), however few.
    let out = store.limen(&[
        "drift",
        "iris",
        "--log",
        log.path().to_str().unwrap(),
        "--json",
        "--min-samples",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["instances"], whole);
    eprintln!("RELIABILITY | kill -9 of a logging server under load | 1 | {whole} whole lines read back, {cut} cut line skipped; {answered} instances answered");
}

#[test]
fn three_hundred_models_logged_under_a_limit_of_100_descriptors_keep_the_server_answering() {
    let store = TestStore::new();
    let version = store.promote_iris();
    // 300 models, each a copy of iris under its own name (re-signed, as a trainer would write it).
    let bytes = std::fs::read(store.path().join(format!("iris/{version}/model.json"))).unwrap();
    let artifact: limen::model::ModelArtifact = serde_json::from_slice(&bytes).unwrap();
    let names: Vec<String> = (0..300).map(|i| format!("m{i:03}")).collect();
    for name in &names {
        let mut copy = artifact.clone();
        copy.name = name.clone();
        let folder = store.path().join(name).join(&version);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("model.json"), copy.to_json_bytes()).unwrap();
        std::fs::write(
            store.path().join(name).join("production"),
            format!("{version}\n"),
        )
        .unwrap();
    }
    let log = tempfile::tempdir().unwrap();
    // The server under `ulimit -n 100`: one open log file per model would run out.
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "ulimit -n 100 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_limen"))
        .arg("--store")
        .arg(store.path())
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--instance",
            "pod-a",
            "--default-model",
            "m000",
        ])
        .arg("--inference-log")
        .arg(log.path())
        .env("LIMEN_LOG", "error");
    let server = Server::spawn(&mut cmd, "listening on http://");
    let agent = http();
    eventually(PATIENCE, "every model loaded", || {
        let models = get(&agent, &server.url("/models")).json();
        let loaded = models["models"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["loaded"].is_u64()).count());
        (loaded == 301).then_some(())
    });
    for name in &names {
        let url = server.url(&format!("/models/{name}/predict"));
        assert_eq!(
            post(&agent, &url, r#"{"petal_width": 1.5}"#).status,
            200,
            "{name}"
        );
    }
    eventually(PATIENCE, "a line per model", || {
        (lines(log.path()).len() == names.len()).then_some(())
    });
    let started = std::time::Instant::now();
    assert_eq!(get(&agent, &server.url("/healthcheck")).status, 200);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let metrics = get(&agent, &server.url("/metrics")).body;
    assert_eq!(dropped(&metrics, "write_failed"), 0.0);
}
