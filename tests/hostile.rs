//! Hostile clients over real sockets: bodies that trickle or never come, heads that never end,
//! floods of idle connections, bodies larger than the limit with no `Content-Length`, and bodies
//! no parser should choke on.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{get, http, post, usage, Server, TestApp, TestStore, PATIENCE};

fn served(args: &[&str]) -> (TestStore, Server) {
    let TestApp { server, store, .. } = TestApp::spawn(args);
    (store, server)
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Reads until the server closes the connection or the timeout; returns what arrived.
fn read_all(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// A healthy client's /predict round trip, timed.
fn healthy_round_trip(server: &Server) -> Duration {
    let started = Instant::now();
    let answer = post(&http(), &server.url("/predict"), r#"{"petal_width": 2.1}"#);
    assert_eq!(answer.status, 200);
    started.elapsed()
}

#[test]
fn a_trickled_body_is_cut_by_the_request_timeout_without_blocking_others() {
    let (_store, server) = served(&["--request-timeout", "1s"]);
    let mut slow = connect(&server);
    write!(
        slow,
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n"
    )
    .unwrap();
    let started = Instant::now();
    let trickler = std::thread::spawn(move || {
        // One byte a second; the server gives up long before the 40th.
        for b in br#"{"petal_width":"#.iter().take(3) {
            if slow.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        read_all(&mut slow)
    });
    // Meanwhile, other clients are answered at once.
    for _ in 0..5 {
        assert!(healthy_round_trip(&server) < Duration::from_secs(1));
    }
    let response = trickler.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.contains("did not complete within 1s"),
        "{response}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_body_that_never_comes_is_cut_by_the_request_timeout() {
    let (_store, server) = served(&["--request-timeout", "1s"]);
    let mut s = connect(&server);
    write!(
        s,
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n"
    )
    .unwrap();
    let started = Instant::now();
    let response = read_all(&mut s);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!((Duration::from_millis(900)..Duration::from_secs(5)).contains(&started.elapsed()));
}

#[test]
fn a_head_that_never_ends_is_cut_by_the_idle_timeout() {
    let (_store, server) = served(&["--idle-timeout", "1s"]);
    let mut s = connect(&server);
    write!(s, "POST /predict HTTP/1.1\r\nHost: x\r\n").unwrap(); // and nothing more
    let started = Instant::now();
    let response = read_all(&mut s);
    assert!(!response.starts_with("HTTP/1.1 2"), "{response}");
    assert!((Duration::from_millis(900)..Duration::from_secs(5)).contains(&started.elapsed()));
}

#[test]
fn a_flood_of_idle_connections_does_not_stop_the_healthcheck() {
    let (_store, server) = served(&[]);
    // Stay well inside this process's descriptor limit (the test holds one per connection).
    let soft_limit: usize = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(1024);
    let flood = (soft_limit / 2).clamp(100, 2000);
    let idle: Vec<TcpStream> = (0..flood)
        .filter_map(|_| TcpStream::connect(server.addr).ok())
        .collect();
    assert!(idle.len() >= 100, "only {} connections opened", idle.len());
    let agent = http();
    for _ in 0..10 {
        let started = Instant::now();
        let answer = get(&agent, &server.url("/healthcheck"));
        assert_eq!(answer.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?} with {} idle connections",
            started.elapsed(),
            idle.len()
        );
    }
    eprintln!(
        "healthcheck answered promptly beside {} idle connections",
        idle.len()
    );
}

#[test]
fn the_body_limit_is_enforced_while_reading_not_after_buffering() {
    let (_store, server) = served(&["--max-body", "1KiB"]);
    let mut s = connect(&server);
    // Chunked: no Content-Length to refuse up front. Send 64 chunks of 512 bytes, slowly.
    write!(
        s,
        "POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let chunk = format!("200\r\n{}\r\n", "x".repeat(512));
    let mut sent = 0;
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut response = Vec::new();
    for _ in 0..64 {
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
        sent += 512;
        let mut buf = [0u8; 4096];
        if let Ok(n) = s.read(&mut buf) {
            if n > 0 {
                response.extend_from_slice(&buf[..n]);
                break;
            }
        }
    }
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(sent <= 8 * 512, "answered only after {sent} bytes");
}

#[test]
fn bodies_no_parser_should_choke_on_get_a_4xx() {
    let (_store, server) = served(&[]);
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("/predict", deep.clone().into_bytes(), 400),
        ("/predict", format!(r#"{{"instances": {deep}}}"#).into_bytes(), 400),
        ("/predict", b"{\"petal_width\": \"\xff\xfe\"}".to_vec(), 400),
        ("/predict", b"\xef\xbb\xbf{\"petal_width\": 1}".to_vec(), 400),
        ("/v2/models/iris/infer", deep.into_bytes(), 400),
        (
            "/v2/models/iris/infer",
            br#"{"inputs": [{"name": "input", "shape": [1000000000000000000, 1], "datatype": "FP64", "data": [1]}]}"#.to_vec(),
            400,
        ),
    ];
    let agent = http();
    for (path, body, want) in cases {
        let answer = agent.post(&server.url(path)).send(&body[..]).unwrap();
        assert_eq!(
            answer.status().as_u16(),
            want,
            "{path} {:.60}",
            String::from_utf8_lossy(&body)
        );
    }
    // And the server is still fine.
    assert!(healthy_round_trip(&server) < PATIENCE);
}

/// What is sent, where, with which extra header, and the status it must get.
type Case = (
    &'static str,
    &'static str,
    Option<(&'static str, String)>,
    Vec<u8>,
    u16,
);

#[test]
fn no_request_within_the_body_limit_raises_peak_memory_by_more_than_32_mib() {
    let agent = http();

    let mib = 1024 * 1024 - 1024;
    let instance = r#"{"petal_width":1},"#;
    let big_batch = format!(
        r#"{{"instances":[{}{{"petal_width":1}}]}}"#,
        instance.repeat(mib / instance.len())
    );
    let flat_data = format!(
        r#"{{"inputs":[{{"name":"input","shape":[{n},1],"datatype":"FP32","data":[{}1]}}]}}"#,
        "1,".repeat(mib / 2 - 100),
        n = mib / 2 - 99
    );
    let many_outputs = format!(
        r#"{{"inputs":[{{"name":"input","shape":[2000,1],"datatype":"FP64","data":[{}1]}}],"outputs":[{}{{"name":"label"}}]}}"#,
        "1,".repeat(1999),
        r#"{"name":"probabilities"},"#.repeat(100)
    );
    let ignored_keys = format!(
        r#"{{"petal_width":1,{}"z":0}}"#,
        (0..mib / 16)
            .map(|i| format!(r#""k{i:07}":1,"#))
            .collect::<String>()
    );
    // (what, path, extra header, body, status)
    let cases: Vec<Case> = vec![
        (
            "/predict, 1 MiB batch (58,000 instances)",
            "/predict",
            None,
            big_batch.into_bytes(),
            200,
        ),
        (
            "/predict, 1 MiB of ignored keys",
            "/predict",
            None,
            ignored_keys.into_bytes(),
            200,
        ),
        (
            "/v2 infer, 1 MiB of JSON data (524,000 rows)",
            "/v2/models/iris/infer",
            None,
            flat_data.into_bytes(),
            413,
        ),
        (
            "/v2 infer, an output asked for 100 times",
            "/v2/models/iris/infer",
            None,
            many_outputs.into_bytes(),
            400,
        ),
        (
            "/v2 infer, 1 MiB of INT8 binary data (1,040,000 rows)",
            "/v2/models/iris/infer",
            {
                let json = format!(
                    r#"{{"inputs":[{{"name":"input","shape":[{mib},1],"datatype":"INT8","parameters":{{"binary_data_size":{mib}}}}}]}}"#
                );
                Some(("inference-header-content-length", json.len().to_string()))
            },
            {
                let json = format!(
                    r#"{{"inputs":[{{"name":"input","shape":[{mib},1],"datatype":"INT8","parameters":{{"binary_data_size":{mib}}}}}]}}"#
                );
                let mut body = json.into_bytes();
                body.extend(std::iter::repeat_n(1u8, mib));
                body
            },
            413,
        ),
    ];
    for (what, path, header, body, status) in cases {
        // A fresh server per case, warmed up on every route: its peak-RSS growth is this
        // request's alone.
        let (_store, server) = served(&[]);
        let pid = server.child.id();
        assert!(healthy_round_trip(&server) < PATIENCE);
        post(
            &agent,
            &server.url("/v2/models/iris/infer"),
            r#"{"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP64", "data": [1]}]}"#,
        );
        let (before, cpu_before) = usage(pid);
        let started = Instant::now();
        let mut request = agent.post(&server.url(path));
        if let Some((name, value)) = &header {
            request = request.header(*name, value);
        }
        let response = request.send(&body[..]).unwrap();
        let got = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        let took = started.elapsed();
        let (after, cpu_after) = usage(pid);
        assert_eq!(got, status, "{what}: {:.200}", text);
        eprintln!(
            "RELIABILITY | resource budget | {what} | {} KiB body | HTTP {got} in {:.1} ms | CPU {} ms | peak RSS +{} KiB",
            body.len() / 1024,
            took.as_secs_f64() * 1000.0,
            (cpu_after - cpu_before).as_millis(),
            after.saturating_sub(before),
        );
        assert!(
            after.saturating_sub(before) <= 32 * 1024,
            "{what}: peak RSS grew by {} KiB",
            after - before
        );
        assert!(healthy_round_trip(&server) < PATIENCE);
    }
}

#[test]
fn a_client_that_half_closes_after_its_request_still_gets_the_answer() {
    let (_store, server) = served(&[]);
    let mut s = connect(&server);
    let body = r#"{"petal_width": 2.1}"#;
    write!(
        s,
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let response = read_all(&mut s);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("0.8704"), "{response}");
}

#[test]
fn ambiguous_requests_are_refused_not_guessed() {
    let (_store, server) = served(&[]);
    let agent = http();
    let version = post(&agent, &server.url("/predict"), r#"{"petal_width": 1}"#)
        .version_header
        .unwrap();
    let cases = [
        ("/predict", r#"{"petal_width": 1, "petal_width": 2}"#.to_owned()),
        ("/predict", r#"{"petal_width": 1, "instances": [{"petal_width": 2}]}"#.to_owned()),
        ("/predict", r#"{"instances": [], "instances": [{"petal_width": 2}]}"#.to_owned()),
        (
            "/v2/models/iris/infer",
            r#"{"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP64", "data": [1]}], "outputs": [{"name": "label"}, {"name": "label"}]}"#.to_owned(),
        ),
        (
            "/v2/models/iris/infer",
            r#"{"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP64", "data": [1], "data": [2]}]}"#.to_owned(),
        ),
    ];
    for (path, body) in cases {
        let answer = post(&agent, &server.url(path), &body);
        assert_eq!(answer.status, 400, "{path} {body}: {}", answer.body);
        assert_eq!(answer.json()["kind"], "malformed", "{}", answer.body);
    }
    // A version with a leading zero is not another spelling of the version.
    let answer = post(
        &agent,
        &server.url(&format!("/models/iris/versions/0{version}/predict")),
        r#"{"petal_width": 1}"#,
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(!answer.body.contains("VersionId") && !answer.body.contains("ModelName"));
}
