//! Black-box tests of `limen serve` and `limen quickstart`: the real binary on a temporary store,
//! over real HTTP on 127.0.0.1, with real curl for the users' own commands.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{eventually, get, http, post, Server, TestStore, PATIENCE};

const SEED_BODY: &str = r#"{"petal_width": "2.1"}"#;

/// A store with a production `iris` model; returns the store and the version.
fn store_with_production() -> (TestStore, String) {
    let store = TestStore::new();
    let version = store.promote_iris();
    (store, version)
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_users_curl_commands_work_exactly_as_typed() {
    let (store, version) = store_with_production();
    let server = Server::serve(store.path(), &[]).ready();
    let host = format!("127.0.0.1:{}", server.addr.port());

    // curl -d sends Content-Type: application/x-www-form-urlencoded; the body is JSON anyway.
    let out = curl(&["-X", "POST", "-d", SEED_BODY, &format!("{host}/predict")]);
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    let result = answer["result"].as_f64().unwrap();
    assert!((result - 0.8704417670566003).abs() < 1e-3, "{out}");
    assert_eq!(answer["version"], version.as_str());
    assert_eq!(answer["label"], "virginica");

    assert_eq!(curl(&[&format!("{host}/healthcheck")]), "Server is up!");
    assert_eq!(
        curl(&["-X", "POST", &format!("{host}/healthcheck")]),
        "Server is up!"
    );
    assert_eq!(curl(&[&format!("{host}/version")]), version);

    let headers = curl(&[
        "-i",
        "-X",
        "POST",
        "-d",
        SEED_BODY,
        &format!("{host}/predict"),
    ]);
    assert!(
        headers.contains(&format!("x-model-version: {version}")),
        "{headers}"
    );
}

#[test]
fn predict_answers_single_and_batch_requests() {
    let (store, version) = store_with_production();
    let server = Server::serve(store.path(), &[]).ready();
    let agent = http();

    let single = post(
        &agent,
        &server.url("/predict"),
        r#"{"petal_width": 2.1, "ignored": "x"}"#,
    );
    assert_eq!(single.status, 200, "{}", single.body);
    assert_eq!(single.version_header.as_deref(), Some(version.as_str()));
    assert_eq!(single.content_type.as_deref(), Some("application/json"));
    let body = single.json();
    assert_eq!(body["model"], "iris");
    let p = &body["probabilities"];
    let sum = p["virginica"].as_f64().unwrap() + p["not_virginica"].as_f64().unwrap();
    assert!((sum - 1.0).abs() < 1e-12);

    let batch = post(
        &agent,
        &server.url("/predict"),
        r#"{"instances": [{"petal_width": 0.2}, {"petal_width": "2.1"}, {"petal_width": 1.5}]}"#,
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    assert_eq!(batch.version_header.as_deref(), Some(version.as_str()));
    let body = batch.json();
    let predictions = body["predictions"].as_array().unwrap();
    let labels: Vec<&str> = predictions
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["not_virginica", "virginica", "not_virginica"]);
    assert_eq!(predictions[1]["result"], single.json()["result"]);
}

#[test]
fn bad_requests_get_a_json_error_with_the_right_status() {
    let (store, _) = store_with_production();
    let server = Server::serve(store.path(), &["--max-body", "1KiB"]).ready();
    let agent = http();
    let big = format!(r#"{{"petal_width": 2.1, "pad": "{}"}}"#, "x".repeat(2048));
    let cases: &[(&str, &str, &str, u16)] = &[
        ("POST", "/predict", "{not json", 400),
        ("POST", "/predict", "", 400),
        ("POST", "/predict", "[2.1]", 400),
        ("POST", "/predict", "\"petal_width\"", 400),
        (
            "POST",
            "/predict",
            r#"{"instances": {"petal_width": 1}}"#,
            400,
        ),
        ("POST", "/predict", "{}", 422),
        ("POST", "/predict", r#"{"sepal_width": 3}"#, 422),
        ("POST", "/predict", r#"{"petal_width": "wide"}"#, 422),
        ("POST", "/predict", r#"{"petal_width": "NaN"}"#, 422),
        ("POST", "/predict", r#"{"petal_width": "inf"}"#, 422),
        ("POST", "/predict", r#"{"petal_width": "-inf"}"#, 422),
        ("POST", "/predict", r#"{"petal_width": 1e999}"#, 422),
        ("POST", "/predict", r#"{"petal_width": true}"#, 422),
        ("POST", "/predict", r#"{"petal_width": null}"#, 422),
        ("POST", "/predict", r#"{"instances": []}"#, 422),
        ("POST", "/predict", &big, 413),
        ("GET", "/nowhere", "", 404),
        ("POST", "/models/iris/../../etc/passwd", "", 404),
        ("GET", "/predict", "", 405),
        ("DELETE", "/healthcheck", "", 405),
        ("POST", "/version", "", 405),
    ];
    for (method, path, body, want) in cases {
        let out = curl(&[
            "-X",
            method,
            "-d",
            body,
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            &server.url(path),
        ]);
        let (body_out, status) = out.rsplit_once('\n').unwrap();
        assert_eq!(
            status,
            want.to_string(),
            "{method} {path} {body:.60}: {body_out}"
        );
        let error: serde_json::Value = serde_json::from_str(body_out)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body_out}"));
        let message = error["error"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{method} {path}: {body_out}");
    }
    // A missing feature names it; a bad value names the value.
    let missing = post(&agent, &server.url("/predict"), "{}").json();
    assert!(missing["error"].as_str().unwrap().contains("petal_width"));
    let bad = post(
        &agent,
        &server.url("/predict"),
        r#"{"petal_width": "wide"}"#,
    )
    .json();
    assert!(bad["error"]
        .as_str()
        .unwrap()
        .contains("\"wide\" is not a number"));
}

#[test]
fn an_oversized_body_is_refused_before_it_is_sent() {
    let (store, _) = store_with_production();
    let server = Server::serve(store.path(), &["--max-body", "1KiB"]).ready();
    // Declare 100 MB and send nothing: the answer must come without waiting for the body.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("larger than the limit of 1024 bytes"),
        "{response}"
    );
}

#[test]
fn the_server_starts_without_a_store_and_becomes_ready_when_a_model_appears() {
    let parent = TestStore::new();
    let root = parent.path().join("not-yet");
    let server = Server::serve(&root, &["--poll-interval", "200ms"]);
    let agent = http();
    assert_eq!(get(&agent, &server.url("/healthcheck")).status, 200);
    let ready = get(&agent, &server.url("/ready"));
    assert_eq!(ready.status, 503);
    let why = ready.json()["error"].as_str().unwrap().to_owned();
    assert!(
        why.starts_with("not ready: the store cannot be read"),
        "{why}"
    );
    assert_eq!(post(&agent, &server.url("/predict"), SEED_BODY).status, 503);
    assert_eq!(get(&agent, &server.url("/version")).status, 503);

    let out = common::limen_command()
        .arg("--store")
        .arg(&root)
        .args(["train", "--cv-folds", "0"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let out = common::limen_command()
        .arg("--store")
        .arg(&root)
        .arg("validate")
        .output()
        .unwrap();
    assert!(out.status.success());

    eventually(PATIENCE, "/ready to turn 200", || {
        (get(&agent, &server.url("/ready")).status == 200).then_some(())
    });
    let answer = post(&agent, &server.url("/predict"), SEED_BODY);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["version"], version.as_str());
}

/// Promotes a new version and waits for /predict to answer with it.
#[test]
fn every_model_in_the_store_is_served_and_ready_waits_for_each() {
    let store = TestStore::new();
    let iris = store.promote_iris();
    let species = store.promote_species();
    let server = Server::serve(store.path(), &["--poll-interval", "200ms"]).ready();
    let agent = http();
    let ready = get(&agent, &server.url("/ready")).json();
    assert_eq!(
        ready["models"],
        serde_json::json!({"iris": iris, "iris-species": species})
    );
    // A model promoted later is served without a restart, and /ready names it once loaded.
    let next = store.promote("iris-next", &[]);
    eventually(PATIENCE, "iris-next in /ready", || {
        let ready = get(&agent, &server.url("/ready")).json();
        (ready["models"]["iris-next"] == next.as_str()).then_some(())
    });
    let url = server.url("/models/iris-next/predict");
    assert_eq!(post(&agent, &url, SEED_BODY).status, 200);
    assert_eq!(get(&agent, &server.url("/version")).body, iris);

    // --model narrows: only the models named are served, and the first is /predict's.
    let narrowed = Server::serve(store.path(), &["--model", "iris-species"]).ready();
    let ready = get(&agent, &narrowed.url("/ready")).json();
    assert_eq!(
        ready["models"],
        serde_json::json!({"iris-species": species})
    );
    let other = post(&agent, &narrowed.url("/models/iris/predict"), SEED_BODY);
    assert_eq!(other.status, 404, "{}", other.body);
    assert_eq!(get(&agent, &narrowed.url("/version")).body, species);
}

fn hot_reload_with(watch_args: &[&str]) {
    let (store, first) = store_with_production();
    let server = Server::serve(store.path(), watch_args).ready();
    let agent = http();
    assert_eq!(
        post(&agent, &server.url("/predict"), SEED_BODY).json()["version"],
        first.as_str()
    );

    let second = store.promote_iris();
    eventually(
        Duration::from_secs(2),
        "the new version to be served",
        || {
            let answer = post(&agent, &server.url("/predict"), SEED_BODY);
            assert_eq!(answer.status, 200);
            (answer.version_header.as_deref() == Some(second.as_str())).then_some(())
        },
    );
    assert_eq!(get(&agent, &server.url("/version")).body, second);
}

#[test]
fn a_promotion_is_served_without_a_restart() {
    hot_reload_with(&[]);
}

#[test]
fn a_promotion_is_served_without_a_restart_when_only_polling() {
    hot_reload_with(&["--watch", "poll", "--poll-interval", "500ms"]);
}

#[test]
fn a_corrupt_new_version_is_refused_and_the_old_one_keeps_serving() {
    let (store, good) = store_with_production();
    let server = Server::serve(store.path(), &["--poll-interval", "200ms"]).ready();
    let agent = http();

    // Publish a damaged copy as a new version and point production at it by hand.
    let text =
        std::fs::read_to_string(store.path().join(format!("iris/{good}/model.json"))).unwrap();
    let bad = (good.parse::<u64>().unwrap() + 1).to_string();
    std::fs::create_dir(store.path().join(format!("iris/{bad}"))).unwrap();
    std::fs::write(
        store.path().join(format!("iris/{bad}/model.json")),
        text.replace(&good, &bad),
    )
    .unwrap();
    std::fs::write(store.path().join("iris/production"), format!("{bad}\n")).unwrap();

    let status = eventually(PATIENCE, "/models to report the bad version", || {
        let models = get(&agent, &server.url("/models")).json();
        let iris = models["models"][0].clone();
        (iris["production"].as_u64().map(|v| v.to_string()) == Some(bad.clone())
            && !iris["last_error"].is_null())
        .then_some(iris)
    });
    assert_eq!(status["loaded"].to_string(), good);
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains(&bad) && error.contains("checksum"),
        "{error}"
    );
    let answer = post(&agent, &server.url("/predict"), SEED_BODY);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.version_header.as_deref(), Some(good.as_str()));

    // Fixing the pointer clears the error.
    std::fs::write(store.path().join("iris/production"), format!("{good}\n")).unwrap();
    eventually(PATIENCE, "the error to clear", || {
        get(&agent, &server.url("/models")).json()["models"][0]["last_error"]
            .is_null()
            .then_some(())
    });
}

#[test]
fn sigterm_lets_requests_in_flight_finish_and_exits_0() {
    let (store, _) = store_with_production();
    let mut server = Server::serve(store.path(), &["--shutdown-timeout", "5s"]).ready();
    // Four requests whose bodies are half sent when SIGTERM arrives.
    let body = SEED_BODY.as_bytes();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut streams: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            write!(
                s,
                "POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .unwrap();
            s.write_all(head).unwrap();
            s
        })
        .collect();
    // Make sure the server has every request in hand before the signal.
    eventually(PATIENCE, "the server to accept the connections", || {
        (get(&http(), &server.url("/healthcheck")).status == 200).then_some(())
    });
    server.terminate();
    for s in &mut streams {
        s.write_all(tail).unwrap();
    }
    for s in &mut streams {
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"result\""), "{response}");
    }
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}");
}

#[test]
fn clients_see_no_errors_while_models_are_promoted_under_them() {
    let (store, first) = store_with_production();
    let server = Server::serve(store.path(), &["--poll-interval", "100ms"]).ready();
    let url = server.url("/predict");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = http();
                let mut seen = Vec::new();
                let mut failures = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let answer = post(&agent, &url, SEED_BODY);
                    if answer.status == 200 {
                        seen.push(answer.version_header.unwrap_or_default());
                    } else {
                        failures.push(format!("{}: {}", answer.status, answer.body));
                    }
                }
                (seen, failures)
            })
        })
        .collect();

    let mut promoted = vec![first];
    for _ in 0..4 {
        let version = store.promote_iris();
        eventually(PATIENCE, "the promotion to be served", || {
            (post(&http(), &url, SEED_BODY).version_header.as_deref() == Some(version.as_str()))
                .then_some(())
        });
        promoted.push(version);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let (seen, failures) = client.join().unwrap();
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        assert!(!seen.is_empty());
        // Every answer came from a promoted version, and versions never went backwards.
        let order: Vec<usize> = seen
            .iter()
            .map(|v| {
                promoted
                    .iter()
                    .position(|p| p == v)
                    .expect("an unpromoted version")
            })
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "versions went backwards"
        );
    }
}

#[test]
fn quickstart_trains_validates_and_serves_with_the_curl_lines() {
    let store = TestStore::new();
    let server = Server::start(
        store.path(),
        &["quickstart", "--addr", "127.0.0.1:0"],
        "limen is serving on http://",
    );
    let agent = http();
    eventually(PATIENCE, "/ready", || {
        (get(&agent, &server.url("/ready")).status == 200).then_some(())
    });
    let answer = post(&agent, &server.url("/predict"), SEED_BODY);
    assert_eq!(answer.status, 200);
    assert!(store.pointer("iris", "production").is_some());
    let banner = server.banner.join("\n");
    assert!(banner.contains("training and validating"), "{banner}");
    drop(server);

    // A second run finds the production model and serves it without retraining.
    let again = Server::start(
        store.path(),
        &["quickstart", "--addr", "127.0.0.1:0"],
        "limen is serving on http://",
    );
    assert!(
        !again.banner.join("\n").contains("training"),
        "{:?}",
        again.banner
    );
}
