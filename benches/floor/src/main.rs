//! limen-floor: the cheapest reasonable server doing `/predict`'s job, to measure limen against.
//!
//! One route, `POST /predict`: read the body, decode the reference client's JSON
//! (`{"petal_width": "2.1"}`, the number as a string or not) with serde_json, score it with one
//! logistic unit, and answer with the fields, size and headers of limen's answer (model, version,
//! label, probabilities, result; `content-type` and `x-model-version`). It runs on limen's own
//! runtime, allocator and HTTP stack (`limen::serve::http`), so limen's `/predict` against this
//! is limen's per-request work alone: routing among its routes, middleware, metrics, the model
//! lookup, shadow sampling, drift counters, validation and error handling.
//!
//!   limen-floor [--addr 127.0.0.1:8080] [--workers N]
//!
//! Prints `listening on http://ADDR` when ready (as `limen serve` does); stops on SIGINT/SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The allocator limen's binary uses (see its `src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A version number as long as limen's (a millisecond timestamp).
const VERSION: &str = "1795901812551";

#[derive(Parser)]
#[command(about = "The bare /predict server limen's /predict is measured against")]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Runtime worker threads; 0 means one per CPU core (as `limen serve --workers`).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Idle and header-read timeout in seconds (limen's `--idle-timeout` default).
    #[arg(long, default_value = "75")]
    idle_timeout_secs: u64,
}

#[derive(Deserialize)]
struct Seed<'a> {
    #[serde(borrow)]
    petal_width: &'a RawValue,
}

#[derive(Serialize)]
struct Answer {
    model: &'static str,
    version: &'static str,
    label: &'static str,
    probabilities: Probabilities,
    result: f64,
}

#[derive(Serialize)]
struct Probabilities {
    not_virginica: f64,
    virginica: f64,
}

fn bad_request(message: &'static str) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

async fn predict(body: Bytes) -> Response {
    let Ok(seed) = serde_json::from_slice::<Seed>(&body) else {
        return bad_request("send {\"petal_width\": <number>}");
    };
    let raw = seed.petal_width.get();
    let text = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    let Ok(width) = text.parse::<f64>() else {
        return bad_request("petal_width must be a number");
    };
    if !width.is_finite() {
        return bad_request("petal_width must be finite");
    }
    // Iris virginica against petal width, near the reference model's fit.
    let p = 1.0 / (1.0 + (-(4.3 * width - 7.2)).exp());
    let answer = Answer {
        model: "iris",
        version: VERSION,
        label: if p >= 0.5 {
            "virginica"
        } else {
            "not_virginica"
        },
        probabilities: Probabilities {
            not_virginica: 1.0 - p,
            virginica: p,
        },
        result: p,
    };
    let Ok(json) = serde_json::to_vec(&answer) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = Response::new(Body::from(json));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        HeaderName::from_static("x-model-version"),
        HeaderValue::from_static(VERSION),
    );
    response
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match limen::serve::http::runtime(args.workers) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.addr);
                return ExitCode::from(2);
            }
        };
        match listener.local_addr() {
            Ok(addr) => println!("listening on http://{addr}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
        let _ = std::io::stdout().flush();
        let app = Router::new().route("/predict", post(predict));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let idle = Duration::from_secs(args.idle_timeout_secs);
        tokio::select! {
            never = limen::serve::http::accept_loop(listener, app, idle, &graceful) => match never {},
            _ = limen::serve::http::shutdown_signal() => ExitCode::SUCCESS,
        }
    })
}
