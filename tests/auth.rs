//! Bearer tokens per route group over real HTTP (curl, as users send it): a closed group answers
//! 401 with the usual error body and `WWW-Authenticate`, admits its tokens, leaves health routes
//! and other groups open, counts its refusals, and follows a rotated token file without a
//! restart; an unusable token file stops the server at start.

mod common;

use std::process::Command;

use common::{eventually, Server, TestStore, PATIENCE};

/// `curl` as users run it: status, then body.
fn curl(url: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", url]);
    if let Some(token) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    if let Some(body) = body {
        cmd.args(["-X", "POST", "-d", body]);
    }
    let out = cmd.output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn a_closed_group_asks_for_its_token_and_follows_a_rotation() {
    let store = TestStore::new();
    store.promote_iris();
    let secrets = tempfile::tempdir().unwrap();
    let inference = secrets.path().join("inference");
    let metrics = secrets.path().join("metrics");
    std::fs::write(&inference, "first-inference-token-0001\n").unwrap();
    std::fs::write(&metrics, "metrics-token-000000000002\n").unwrap();
    let files = format!(
        "inference={},metrics={}",
        inference.display(),
        metrics.display()
    );
    let server = Server::serve(
        store.path(),
        &["--auth-token-file", &files, "--poll-interval", "50ms"],
    )
    .ready();
    let body = Some(r#"{"petal_width": "2.1"}"#);
    let predict = server.url("/predict");

    let (status, text) = curl(&predict, None, body);
    assert_eq!(status, 401, "{text}");
    let error: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["kind"], "unauthorized");
    assert!(error["error"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
    assert_eq!(curl(&predict, Some("not-the-token-at-all-0"), body).0, 401);
    assert_eq!(
        curl(&predict, Some("metrics-token-000000000002"), body).0,
        401
    );
    let (status, text) = curl(&predict, Some("first-inference-token-0001"), body);
    assert_eq!(status, 200, "{text}");
    let infer =
        r#"{"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP64", "data": [2.1]}]}"#;
    assert_eq!(
        curl(&server.url("/v2/models/iris/infer"), None, Some(infer)).0,
        401
    );

    // Probes and open groups need nothing.
    for path in [
        "/healthcheck",
        "/ready",
        "/v2/health/ready",
        "/models",
        "/openapi.json",
    ] {
        assert_eq!(curl(&server.url(path), None, None).0, 200, "{path}");
    }
    assert_eq!(curl(&server.url("/metrics"), None, None).0, 401);
    let (status, scrape) = curl(
        &server.url("/metrics"),
        Some("metrics-token-000000000002"),
        None,
    );
    assert_eq!(status, 200);
    assert!(
        scrape.contains(
            r#"limen_http_requests_total{method="POST",route="/predict",status="401"} 3"#
        ),
        "refusals are counted:\n{}",
        scrape
            .lines()
            .filter(|l| l.contains("401"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The Secret rotates: the new token is accepted within a poll interval, the old one not.
    std::fs::write(&inference, "second-inference-token-02\n").unwrap();
    eventually(PATIENCE, "the rotated token", || {
        (curl(&predict, Some("second-inference-token-02"), body).0 == 200).then_some(())
    });
    assert_eq!(
        curl(&predict, Some("first-inference-token-0001"), body).0,
        401
    );
}

#[test]
fn an_unusable_token_file_stops_the_server() {
    let store = TestStore::new();
    let secrets = tempfile::tempdir().unwrap();
    let short = secrets.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    for (arg, says) in [
        (format!("inference={}", short.display()), "shorter than 16"),
        (
            format!("inference={}", secrets.path().join("missing").display()),
            "cannot read the inference token file",
        ),
        (format!("pages={}", short.display()), "not a route group"),
    ] {
        let out = store.limen(&["serve", "--addr", "127.0.0.1:0", "--auth-token-file", &arg]);
        assert_eq!(out.status.code(), Some(2), "{arg}");
        let why = common::stderr(&out);
        assert!(why.contains(says), "{arg}: {why}");
    }
}
