//! `limen serve`: the HTTP service. Builds the router, runs it with the store reloader beside it,
//! and shuts down gracefully on SIGTERM/SIGINT within a drain deadline.
//!
//! Inside, lowest first: `error` (the one failure → status table) and `status` (the JSON of
//! `/models`); `state` (what handlers see, and the gate on store reads); `body` (the raw-body
//! extractor), `reply` (answer builders) and `lookup` (URL → model); `handlers` (the `/predict`
//! family) and `v2` (the Open Inference Protocol); this file (the router and the server loop).
//! Each imports only from the layers before it (`tests/architecture.rs`).

mod activity;
mod body;
mod error;
mod handlers;
mod lookup;
mod pages;
mod reply;
mod state;
mod status;
mod v2;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

pub use error::{ApiError, ErrorKind};
pub use reply::MODEL_VERSION_HEADER;
pub use state::{AppState, Limits};

use crate::catalog::Catalog;
use crate::inference_log::{InferenceLog, LogConfig};
use crate::registry::{Registry, RegistryConfig};
use crate::shadow::{Shadow, ShadowConfig};
use crate::store::ModelName;
use crate::telemetry::Metrics;
use crate::watch::{ChangeSource, WatchMode};

/// Checked settings of `limen serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    /// The model `/predict`, `/ready` and `/version` answer for.
    pub default_model: ModelName,
    pub watch: WatchMode,
    pub poll_interval: Duration,
    pub limits: Limits,
    /// How long in-flight requests get to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// How many non-production versions stay loaded for version-pinned requests.
    pub pinned_cache: NonZeroUsize,
    /// How long a connection may go without sending a complete request head, idle keep-alive
    /// connections included.
    pub idle_timeout: Duration,
    /// Runtime worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Shadow scoring of candidates on live traffic, and where its evidence goes.
    pub shadow: ShadowConfig,
    /// The inference log, if it is on.
    pub log: Option<LogConfig>,
    /// How many recent instances the live PSI gauges cover; 0 turns them off.
    pub drift_window: u64,
}

/// The whole HTTP surface, without a socket (tests can drive it with `oneshot`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::status_page))
        .route("/static/limen.css", get(pages::stylesheet))
        .route("/openapi.json", get(pages::openapi))
        .route("/models/{name}/report", get(pages::model_page))
        .route(
            "/healthcheck",
            get(handlers::healthcheck).post(handlers::healthcheck),
        )
        .route("/ready", get(handlers::ready))
        .route("/predict", post(handlers::predict))
        .route("/explain", post(handlers::explain))
        .route("/version", get(handlers::version))
        .route("/metrics", get(handlers::metrics))
        .route("/models", get(handlers::models))
        .route("/models/{name}", get(handlers::model_detail))
        .route("/models/{name}/predict", post(handlers::model_predict))
        .route("/models/{name}/explain", post(handlers::model_explain))
        .route(
            "/models/{name}/versions/{version}/predict",
            post(handlers::version_predict),
        )
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2::version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2::version_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2::version_infer),
        )
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal(&"a request handler panicked").into_response()
        }))
        .with_state(state)
}

/// Around every request: cut it at `--request-timeout` (body upload included), and count it in
/// `limen_http_requests_total` and `limen_http_request_duration_seconds` by route template.
/// `Router::layer` runs this after routing, so the matched route is known.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    };
    let limit = state.limits.request_timeout;
    let response = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorKind::Timeout,
            format!(
                "the request did not complete within {}",
                humantime::format_duration(limit)
            ),
        )
        .into_response(),
    };
    state.metrics.request(
        route.as_ref().map_or("unmatched", |r| r.as_str()),
        method,
        response.status().as_str(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Binds, reports the bound address through `on_listening`, serves until SIGTERM or SIGINT, then
/// drains in-flight requests for at most `shutdown_timeout`.
pub async fn run(
    catalog: Catalog,
    cfg: ServeConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (is the port in use? set --addr)",
                cfg.addr
            )
        })?;
    let addr = listener.local_addr()?;

    let metrics = Arc::new(Metrics::new());
    let root = catalog.root().to_owned();
    let registry = Arc::new(Registry::new(
        catalog,
        RegistryConfig {
            pinned_capacity: cfg.pinned_cache,
            revalidate_after: cfg.poll_interval,
            shadow: cfg.shadow.rate > 0.0,
            drift_window: cfg.drift_window,
        },
        Arc::clone(&metrics),
    ));
    let changes = ChangeSource::new(&root, cfg.watch, cfg.poll_interval);
    let reloader = tokio::spawn(Arc::clone(&registry).run(changes));
    let shadow = Arc::new(Shadow::start(cfg.shadow.clone(), Arc::clone(&metrics)));
    let activity = Arc::new(activity::Activity::default());
    let sampler = tokio::spawn(activity::run(Arc::clone(&activity), Arc::clone(&registry)));
    let evidence = tokio::spawn(write_evidence(
        Arc::clone(&shadow),
        Arc::clone(&registry),
        cfg.poll_interval,
    ));

    let log = Arc::new(match cfg.log.clone() {
        Some(config) => InferenceLog::start(config, Arc::clone(&metrics)),
        None => InferenceLog::off(&metrics),
    });

    let app = router(AppState::new(
        registry,
        cfg.default_model.clone(),
        cfg.limits,
        metrics,
        Arc::clone(&shadow),
        Arc::clone(&log),
        activity,
    ));
    tracing::info!(
        %addr,
        store = %root.display(),
        model = %cfg.default_model,
        watch = ?cfg.watch,
        poll_interval = %humantime::format_duration(cfg.poll_interval),
        "listening"
    );
    on_listening(addr);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();

    let reason = tokio::select! {
        never = accept_loop(listener, app, &cfg, &graceful) => match never {},
        signal = shutdown_signal() => signal,
    };
    tracing::info!(
        signal = reason,
        "shutting down: no new connections; finishing requests in flight"
    );
    reloader.abort();
    match tokio::time::timeout(cfg.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("stopped"),
        Err(_) => tracing::warn!(
            deadline = %humantime::format_duration(cfg.shutdown_timeout),
            "drain deadline passed with requests still open; exiting"
        ),
    }
    evidence.abort();
    sampler.abort();
    // The last totals, so a graceful stop loses no evidence.
    let last = Arc::clone(&shadow);
    let _ = tokio::task::spawn_blocking(move || last.write_evidence()).await;
    // Every queued log line written and the files closed. Requests still open past the drain
    // deadline hold references; their lines are the only ones a stop may lose.
    match Arc::try_unwrap(log) {
        Ok(log) => {
            let _ = tokio::task::spawn_blocking(move || log.close(Duration::from_secs(5))).await;
        }
        Err(_) => {
            tracing::warn!("requests still hold the inference log; its last lines may be lost")
        }
    }
    Ok(())
}

/// Writes changed shadow evidence every `interval` (at most once per poll interval, as the
/// issue asks), off the async threads, and forgets candidates no longer in shadow.
async fn write_evidence(shadow: Arc<Shadow>, registry: Arc<Registry>, interval: Duration) {
    if !shadow.enabled() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (shadow, live) = (Arc::clone(&shadow), registry.shadow_keys());
        let _ = tokio::task::spawn_blocking(move || {
            shadow.write_evidence();
            shadow.retain(&live);
        })
        .await;
    }
}

/// Accepts connections and serves each with hyper's HTTP/1 server, watched by `graceful`.
///
/// Not `axum::serve`, for three settings it does not expose: a header read timeout (a client
/// that never finishes its request head — slowloris — or a keep-alive connection left idle is
/// closed after `--idle-timeout`), `TCP_NODELAY`, and how accept errors such as running out of
/// file descriptors are handled (a short pause, not a one-second stall).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    cfg: &ServeConfig,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
) -> std::convert::Infallible {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.idle_timeout)
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
async fn shutdown_signal() -> &'static str {
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

#[cfg(test)]
mod tests;
