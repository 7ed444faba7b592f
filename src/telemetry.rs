//! Telemetry: `tracing` logs to stderr (human-readable or JSON lines for CloudWatch), and the
//! Prometheus metrics the server exposes on `/metrics`.
//!
//! Stdout belongs to command output (a pipeline reads the version id from it), so logs never go
//! there.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts,
};
use tracing_subscriber::EnvFilter;

use crate::budget::Budget;

/// How logs are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line, for CloudWatch and other collectors.
    Json,
}

/// Installs the global subscriber. `filter` uses tracing's `EnvFilter` syntax; an invalid one
/// falls back to `info` with a warning rather than failing the command.
pub fn init(format: LogFormat, filter: &str) {
    let (env_filter, bad_filter) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if installed.is_ok() {
        if let Some(e) = bad_filter {
            tracing::warn!("invalid log filter {filter:?} ({e}); using \"info\"");
        }
    }
}

/// `error: cause: cause`, for errors shown to operators in one line (logs, `/models`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// limen's Prometheus metrics, all prefixed `limen_`, rendered in the text exposition format.
///
/// Hot-path handles (per-model prediction and drift counters) are resolved once when a model is
/// loaded ([`Metrics::model_handles`]), so a prediction costs an atomic add, not a label lookup.
pub struct Metrics {
    registry: prometheus::Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    predictions: IntCounterVec,
    out_of_range: IntCounterVec,
    unseen: IntCounterVec,
    loads: IntCounterVec,
    loaded: IntGaugeVec,
    model_error: IntGaugeVec,
    psi: GaugeVec,
    shadow_samples: IntCounterVec,
    shadow_disagreements: IntCounterVec,
    shadow_abs_diff: HistogramVec,
    shadow_dropped: IntCounterVec,
    log_lines: IntCounter,
    log_dropped: IntCounterVec,
    budget_total: IntGauge,
    budget_reserved: IntGauge,
    /// The server's budget, shown on `/metrics` (set once, by `serve`).
    budget: OnceLock<Budget>,
    /// The (model, version) pairs whose series something holds.
    live: LiveSeries,
    scan_age: Gauge,
    store_up: IntGauge,
    swap_lag: Histogram,
}

/// Method labels of `limen_http_requests_total`: the common methods, then `other` for the rest.
const HTTP_METHODS: [&str; 8] = [
    "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "other",
];

/// The index [`RouteMetrics::record`] takes for an HTTP method (`Method::as_str`): taken when a
/// request arrives, so that counting it is a table lookup.
pub fn method_index(method: &str) -> usize {
    let other = HTTP_METHODS.len() - 1;
    HTTP_METHODS[..other]
        .iter()
        .position(|m| *m == method)
        .unwrap_or(other)
}

/// The statuses limen answers with, whose series [`RouteMetrics`] keeps resolved.
const COMMON_STATUSES: [u16; 14] = [
    200, 400, 404, 405, 406, 408, 411, 413, 415, 422, 429, 500, 503, 504,
];

/// `limen_http_requests_total` and `limen_http_request_duration_seconds` of one route template.
/// Each series is resolved on its route's first request with that method and status (so
/// `/metrics` lists only what happened, as with plain label lookups) and kept: counting a request
/// is then an atomic load, an add and a histogram observation, with no label hashing.
pub struct RouteMetrics {
    route: String,
    requests: IntCounterVec,
    latency_vec: HistogramVec,
    latency: OnceLock<Histogram>,
    /// By method index × position in [`COMMON_STATUSES`].
    counts: Box<[OnceLock<IntCounter>]>,
}

impl RouteMetrics {
    /// Records one answered request; `method` is from [`method_index`].
    pub fn record(&self, method: usize, status: u16, seconds: f64) {
        let method = method.min(HTTP_METHODS.len() - 1);
        let series = || {
            self.requests.with_label_values(&[
                &self.route,
                HTTP_METHODS[method],
                &status.to_string(),
            ])
        };
        match COMMON_STATUSES.iter().position(|s| *s == status) {
            Some(at) => self.counts[method * COMMON_STATUSES.len() + at]
                .get_or_init(series)
                .inc(),
            None => series().inc(),
        }
        self.latency
            .get_or_init(|| self.latency_vec.with_label_values(&[&self.route]))
            .observe(seconds);
    }
}

/// Counters of one loaded model version. The series labelled by its version end when the last
/// holder of this version's counters is dropped (see [`VersionSeries`]): a model promoted daily
/// does not grow `/metrics` by a series a day.
#[derive(Debug, Clone)]
pub struct ModelMetrics {
    /// Instances scored (a batch of N counts N).
    pub predictions: IntCounter,
    /// Per feature, in model order: inputs outside the training range.
    pub out_of_range: Vec<IntCounter>,
    /// Per feature, in model order: for a categorical one, values it never saw in training.
    pub unseen: Vec<Option<IntCounter>>,
    /// Per feature, in model order: the live PSI against the training reference.
    pub psi: Vec<PsiGauge>,
    series: Arc<VersionSeries>,
}

/// One feature's `limen_feature_psi` series, exported only while there is an estimate.
#[derive(Debug, Clone)]
pub struct PsiGauge {
    vec: GaugeVec,
    labels: [String; 2],
}

impl PsiGauge {
    /// The estimate, or none yet: then the series is not exported at all (no NaN for an alert
    /// rule to trip on or a dashboard to draw).
    pub fn set(&self, psi: Option<f64>) {
        let labels = [self.labels[0].as_str(), self.labels[1].as_str()];
        match psi {
            Some(v) => self.vec.with_label_values(&labels).set(v),
            None => {
                let _ = self.vec.remove_label_values(&labels);
            }
        }
    }
}

/// The shadow series of a version scored as a candidate.
#[derive(Debug, Clone)]
pub struct ShadowHandles {
    pub samples: IntCounter,
    pub disagreements: IntCounter,
    pub abs_diff: Histogram,
}

impl ModelMetrics {
    /// This version's shadow series (made on first use, ended with its other series).
    pub fn shadow(&self) -> &ShadowHandles {
        self.series.shadow.get_or_init(|| {
            let labels = [self.series.model.as_str(), self.series.version.as_str()];
            let vecs = &self.series.vecs;
            ShadowHandles {
                samples: vecs.shadow_samples.with_label_values(&labels),
                disagreements: vecs.shadow_disagreements.with_label_values(&labels),
                abs_diff: vecs.shadow_abs_diff.with_label_values(&labels),
            }
        })
    }
}

/// The metric families that have a series per (model, version).
#[derive(Clone)]
struct VersionVecs {
    predictions: IntCounterVec,
    shadow_samples: IntCounterVec,
    shadow_disagreements: IntCounterVec,
    shadow_abs_diff: HistogramVec,
}

/// Who holds each (model, version)'s series: one [`VersionSeries`] per pair, shared.
type LiveSeries = Arc<Mutex<HashMap<(String, String), Weak<VersionSeries>>>>;

/// The series of one (model, version), removed from `/metrics` when the last holder drops it.
pub struct VersionSeries {
    model: String,
    version: String,
    vecs: VersionVecs,
    shadow: OnceLock<ShadowHandles>,
    live: LiveSeries,
}

impl std::fmt::Debug for VersionSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VersionSeries({}/{})", self.model, self.version)
    }
}

impl Drop for VersionSeries {
    fn drop(&mut self) {
        let key = (self.model.clone(), self.version.clone());
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        // A holder that came for the same pair after this one's last went keeps the series.
        if live.get(&key).and_then(Weak::upgrade).is_some() {
            return;
        }
        live.remove(&key);
        let labels = [self.model.as_str(), self.version.as_str()];
        let vecs = &self.vecs;
        let _ = vecs.predictions.remove_label_values(&labels);
        let _ = vecs.shadow_samples.remove_label_values(&labels);
        let _ = vecs.shadow_disagreements.remove_label_values(&labels);
        let _ = vecs.shadow_abs_diff.remove_label_values(&labels);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = prometheus::Registry::new();
        fn register<C: prometheus::core::Collector + Clone + 'static>(
            registry: &prometheus::Registry,
            collector: C,
        ) -> C {
            // Names are fixed and distinct, so registration cannot collide.
            let _ = registry.register(Box::new(collector.clone()));
            collector
        }
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace("limen");
        let hopts = |name: &str, help: &str, buckets: Vec<f64>| {
            HistogramOpts::new(name, help)
                .namespace("limen")
                .buckets(buckets)
        };
        // The definitions are constants; one that fails is a bug caught by the unit tests.
        fn fixed<T>(r: prometheus::Result<T>) -> T {
            r.unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
        }
        Self {
            requests: register(&registry, fixed(IntCounterVec::new(
                opts("http_requests_total", "HTTP requests answered, by route template, method and status."),
                &["route", "method", "status"],
            ))),
            latency: register(&registry, fixed(HistogramVec::new(
                hopts(
                    "http_request_duration_seconds",
                    "Time from request to response, by route template.",
                    vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0],
                ),
                &["route"],
            ))),
            predictions: register(&registry, fixed(IntCounterVec::new(
                opts("predictions_total", "Instances scored, by model and version."),
                &["model", "version"],
            ))),
            out_of_range: register(&registry, fixed(IntCounterVec::new(
                opts(
                    "input_out_of_training_range_total",
                    "Input values outside the feature's training [min, max], by model and feature: early data drift.",
                ),
                &["model", "feature"],
            ))),
            unseen: register(&registry, fixed(IntCounterVec::new(
                opts(
                    "unseen_category_total",
                    "Values of a categorical feature the model never saw in training (scored as all indicators 0), by model and feature.",
                ),
                &["model", "feature"],
            ))),
            loads: register(&registry, fixed(IntCounterVec::new(
                opts("model_loads_total", "Model version loads (verify + warm-up), by model and result (ok, failed)."),
                &["model", "result"],
            ))),
            loaded: register(&registry, fixed(IntGaugeVec::new(
                opts("model_loaded_info", "1 for the production version each model is serving."),
                &["model", "version"],
            ))),
            model_error: register(&registry, fixed(IntGaugeVec::new(
                opts(
                    "model_error",
                    "1 while a model's production pointer or version cannot be served (GET /models says why), else 0.",
                ),
                &["model"],
            ))),
            psi: register(&registry, fixed(GaugeVec::new(
                opts(
                    "feature_psi",
                    "Population stability index of each feature's recent inputs (the last --drift-window instances served) against its training distribution, by model and feature.",
                ),
                &["model", "feature"],
            ))),
            shadow_samples: register(&registry, fixed(IntCounterVec::new(
                opts("shadow_samples_total", "Instances scored by both production and the candidate in shadow, by model and candidate version."),
                &["model", "version"],
            ))),
            shadow_disagreements: register(&registry, fixed(IntCounterVec::new(
                opts("shadow_disagreements_total", "Shadow samples whose candidate label differs from production's, by model and candidate version."),
                &["model", "version"],
            ))),
            shadow_abs_diff: register(&registry, fixed(HistogramVec::new(
                hopts(
                    "shadow_abs_diff",
                    "|Δp| of the top class (binary: the positive class) between production and the candidate, by model and candidate version.",
                    vec![0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0],
                ),
                &["model", "version"],
            ))),
            shadow_dropped: register(&registry, fixed(IntCounterVec::new(
                opts(
                    "shadow_dropped_total",
                    "Shadow samples dropped (the client was answered as usual), by reason: queue_full, over_budget (the memory budget could not hold them).",
                ),
                &["reason"],
            ))),
            log_lines: register(&registry, fixed(IntCounter::with_opts(opts(
                "inference_log_lines_total",
                "Lines written to the inference log (one per scored instance, one per failed request).",
            )))),
            log_dropped: register(&registry, fixed(IntCounterVec::new(
                opts(
                    "inference_log_dropped_total",
                    "Inference log lines not written (answers are never slowed), by reason: queue_full, over_budget, write_failed, day_cap.",
                ),
                &["reason"],
            ))),
            budget_total: register(&registry, fixed(IntGauge::with_opts(opts(
                "memory_budget_bytes",
                "The memory budget (--memory-budget) requests, queues and pages reserve from.",
            )))),
            budget_reserved: register(&registry, fixed(IntGauge::with_opts(opts(
                "memory_reserved_bytes",
                "Bytes of the memory budget reserved now (requests in flight, queued log lines and shadow samples, pages).",
            )))),
            scan_age: register(&registry, fixed(Gauge::with_opts(opts(
                "store_last_scan_age_seconds",
                "Seconds since the store was last scanned successfully (-1: never).",
            )))),
            store_up: register(&registry, fixed(IntGauge::with_opts(opts(
                "store_up",
                "1 if the last store scan could list the store, else 0.",
            )))),
            swap_lag: register(&registry, fixed(Histogram::with_opts(hopts(
                "model_swap_lag_seconds",
                "Time from a production pointer's change (its mtime) to the new version serving.",
                vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0],
            )))),
            budget: OnceLock::new(),
            live: LiveSeries::default(),
            registry,
        }
    }

    /// The request metrics of one route template, for [`RouteMetrics::record`].
    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_owned(),
            requests: self.requests.clone(),
            latency_vec: self.latency.clone(),
            latency: OnceLock::new(),
            counts: (0..HTTP_METHODS.len() * COMMON_STATUSES.len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    /// Counters for `model` at `version`, resolved once.
    /// `categorical`: per feature, whether it takes a category (empty: none does).
    pub fn model_handles(
        &self,
        model: &str,
        version: &str,
        features: &[String],
        categorical: &[bool],
    ) -> ModelMetrics {
        let series = {
            let key = (model.to_owned(), version.to_owned());
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            match live.get(&key).and_then(Weak::upgrade) {
                Some(series) => series,
                None => {
                    let series = Arc::new(VersionSeries {
                        model: model.to_owned(),
                        version: version.to_owned(),
                        vecs: VersionVecs {
                            predictions: self.predictions.clone(),
                            shadow_samples: self.shadow_samples.clone(),
                            shadow_disagreements: self.shadow_disagreements.clone(),
                            shadow_abs_diff: self.shadow_abs_diff.clone(),
                        },
                        shadow: OnceLock::new(),
                        live: Arc::clone(&self.live),
                    });
                    live.insert(key, Arc::downgrade(&series));
                    series
                }
            }
        };
        ModelMetrics {
            series,
            predictions: self.predictions.with_label_values(&[model, version]),
            out_of_range: features
                .iter()
                .map(|f| self.out_of_range.with_label_values(&[model, f]))
                .collect(),
            unseen: features
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    categorical
                        .get(i)
                        .copied()
                        .unwrap_or(false)
                        .then(|| self.unseen.with_label_values(&[model, f]))
                })
                .collect(),
            psi: features
                .iter()
                .map(|f| PsiGauge {
                    vec: self.psi.clone(),
                    labels: [model.to_owned(), f.clone()],
                })
                .collect(),
        }
    }

    pub fn load(&self, model: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.loads.with_label_values(&[model, result]).inc();
    }

    /// `model` now serves `version` instead of `previous`.
    pub fn swapped(
        &self,
        model: &str,
        version: &str,
        previous: Option<&str>,
        lag_seconds: Option<f64>,
    ) {
        if let Some(previous) = previous {
            let _ = self.loaded.remove_label_values(&[model, previous]);
        }
        self.loaded.with_label_values(&[model, version]).set(1);
        if let Some(lag) = lag_seconds {
            self.swap_lag.observe(lag);
        }
    }

    /// `model` (at `version`) is no longer served.
    pub fn removed(&self, model: &str, version: &str) {
        let _ = self.loaded.remove_label_values(&[model, version]);
    }

    /// Shows `budget` on `/metrics` (`limen_memory_budget_bytes`, `limen_memory_reserved_bytes`).
    pub fn show_budget(&self, budget: &Budget) {
        self.budget_total
            .set(i64::try_from(budget.total()).unwrap_or(i64::MAX));
        let _ = self.budget.set(budget.clone());
    }

    /// `limen_shadow_dropped_total` for `reason`.
    pub fn shadow_dropped(&self, reason: &str) -> IntCounter {
        self.shadow_dropped.with_label_values(&[reason])
    }

    pub fn inference_log_lines(&self) -> IntCounter {
        self.log_lines.clone()
    }

    /// `limen_inference_log_dropped_total` for `reason`.
    pub fn inference_log_dropped(&self, reason: &str) -> IntCounter {
        self.log_dropped.with_label_values(&[reason])
    }

    /// Whether `model` has a problem (see `/models`); `None` when it left the store.
    pub fn model_error(&self, model: &str, failing: Option<bool>) {
        match failing {
            Some(failing) => self
                .model_error
                .with_label_values(&[model])
                .set(i64::from(failing)),
            None => {
                let _ = self.model_error.remove_label_values(&[model]);
            }
        }
    }

    /// The text exposition of every metric, with the store gauges as of now.
    pub fn render(&self, scan_age_seconds: Option<f64>, store_up: bool) -> String {
        self.scan_age.set(scan_age_seconds.unwrap_or(-1.0));
        self.store_up.set(i64::from(store_up));
        // Before gathering, so the memory that gathering takes shows next time, not now.
        self.budget_reserved
            .set(i64::try_from(self.budget.get().map_or(0, |b| b.reserved())).unwrap_or(i64::MAX));
        let mut out = String::new();
        if let Err(e) =
            prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)
        {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_versions_series_live_while_anything_holds_it() {
        let metrics = Metrics::new();
        let features = ["petal_width".to_owned()];
        let a = metrics.model_handles("iris", "7", &features, &[]);
        let b = metrics.model_handles("iris", "7", &features, &[]);
        a.predictions.inc_by(2);
        a.shadow().samples.inc();
        let shown = |m: &Metrics| {
            let text = m.render(None, true);
            (
                text.contains("limen_predictions_total{model=\"iris\",version=\"7\"} 2"),
                text.contains("limen_shadow_samples_total{model=\"iris\",version=\"7\"} 1"),
            )
        };
        assert_eq!(shown(&metrics), (true, true));
        drop(a);
        assert_eq!(shown(&metrics), (true, true), "b still holds them");
        drop(b);
        assert_eq!(shown(&metrics), (false, false));
        // Loaded again: the series start again.
        let c = metrics.model_handles("iris", "7", &features, &[]);
        c.predictions.inc();
        assert!(metrics
            .render(None, true)
            .contains("limen_predictions_total{model=\"iris\",version=\"7\"} 1"));
    }

    #[test]
    fn methods_have_their_label() {
        for (method, label) in [("GET", "GET"), ("POST", "POST"), ("TRACE", "other")] {
            assert_eq!(HTTP_METHODS[method_index(method)], label);
        }
    }

    #[test]
    fn metrics_render_in_the_text_format_with_their_labels() {
        let m = Metrics::new();
        let route = m.route("/predict");
        route.record(1, 200, 0.001);
        route.record(1, 200, 0.002);
        route.record(0, 405, 0.001);
        route.record(1, 418, 0.001);
        let handles = m.model_handles("iris", "7", &["petal_width".to_owned()], &[]);
        handles.predictions.inc_by(3);
        handles.out_of_range[0].inc();
        m.load("iris", true);
        m.swapped("iris", "7", None, Some(0.2));
        m.swapped("iris", "8", Some("7"), None);
        let text = m.render(Some(0.5), true);
        for line in [
            r#"limen_http_requests_total{method="POST",route="/predict",status="200"} 2"#,
            r#"limen_http_requests_total{method="GET",route="/predict",status="405"} 1"#,
            r#"limen_http_requests_total{method="POST",route="/predict",status="418"} 1"#,
            r#"limen_http_request_duration_seconds_count{route="/predict"} 4"#,
            r#"limen_predictions_total{model="iris",version="7"} 3"#,
            r#"limen_input_out_of_training_range_total{feature="petal_width",model="iris"} 1"#,
            r#"limen_model_loads_total{model="iris",result="ok"} 1"#,
            r#"limen_model_loaded_info{model="iris",version="8"} 1"#,
            "limen_store_last_scan_age_seconds 0.5",
            "limen_store_up 1",
            "limen_model_swap_lag_seconds_count 1",
            r#"limen_http_request_duration_seconds_bucket{route="/predict",le="0.001"} 3"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains(r#"limen_model_loaded_info{model="iris",version="7"}"#));
    }
}
