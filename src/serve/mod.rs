//! `limen serve`: the HTTP service. Builds the router, runs it with the store reloader beside it,
//! and shuts down gracefully on SIGTERM/SIGINT within a drain deadline.

mod body;
mod error;
mod handlers;
mod v2;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

pub use error::ApiError;
pub use handlers::MODEL_VERSION_HEADER;

use crate::registry::{Registry, RegistryConfig};
use crate::store::{ModelName, Store};
use crate::telemetry::Metrics;
use crate::watch::{ChangeSource, WatchMode};

/// Per-request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Longest a request may take, body upload included.
    pub request_timeout: Duration,
}

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
}

/// What every handler can see.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub default_model: Arc<ModelName>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
}

/// The whole HTTP surface, without a socket (tests can drive it with `oneshot`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/healthcheck",
            get(handlers::healthcheck).post(handlers::healthcheck),
        )
        .route("/ready", get(handlers::ready))
        .route("/predict", post(handlers::predict))
        .route("/version", get(handlers::version))
        .route("/metrics", get(handlers::metrics))
        .route("/models", get(handlers::models))
        .route("/models/{name}", get(handlers::model_detail))
        .route("/models/{name}/predict", post(handlers::model_predict))
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
            StatusCode::REQUEST_TIMEOUT,
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
    store: Store,
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
    let registry = Arc::new(Registry::new(
        store.clone(),
        RegistryConfig {
            pinned_capacity: cfg.pinned_cache,
            revalidate_after: cfg.poll_interval,
        },
        Arc::clone(&metrics),
    ));
    let changes = ChangeSource::new(store.root(), cfg.watch, cfg.poll_interval);
    let reloader = tokio::spawn(Arc::clone(&registry).run(changes));

    let app = router(AppState {
        registry,
        default_model: Arc::new(cfg.default_model.clone()),
        limits: cfg.limits,
        metrics,
    });
    tracing::info!(
        %addr,
        store = %store.root().display(),
        model = %cfg.default_model,
        watch = ?cfg.watch,
        poll_interval = %humantime::format_duration(cfg.poll_interval),
        "listening"
    );
    on_listening(addr);

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(());
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop_rx.changed().await;
    });
    let mut server = tokio::spawn(async move { server.await });

    tokio::select! {
        result = &mut server => {
            reloader.abort();
            return result.context("the server task failed")?.context("the server stopped");
        }
        signal = shutdown_signal() => {
            tracing::info!(signal, "shutting down: no new connections; finishing requests in flight");
        }
    }
    let _ = stop_tx.send(());
    reloader.abort();
    match tokio::time::timeout(cfg.shutdown_timeout, server).await {
        Ok(result) => result
            .context("the server task failed")?
            .context("the server stopped")?,
        Err(_) => tracing::warn!(
            deadline = %humantime::format_duration(cfg.shutdown_timeout),
            "drain deadline passed with requests still open; exiting"
        ),
    }
    tracing::info!("stopped");
    Ok(())
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
