//! The HTTP stack under limen's router: the async runtime, the connection loop (hyper's HTTP/1
//! server with limen's settings) and the stop signal. `benches/floor` serves its one route
//! through these same functions, so a comparison with it measures limen's own per-request work
//! and nothing else.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// The multi-threaded runtime `limen serve` runs on: `workers` threads, or one per CPU core
/// when 0.
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    // A worker about to wait for work gives back what it freed (crate::budget explains why), and
    // so does a blocking thread before it exits, which it does after 2 s without work (tokio's
    // default is 10 s) so that the memory of a burst of large batches goes back soon after.
    builder.on_thread_park(crate::budget::release_if_large_work);
    builder.on_thread_stop(crate::budget::release_idle_memory);
    builder.thread_keep_alive(Duration::from_secs(2));
    builder.enable_all().build()
}

/// Accepts connections and serves each with hyper's HTTP/1 server, watched by `graceful`.
///
/// Not `axum::serve`, for three settings it does not expose: a header read timeout (a client
/// that never finishes its request head — slowloris — or a keep-alive connection left idle is
/// closed after `--idle-timeout`), `TCP_NODELAY`, and how accept errors such as running out of
/// file descriptors are handled (a short pause, not a one-second stall).
pub async fn accept_loop(
    listener: TcpListener,
    app: Router,
    idle_timeout: Duration,
    graceful: &GracefulShutdown,
) -> Infallible {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .keep_alive(true)
        // A client that sends its request and then shuts down its sending side (`shutdown(
        // SHUT_WR)`, as some scripts and proxies do) still gets its answer.
        .half_close(true);
    let mut last_warning: Option<Instant> = None;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Per-connection failures (reset before accept) need no pause; running out of
                // descriptors or memory does, briefly, so the loop does not spin.
                let per_connection = matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionRefused
                );
                if !per_connection {
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                        tracing::warn!(error = %e, "cannot accept connections");
                        last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
}

/// Resolves with the name of the first of SIGTERM or SIGINT to arrive.
pub async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = term => "SIGTERM",
    }
}
