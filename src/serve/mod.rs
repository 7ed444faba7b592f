//! `limen serve`: the HTTP service. Builds the router, runs it with the store reloader beside it,
//! and shuts down gracefully on SIGTERM/SIGINT within a drain deadline.
//!
//! Inside, lowest first: `error` (the one failure → status table), `status` (the JSON of
//! `/models`), `activity` (recent rates for the status page) and `http` (the runtime and the
//! connection loop, shared with `benches/floor`); `state` (what handlers see, and the gate on
//! store reads); `body` (the raw-body extractor), `reply` (answer builders), `lookup` (URL →
//! model) and `track` (each route's deadline, panic catching and metrics); `handlers` (the
//! `/predict` family), `v2` (the Open Inference Protocol) and `pages` (status page, reports,
//! OpenAPI); this file (the route table and the server loop). Each imports only from the layers
//! before it (`tests/architecture.rs`).

mod activity;
pub mod auth;
mod body;
mod error;
mod handlers;
pub mod http;
mod lookup;
mod pages;
mod pipeline;
mod reply;
mod state;
mod status;
mod track;
mod v2;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::handler::Handler as _;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

pub use error::{ApiError, ErrorKind};
pub use reply::MODEL_VERSION_HEADER;
pub use state::{AppState, Limits, Parts};

use crate::budget::Budget;
use crate::catalog::Catalog;
use crate::inference_log::{InferenceLog, LogConfig};
use crate::registry::{Registry, RegistryConfig};
use crate::shadow::{Shadow, ShadowConfig};
use crate::store::ModelName;
use crate::telemetry::Metrics;
use crate::watch::{ChangeSource, WatchMode};
use auth::{Auth, Group};
use track::{RouteLayer, Track};

/// Checked settings of `limen serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    /// The model `/predict`, `/explain` and `/version` answer for.
    pub default_model: ModelName,
    /// The models served (`--model`); empty serves every model in the store.
    pub models: Vec<ModelName>,
    pub watch: WatchMode,
    pub poll_interval: Duration,
    /// How often to rewrite this server's heartbeat in the store; `None` writes none.
    pub heartbeat: Option<Duration>,
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
    /// Instances a feature's drift window holds before its live PSI is exported.
    pub drift_min_samples: u64,
    /// The memory budget in bytes, and where the number came from (for the start-up log).
    pub memory_budget: (usize, String),
    /// The token files of the route groups that ask for a bearer token.
    pub auth: Vec<(Group, std::path::PathBuf)>,
}

/// One route: its template, the group whose token it asks for (none: health, stylesheet and
/// OpenAPI document), and its handlers by method, each wrapped in the route's layer.
type RouteDef = (
    &'static str,
    Option<Group>,
    fn(RouteLayer) -> MethodRouter<AppState>,
);

/// Every route limen answers.
const ROUTES: &[RouteDef] = &[
    ("/", Some(Group::Metadata), |t| {
        get(pages::status_page.layer(t))
    }),
    ("/static/limen.css", None, |t| {
        get(pages::stylesheet.layer(t))
    }),
    ("/openapi.json", None, |t| get(pages::openapi.layer(t))),
    ("/models/{name}/report", Some(Group::Metadata), |t| {
        get(pages::model_page.layer(t))
    }),
    ("/healthcheck", None, |t| {
        get(handlers::healthcheck.layer(t.clone())).post(handlers::healthcheck.layer(t))
    }),
    ("/ready", None, |t| get(handlers::ready.layer(t))),
    ("/predict", Some(Group::Inference), |t| {
        post(handlers::predict.layer(t))
    }),
    ("/explain", Some(Group::Inference), |t| {
        post(handlers::explain.layer(t))
    }),
    ("/version", Some(Group::Metadata), |t| {
        get(handlers::version.layer(t))
    }),
    ("/metrics", Some(Group::Metrics), |t| {
        get(handlers::metrics.layer(t))
    }),
    ("/models", Some(Group::Metadata), |t| {
        get(handlers::models.layer(t))
    }),
    ("/models/{name}", Some(Group::Metadata), |t| {
        get(handlers::model_detail.layer(t))
    }),
    ("/models/{name}/predict", Some(Group::Inference), |t| {
        post(handlers::model_predict.layer(t))
    }),
    ("/models/{name}/explain", Some(Group::Inference), |t| {
        post(handlers::model_explain.layer(t))
    }),
    (
        "/models/{name}/versions/{version}/predict",
        Some(Group::Inference),
        |t| post(handlers::version_predict.layer(t)),
    ),
    ("/v2", Some(Group::Metadata), |t| {
        get(v2::server_metadata.layer(t))
    }),
    ("/v2/health/live", None, |t| get(v2::live.layer(t))),
    ("/v2/health/ready", None, |t| get(v2::ready.layer(t))),
    ("/v2/models/{name}", Some(Group::Metadata), |t| {
        get(v2::model_metadata.layer(t))
    }),
    ("/v2/models/{name}/ready", None, |t| {
        get(v2::model_ready.layer(t))
    }),
    ("/v2/models/{name}/infer", Some(Group::Inference), |t| {
        post(v2::infer.layer(t))
    }),
    (
        "/v2/models/{name}/versions/{version}",
        Some(Group::Metadata),
        |t| get(v2::version_metadata.layer(t)),
    ),
    ("/v2/models/{name}/versions/{version}/ready", None, |t| {
        get(v2::version_ready.layer(t))
    }),
    (
        "/v2/models/{name}/versions/{version}/infer",
        Some(Group::Inference),
        |t| post(v2::version_infer.layer(t)),
    ),
];

/// The whole HTTP surface, without a socket (tests can drive it with `oneshot`). Every route,
/// its 405 answer and the 404 fallback go through their route's layer (`track.rs`): deadline,
/// panics, request metrics.
pub fn router(state: AppState) -> Router {
    let track = Track::new(Arc::clone(&state.metrics), state.limits.request_timeout);
    let mut router = Router::new();
    for (path, group, methods) in ROUTES {
        let layer = track.route(path, state.auth.tokens(*group));
        let methods = methods(layer.clone()).fallback(handlers::method_not_allowed.layer(layer));
        router = router.route(path, methods);
    }
    router
        .fallback(handlers::not_found.layer(track.route(track::UNMATCHED, None)))
        .with_state(state)
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
    let budget = Budget::new(cfg.memory_budget.0);
    metrics.show_budget(&budget);
    let root = catalog.root().to_owned();
    let registry = Arc::new(Registry::new(
        catalog,
        RegistryConfig {
            pinned_capacity: cfg.pinned_cache,
            revalidate_after: cfg.poll_interval,
            shadow: cfg.shadow.rate > 0.0,
            drift_window: cfg.drift_window,
            drift_min_samples: cfg.drift_min_samples,
            budget: budget.clone(),
            only: (!cfg.models.is_empty()).then(|| cfg.models.iter().cloned().collect()),
        },
        Arc::clone(&metrics),
    ));
    let changes = ChangeSource::new(&root, cfg.watch, cfg.poll_interval);
    let reloader = tokio::spawn(Arc::clone(&registry).run(changes));
    let activator = tokio::spawn(Arc::clone(&registry).run_activations());
    // The queues get shares, so that a slow disk or a busy shadow worker can never take the
    // memory requests need: what they cannot hold they drop and count.
    let shadow = Arc::new(Shadow::start(
        cfg.shadow.clone(),
        Arc::clone(&metrics),
        budget.share(budget.total() / 8),
    ));
    let activity = Arc::new(activity::Activity::default());
    let sampler = tokio::spawn(activity::run(Arc::clone(&activity), Arc::clone(&registry)));
    let evidence = tokio::spawn(write_evidence(
        Arc::clone(&shadow),
        Arc::clone(&registry),
        cfg.poll_interval,
    ));

    let log = Arc::new(match cfg.log.clone() {
        Some(config) => InferenceLog::start(
            config,
            Arc::clone(&metrics),
            budget.share(budget.total() / 4),
        )?,
        None => InferenceLog::off(&metrics),
    });

    let auth = Auth::load(&cfg.auth)?;
    let token_reloader = tokio::spawn(reload_tokens(auth.clone(), cfg.poll_interval));
    let instance = cfg.shadow.instance.clone();
    let (stop_beating, stop) = tokio::sync::watch::channel(false);
    let heartbeat = cfg.heartbeat.map(|interval| {
        tokio::spawn(beat(
            Arc::clone(&registry),
            budget.clone(),
            instance.clone(),
            interval,
            cfg.poll_interval,
            stop,
        ))
    });
    let app = router(AppState::new(Parts {
        registry,
        default_model: cfg.default_model.clone(),
        limits: cfg.limits,
        metrics,
        shadow: Arc::clone(&shadow),
        log: Arc::clone(&log),
        activity,
        budget: budget.clone(),
        auth,
    }));
    tracing::info!(
        %addr,
        store = %root.display(),
        default_model = %cfg.default_model,
        models = %if cfg.models.is_empty() {
            "every model in the store".to_owned()
        } else {
            cfg.models.iter().map(ModelName::as_str).collect::<Vec<_>>().join(",")
        },
        watch = ?cfg.watch,
        poll_interval = %humantime::format_duration(cfg.poll_interval),
        memory_budget_mib = cfg.memory_budget.0 >> 20,
        memory_budget_from = %cfg.memory_budget.1,
        max_concurrent_requests = cfg.limits.max_concurrent_requests,
        "listening"
    );
    on_listening(addr);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();

    let reason = tokio::select! {
        never = http::accept_loop(listener, app, cfg.idle_timeout, &graceful) => match never {},
        signal = http::shutdown_signal() => signal,
    };
    tracing::info!(
        signal = reason,
        "shutting down: no new connections; finishing requests in flight"
    );
    reloader.abort();
    activator.abort();
    match tokio::time::timeout(cfg.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("stopped"),
        Err(_) => tracing::warn!(
            deadline = %humantime::format_duration(cfg.shutdown_timeout),
            "drain deadline passed with requests still open; exiting"
        ),
    }
    evidence.abort();
    sampler.abort();
    token_reloader.abort();
    if let Some(task) = heartbeat {
        // Not an abort: a write already running in its blocking thread would outlive it and
        // put the heartbeat back after the removal below. The task finishes that write first.
        // Bounded: a store that hangs does not hold the exit up.
        let _ = stop_beating.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        // Gone from the fleet at once, rather than after 3 intervals.
        let (root, name) = (root.clone(), instance.clone());
        match tokio::task::spawn_blocking(move || crate::fleet::remove(&root, &name)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "cannot remove this server's heartbeat")
            }
            Err(e) => tracing::warn!(error = %e, "removing the heartbeat panicked"),
        }
    }
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

/// Heartbeat bytes a server reads for its status page (10 replicas of 1,000 models take
/// 1.8 MB); a bigger fleet is shown in part (`limen models fleet` reads it whole).
const FLEET_READ_BYTES: usize = 4 << 20;

/// Rewrites this server's heartbeat every `interval`, then reads the fleet's for the status page
/// (within [`FLEET_READ_BYTES`], three times that reserved from `budget` first, else skipped
/// this round), off the async threads, until `stop` says so (after the write in progress). A
/// write failure is logged once (and once more when it clears), not every interval.
async fn beat(
    registry: Arc<Registry>,
    budget: Budget,
    instance: String,
    interval: Duration,
    poll_interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let root = registry.root().to_owned();
    let started_at_ms = crate::fleet::now_ms();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        // Every interval, and at once when a switch's version is loaded or switched to (a
        // promoter is waiting to hear it).
        tokio::select! {
            _ = ticker.tick() => {}
            () = registry.heartbeat_due() => {}
            _ = stop.changed() => return,
        }
        let heartbeat = heartbeat(&registry, &instance, started_at_ms, interval, poll_interval);
        let (root, reader, budget) = (root.clone(), Arc::clone(&registry), budget.clone());
        let written = tokio::task::spawn_blocking(move || {
            let written = crate::fleet::write(&root, &heartbeat);
            if let Ok(_held) = budget.try_reserve(3 * FLEET_READ_BYTES) {
                let now = crate::fleet::now_ms();
                if let Ok(fleet) = crate::fleet::read_within(&root, now, FLEET_READ_BYTES) {
                    reader.set_fleet(crate::fleet::FleetSummary::of(&fleet));
                }
            }
            written
        })
        .await;
        match written {
            Ok(Ok(())) if failing => {
                failing = false;
                tracing::info!("heartbeat written again");
            }
            Ok(Ok(())) => {}
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %crate::telemetry::error_chain(&e), "cannot write this server's heartbeat (is the store read-only? --heartbeat-interval 0s turns heartbeats off); retrying every interval");
            }
            Ok(Err(_)) => {}
            Err(e) => tracing::warn!(error = %e, "writing the heartbeat panicked"),
        }
    }
}

/// What this server serves now, as its heartbeat says it. Never touches a file.
fn heartbeat(
    registry: &Registry,
    instance: &str,
    started_at_ms: u64,
    interval: Duration,
    poll_interval: Duration,
) -> crate::fleet::Heartbeat {
    let ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let counters = registry.counters();
    let retired = registry.retired();
    let models = registry
        .statuses()
        .into_iter()
        .map(|s| {
            let live = counters.get(&s.name).cloned().unwrap_or_default();
            let served = crate::fleet::Served {
                production: s.production.map(|v| v.get()),
                serving: s.loaded.map(|v| v.get()),
                candidate: s.shadow.map(|v| v.get()),
                load_error: s.last_error,
                candidate_error: s.candidate_error,
                switch_to: s.switch_to.map(|v| v.get()),
                switch_ready: s.switch_ready,
                switch_error: s.switch_error,
                switch_at_ms: s.switch_at_ms,
                serving_since_ms: live.serving_since_ms,
                predictions: live.predictions,
                out_of_range: live.out_of_range,
                errors: live.errors,
                classes: live.classes,
                psi: registry
                    .get(&s.name)
                    .map(|m| m.psi().into_iter().collect())
                    .unwrap_or_default(),
                retired: retired.get(&s.name).map(|(v, c)| crate::fleet::Retired {
                    version: v.get(),
                    predictions: c.predictions,
                    classes: c.classes.clone(),
                }),
            };
            (s.name, served)
        })
        .collect();
    crate::fleet::Heartbeat {
        instance: instance.to_owned(),
        limen_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at_ms,
        written_at_ms: crate::fleet::now_ms().max(started_at_ms),
        interval_ms: interval.as_millis() as u64,
        poll_interval_ms: poll_interval.as_millis() as u64,
        last_scan_ms: registry.store_status().last_scan_ok_at.map(ms),
        models,
    }
}

/// Re-reads the token files every `interval` (a rotated Kubernetes Secret is picked up without
/// a restart), off the async threads.
async fn reload_tokens(auth: Auth, interval: Duration) {
    if !auth.enabled() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let auth = auth.clone();
        let _ = tokio::task::spawn_blocking(move || auth.reload()).await;
    }
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

#[cfg(test)]
mod tests;
