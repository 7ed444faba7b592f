//! Hostile clients over real sockets: bodies that trickle or never come, heads that never end,
//! floods of idle connections, bodies larger than the limit with no `Content-Length`, and bodies
//! no parser should choke on.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{get, http, post, Server, TestApp, TestStore, PATIENCE};

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
