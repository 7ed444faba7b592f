//! The HTTP contract in process: the router driven with `oneshot`, no socket, over a real
//! temporary store. Statuses, error kinds, headers and JSON shapes of every route family; the
//! black-box suites in `tests/` cover what needs a real process and real connections.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::Router;
use tower::ServiceExt as _;

use super::{router, AppState, Limits, Parts};
use crate::budget::Budget;
use crate::catalog::{Catalog, Move};
use crate::inference_log::InferenceLog;
use crate::model::tests::binary_artifact;
use crate::registry::{Registry, RegistryConfig};
use crate::shadow::{Shadow, ShadowConfig};
use crate::store::ModelName;
use crate::telemetry::Metrics;

/// The router over `catalog`, after one scan, with a 4 KiB body limit and no memory limit.
fn app_over(catalog: Catalog) -> Router {
    app_with(catalog, Limits::with_max_body(4096), Budget::unlimited())
}

/// The router over `catalog` with `limits` and `budget`.
fn app_with(catalog: Catalog, limits: Limits, budget: Budget) -> Router {
    app_configured(catalog, limits, budget, RegistryConfig::default())
}

/// The router over `catalog` with `limits`, `budget` and the registry's `config`.
fn app_configured(
    catalog: Catalog,
    limits: Limits,
    budget: Budget,
    config: RegistryConfig,
) -> Router {
    let metrics = Arc::new(Metrics::new());
    let registry = Arc::new(Registry::new(catalog, config, Arc::clone(&metrics)));
    registry.scan();
    let shadow = Shadow::start(
        ShadowConfig {
            rate: 0.0,
            evidence: None,
            instance: "test".to_owned(),
        },
        Arc::clone(&metrics),
        budget.clone(),
    );
    router(AppState::new(Parts {
        registry,
        default_model: "iris".parse().unwrap(),
        limits,
        metrics: Arc::clone(&metrics),
        shadow: Arc::new(shadow),
        log: Arc::new(InferenceLog::off(&metrics)),
        activity: Arc::default(),
        budget,
        auth: super::auth::Auth::none(),
    }))
}

/// A router over an empty, absent store.
fn empty_app() -> Router {
    let dir = std::env::temp_dir().join("limen-router-tests-nonexistent");
    app_over(Catalog::open(dir))
}

/// A store with `iris` (scikit-learn's petal-width weights) promoted to production; the
/// version id is returned with it.
fn served_store() -> (tempfile::TempDir, Router, u64) {
    let (dir, catalog, version) = served_catalog();
    (dir, app_over(catalog), version)
}

/// [`served_store`]'s store, without a router yet.
fn served_catalog() -> (tempfile::TempDir, Catalog, u64) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(dir.path());
    let name: ModelName = "iris".parse().unwrap();
    let version = catalog
        .publish_candidate(&name, |v| {
            let mut a = binary_artifact();
            a.version = v.get();
            a.to_json_bytes()
        })
        .unwrap();
    catalog
        .lock(&name)
        .unwrap()
        .move_production(Move::Promote, version, serde_json::Value::Null)
        .unwrap();
    (dir, catalog, version.get())
}

struct Answer {
    status: StatusCode,
    content_type: String,
    version_header: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: &str) -> Answer {
    call_with(app, method, uri, &[], body).await
}

/// [`call`] with extra request headers.
async fn call_with(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        // What `curl -d` sends: the server must not care.
        .header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(body.to_owned())).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (status, content_type, version_header) = (
        response.status(),
        header("content-type").unwrap_or_default(),
        header("x-model-version"),
    );
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        content_type,
        version_header,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

#[tokio::test]
async fn the_reference_request_gets_the_reference_answer_and_its_version() {
    let (_dir, app, version) = served_store();
    let answer = call(&app, "POST", "/predict", r#"{"petal_width": "2.1"}"#).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.content_type, "application/json");
    assert_eq!(answer.version_header, Some(version.to_string()));
    let json = answer.json();
    assert_eq!(json["result"], 0.8704417670566003);
    assert_eq!(json["label"], "virginica");
    assert_eq!(json["version"], version.to_string());
    let same = call(
        &app,
        "POST",
        "/models/iris/predict",
        r#"{"petal_width": 2.1}"#,
    )
    .await;
    assert_eq!(same.json(), json);
    let pinned = format!("/models/iris/versions/{version}/predict");
    assert_eq!(
        call(&app, "POST", &pinned, r#"{"petal_width": 2.1}"#)
            .await
            .json(),
        json
    );
}

#[tokio::test]
async fn every_failure_has_its_status_and_kind_from_the_one_table() {
    let (_dir, app, _) = served_store();
    let cases = [
        ("POST", "/predict", "nope", 400, "malformed"),
        ("POST", "/predict", "", 400, "malformed"),
        ("POST", "/predict", "{}", 422, "missing_feature"),
        (
            "POST",
            "/predict",
            r#"{"petal_width": "abc"}"#,
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/predict",
            r#"{"petal_width": 1e999}"#,
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/predict",
            r#"{"instances": []}"#,
            422,
            "empty_batch",
        ),
        ("POST", "/predict", &"x".repeat(5000), 413, "body_too_large"),
        ("GET", "/predict", "", 405, "method_not_allowed"),
        ("POST", "/models/nosuch/predict", "{}", 404, "unknown_model"),
        ("POST", "/models/..%2Fx/predict", "{}", 400, "invalid_path"),
        (
            "POST",
            "/models/iris/versions/0/predict",
            "{}",
            400,
            "invalid_path",
        ),
        (
            "POST",
            "/models/iris/versions/99/predict",
            "{}",
            404,
            "unknown_version",
        ),
        ("GET", "/models/nosuch", "", 404, "unknown_model"),
        ("GET", "/nowhere", "", 404, "no_route"),
        ("POST", "/v2/models/iris/infer", "nope", 400, "malformed"),
        (
            "POST",
            "/v2/models/iris/infer",
            r#"{"inputs": []}"#,
            422,
            "missing_feature",
        ),
        (
            "POST",
            "/v2/models/nosuch/infer",
            "{}",
            404,
            "unknown_model",
        ),
        (
            "GET",
            "/v2/models/iris/versions/99",
            "",
            404,
            "unknown_version",
        ),
    ];
    for (method, uri, body, status, kind) in cases {
        let answer = call(&app, method, uri, body).await;
        assert_eq!(
            answer.status.as_u16(),
            status,
            "{method} {uri}: {}",
            answer.text
        );
        assert_eq!(answer.content_type, "application/json", "{method} {uri}");
        let json = answer.json();
        assert_eq!(json["kind"], kind, "{method} {uri}: {}", answer.text);
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{}",
            answer.text
        );
    }
}

#[tokio::test]
async fn a_binary_header_length_that_is_not_a_byte_count_is_refused_after_the_model_is_found() {
    let (_dir, app, _) = served_store();
    let body =
        r#"{"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP64", "data": [2.1]}]}"#;
    for (value, status, kind) in [
        ("many", StatusCode::BAD_REQUEST, "invalid_header"),
        ("-3", StatusCode::BAD_REQUEST, "invalid_header"),
        (" 9999 ", StatusCode::BAD_REQUEST, "malformed"),
    ] {
        let header = [("Inference-Header-Content-Length", value)];
        let answer = call_with(&app, "POST", "/v2/models/iris/infer", &header, body).await;
        assert_eq!(answer.status, status, "{value:?}: {}", answer.text);
        assert_eq!(answer.json()["kind"], kind, "{value:?}: {}", answer.text);
    }
    let header = [("Inference-Header-Content-Length", "many")];
    let unknown = call_with(&app, "POST", "/v2/models/nope/infer", &header, body).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    let sent = body.len().to_string();
    let header = [("Inference-Header-Content-Length", sent.as_str())];
    let ok = call_with(&app, "POST", "/v2/models/iris/infer", &header, body).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}

#[tokio::test]
async fn error_messages_name_things_as_the_user_wrote_them() {
    let (_dir, app, _) = served_store();
    let unknown = call(&app, "POST", "/models/nosuch/predict", "{}")
        .await
        .json();
    let message = unknown["error"].as_str().unwrap();
    assert!(
        message.contains("\"nosuch\"") && !message.contains("ModelName"),
        "{message}"
    );
    let no_route = call(&app, "GET", "/nowhere", "").await.json();
    let hint = no_route["error"].as_str().unwrap();
    for route in ["/predict", "/models", "/healthcheck", "/metrics", "/v2"] {
        assert!(hint.contains(route), "the 404 hint lacks {route}: {hint}");
    }
}

#[tokio::test]
async fn models_and_detail_describe_what_is_served() {
    let (_dir, app, version) = served_store();
    let models = call(&app, "GET", "/models", "").await;
    assert_eq!(models.status, StatusCode::OK);
    let models = models.json();
    assert_eq!(models["default_model"], "iris");
    assert!(models["store"]["last_scan_ok_at"].is_string());
    assert_eq!(models["store"]["error"], serde_json::Value::Null);
    let iris = &models["models"][0];
    assert_eq!(iris["name"], "iris");
    assert_eq!(iris["production"], version);
    assert_eq!(iris["candidate"], version);
    assert_eq!(iris["loaded"], version);
    assert!(iris["loaded_at"].as_str().unwrap().ends_with('Z'));

    let detail = call(&app, "GET", "/models/iris", "").await.json();
    assert_eq!(detail["loaded"], version);
    assert_eq!(detail["versions"], serde_json::json!([version]));
    assert_eq!(detail["kind"], "binary_logistic");
    assert_eq!(detail["features"][0]["name"], "petal_width");
    assert_eq!(detail["features"][0]["max"], 2.5);
    assert_eq!(detail["classes"][1], "virginica");
    assert!(detail["metrics"]["train_accuracy"].is_number());
    assert!(detail.get("coefficients").is_none(), "weights stay private");
}

#[tokio::test]
async fn text_routes_and_metrics_answer_in_their_formats() {
    let (_dir, app, version) = served_store();
    let answer = call(&app, "GET", "/version", "").await;
    assert_eq!(
        (answer.status, answer.text),
        (StatusCode::OK, version.to_string())
    );
    let ready = call(&app, "GET", "/ready", "").await.json();
    assert_eq!(ready["status"], "ready");
    call(&app, "POST", "/predict", r#"{"petal_width": 9}"#).await;
    call(&app, "GET", "/predict", "").await;
    call(
        &app,
        "POST",
        "/models/iris/predict",
        r#"{"petal_width": 1}"#,
    )
    .await;
    call(&app, "GET", "/no/such/route", "").await;
    let metrics = call(&app, "GET", "/metrics", "").await;
    assert!(metrics
        .content_type
        .starts_with("text/plain; version=0.0.4"));
    for series in [
        format!(r#"limen_predictions_total{{model="iris",version="{version}"}} 2"#),
        r#"limen_input_out_of_training_range_total{feature="petal_width",model="iris"} 1"#
            .to_owned(),
        r#"limen_http_requests_total{method="POST",route="/predict",status="200"} 1"#.to_owned(),
        // A wrong method counts under the route it missed; no route at all, as "unmatched".
        r#"limen_http_requests_total{method="GET",route="/predict",status="405"} 1"#.to_owned(),
        r#"limen_http_requests_total{method="POST",route="/models/{name}/predict",status="200"} 1"#
            .to_owned(),
        r#"limen_http_requests_total{method="GET",route="unmatched",status="404"} 1"#.to_owned(),
        r#"limen_http_request_duration_seconds_count{route="/predict"} 2"#.to_owned(),
        "limen_store_up 1".to_owned(),
    ] {
        assert!(metrics.text.contains(&series), "missing {series}");
    }
}

#[tokio::test]
async fn an_empty_store_answers_liveness_and_explains_why_it_is_not_ready() {
    let app = empty_app();
    let health = call(&app, "GET", "/healthcheck", "").await;
    assert_eq!(
        (health.status, health.text.as_str()),
        (StatusCode::OK, "Server is up!")
    );
    assert!(health.content_type.starts_with("text/plain"));
    assert_eq!(
        call(&app, "GET", "/v2/health/live", "").await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/v2/health/ready", "").await.status,
        StatusCode::BAD_REQUEST
    );
    for (method, uri) in [("POST", "/predict"), ("GET", "/ready"), ("GET", "/version")] {
        let answer = call(&app, method, uri, "{}").await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        let json = answer.json();
        assert_eq!(json["kind"], "not_loaded");
        assert!(
            json["error"].as_str().unwrap().contains("cannot be read"),
            "an absent store says so: {json}"
        );
    }
}

/// Publishes `bytes` as a new version of `name` and promotes it, unchecked (as another host
/// writing the shared store could).
fn promote_bytes(catalog: &Catalog, name: &str, bytes: Vec<u8>) {
    let name: ModelName = name.parse().unwrap();
    let version = catalog.publish_candidate(&name, |_| bytes.clone()).unwrap();
    catalog
        .lock(&name)
        .unwrap()
        .move_production(Move::Promote, version, serde_json::Value::Null)
        .unwrap();
}

#[tokio::test]
async fn ready_waits_for_each_production_model_served_and_names_what_it_lacks() {
    let (_dir, catalog, version) = served_catalog();
    // A production file nobody can load, and a model with only a candidate.
    promote_bytes(&catalog, "broken", b"{\"not\": \"a model\"}".to_vec());
    let draft: ModelName = "draft".parse().unwrap();
    catalog
        .publish_candidate(&draft, |v| {
            let mut a = binary_artifact();
            a.version = v.get();
            a.to_json_bytes()
        })
        .unwrap();
    let serving = |only: Option<&[&str]>| {
        let config = RegistryConfig {
            only: only.map(|names| names.iter().map(|n| n.parse().unwrap()).collect()),
            ..RegistryConfig::default()
        };
        app_configured(
            Catalog::open(catalog.root()),
            Limits::with_max_body(4096),
            Budget::unlimited(),
            config,
        )
    };

    // Every model: iris is loaded, the unloadable one is listed as refused instead of holding
    // the replica (and iris with it) out of the Service, the draft is not waited for.
    let all = serving(None);
    let ready = call(&all, "GET", "/ready", "").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    let ready = ready.json();
    assert_eq!(
        ready["models"],
        serde_json::json!({"iris": version.to_string()})
    );
    assert!(ready["refused"]["broken"].is_string(), "{ready}");
    assert_eq!(
        call(&all, "GET", "/v2/health/ready", "").await.status,
        StatusCode::OK
    );

    // A named model always waits: the replica is not ready without it, and says which.
    let named = serving(Some(&["iris", "broken"]));
    let ready = call(&named, "GET", "/ready", "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let error = ready.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("\"broken\" is not loaded"), "{error}");
    assert!(!error.contains("iris"), "{error}");
    assert_ne!(
        call(&named, "GET", "/v2/health/ready", "").await.status,
        StatusCode::OK
    );

    // A narrowed server serves nothing else, and says why.
    let narrowed = serving(Some(&["iris"]));
    assert_eq!(
        call(&narrowed, "GET", "/ready", "").await.status,
        StatusCode::OK
    );
    let other = call(&narrowed, "POST", "/models/draft/predict", "{}").await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(other.text.contains("serves only iris"), "{}", other.text);
    let models = call(&narrowed, "GET", "/models", "").await.json();
    assert_eq!(models["models"].as_array().unwrap().len(), 1, "{models}");

    // A load the memory budget cannot hold now is no verdict on the file: the replica waits.
    let starved = app_configured(
        Catalog::open(catalog.root()),
        Limits::with_max_body(4096),
        Budget::unlimited(),
        RegistryConfig {
            budget: Budget::new(1024),
            ..RegistryConfig::default()
        },
    );
    let ready = call(&starved, "GET", "/ready", "").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text
    );
    assert!(ready.text.contains("memory budget"), "{}", ready.text);

    // Nothing loadable at all: not ready, and it says so.
    let none = serving(Some(&["nosuch"]));
    let ready = call(&none, "GET", "/ready", "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text.contains("no such model yet"), "{}", ready.text);
}

#[tokio::test]
async fn explanations_add_up_to_the_logit_and_carry_the_answer() {
    let (_dir, app, version) = served_store();
    let single = call(&app, "POST", "/explain", r#"{"petal_width": "2.1"}"#).await;
    assert_eq!(single.status, StatusCode::OK, "{}", single.text);
    assert_eq!(single.version_header, Some(version.to_string()));
    let e = single.json();
    assert_eq!(e["label"], "virginica");
    assert_eq!(e["result"], 0.8704417670566003);
    let sum =
        e["baseline_logit"].as_f64().unwrap() + e["contributions"]["petal_width"].as_f64().unwrap();
    assert!((sum - e["logit"].as_f64().unwrap()).abs() < 1e-9, "{e}");
    // The logit is the log-odds of the answer's probability.
    let p = e["result"].as_f64().unwrap();
    assert!(((p / (1.0 - p)).ln() - e["logit"].as_f64().unwrap()).abs() < 1e-9);
    // At the training mean, every contribution is 0 and the logit is the baseline.
    let at_mean = call(
        &app,
        "POST",
        "/models/iris/explain",
        r#"{"petal_width": 1.199333}"#,
    )
    .await
    .json();
    assert!(
        at_mean["contributions"]["petal_width"]
            .as_f64()
            .unwrap()
            .abs()
            < 1e-9
    );

    let batch = call(
        &app,
        "POST",
        "/explain",
        r#"{"instances": [{"petal_width": 0.2}, {"petal_width": 2.5}]}"#,
    )
    .await
    .json();
    let rows = batch["predictions"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["contributions"]["petal_width"].as_f64().unwrap() < 0.0);
    assert!(rows[1]["contributions"]["petal_width"].as_f64().unwrap() > 0.0);

    // Bad input gets the same kinds and statuses as on /predict.
    for (body, status, kind) in [
        ("{}", 422, "missing_feature"),
        ("nope", 400, "malformed"),
        (r#"{"instances": []}"#, 422, "empty_batch"),
    ] {
        let answer = call(&app, "POST", "/explain", body).await;
        assert_eq!(answer.status.as_u16(), status, "{body}");
        assert_eq!(answer.json()["kind"], kind);
    }
}

#[tokio::test]
async fn a_multinomial_explanation_is_per_class() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(dir.path());
    let name: ModelName = "iris".parse().unwrap();
    let version = catalog
        .publish_candidate(&name, |v| {
            let mut a = crate::model::tests::multinomial_artifact();
            a.name = "iris".into();
            a.version = v.get();
            a.to_json_bytes()
        })
        .unwrap();
    catalog
        .lock(&name)
        .unwrap()
        .move_production(Move::Promote, version, serde_json::Value::Null)
        .unwrap();
    let app = app_over(catalog);
    let e = call(&app, "POST", "/explain", r#"{"petal_width": 2.0}"#)
        .await
        .json();
    for class in ["a", "b", "c"] {
        let sum = e["baseline_logit"][class].as_f64().unwrap()
            + e["contributions"][class]["petal_width"].as_f64().unwrap();
        assert!(
            (sum - e["logit"][class].as_f64().unwrap()).abs() < 1e-9,
            "{class}: {e}"
        );
    }
    assert!(e.get("result").is_none());
}

#[tokio::test]
async fn the_pages_are_html_under_a_strict_policy_and_the_api_is_described() {
    let (_dir, app, version) = served_store();
    for path in ["/", "/models/iris/report"] {
        let page = call(&app, "GET", path, "").await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(page.content_type.starts_with("text/html"), "{path}");
        assert!(
            page.text.contains(&version.to_string()),
            "{path} shows the version"
        );
        assert!(
            page.text.contains("<svg") && !page.text.contains("<script"),
            "{path}"
        );
    }
    let request = Request::builder().uri("/").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let css = call(&app, "GET", "/static/limen.css", "").await;
    assert!(css.content_type.starts_with("text/css"));
    let missing = call(&app, "GET", "/models/nosuch/report", "").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let doc = call(&app, "GET", "/openapi.json", "").await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    // Every route the router serves is in the document.
    for path in [
        "/",
        "/predict",
        "/explain",
        "/models",
        "/models/{name}",
        "/models/{name}/report",
        "/models/{name}/versions/{version}/predict",
        "/v2/models/{name}/infer",
        "/metrics",
        "/openapi.json",
        "/healthcheck",
        "/ready",
        "/version",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
}

/// `n` instances of the reference model as a batch body.
fn batch(n: usize) -> String {
    let one = r#"{"petal_width": 1.7}"#;
    format!(r#"{{"instances": [{}]}}"#, vec![one; n].join(","))
}

#[tokio::test]
async fn a_request_the_memory_budget_cannot_hold_is_a_429_and_every_reservation_comes_back() {
    let (_dir, catalog, _) = served_catalog();
    let budget = Budget::new(2 << 20);
    let app = app_with(catalog, Limits::with_max_body(1 << 20), budget.clone());
    // 10,000 instances: ~200 KB of body, ~1.7 MB of answer: more than 2 MiB with its decoding.
    for (uri, body) in [
        ("/predict", batch(10_000)),
        ("/explain", batch(10_000)),
        (
            "/v2/models/iris/infer",
            format!(
                r#"{{"inputs": [{{"name": "input", "shape": [60000, 1], "datatype": "FP64", "data": [{}]}}]}}"#,
                vec!["1.5"; 60_000].join(",")
            ),
        ),
    ] {
        let answer = call(&app, "POST", uri, &body).await;
        assert_eq!(
            answer.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{uri}: {}",
            answer.text
        );
        assert_eq!(answer.json()["kind"], "overloaded");
        assert!(answer.text.contains("memory budget"), "{}", answer.text);
        assert_eq!(
            budget.reserved(),
            0,
            "{uri}: a refusal gives back what it held"
        );
    }
    // What fits is answered, and its reservation is given back once the answer is sent.
    let answer = call(&app, "POST", "/predict", &batch(1_000)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(budget.reserved(), 0);
}

#[tokio::test]
async fn a_429_says_when_to_retry() {
    let (_dir, catalog, _) = served_catalog();
    let limits = Limits {
        max_concurrent_requests: 0,
        ..Limits::with_max_body(4096)
    };
    let app = app_with(catalog, limits, Budget::unlimited());
    let request = Request::builder()
        .method("POST")
        .uri("/predict")
        .body(Body::from(r#"{"petal_width": 2.1}"#))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    let bytes = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["kind"], "overloaded");
    assert!(json["error"]
        .as_str()
        .unwrap()
        .contains("--max-concurrent-requests"));
}

#[tokio::test]
async fn answer_limits_count_names_as_they_are_escaped() {
    // A class name of 5,000 control characters is 30,000 bytes of JSON: 1,000 instances would
    // answer 30 MB, over the 12 MiB limit, though the raw names add up to 5 MB.
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(dir.path());
    let name: ModelName = "iris".parse().unwrap();
    let version = catalog
        .publish_candidate(&name, |v| {
            let mut a = binary_artifact();
            a.version = v.get();
            a.classes = vec!["\u{1}".repeat(5_000), "virginica".into()];
            a.to_json_bytes()
        })
        .unwrap();
    catalog
        .lock(&name)
        .unwrap()
        .move_production(Move::Promote, version, serde_json::Value::Null)
        .unwrap();
    let budget = Budget::new(64 << 20);
    let app = app_with(catalog, Limits::with_max_body(1 << 20), budget.clone());
    let rows = 1_000;
    let infer = format!(
        r#"{{"inputs": [{{"name": "input", "shape": [{rows}, 1], "datatype": "FP64", "data": [{}]}}], "outputs": [{{"name": "label"}}]}}"#,
        vec!["0.1"; rows].join(",")
    );
    for (uri, body) in [
        ("/predict", batch(rows)),
        ("/explain", batch(rows)),
        ("/v2/models/iris/infer", infer),
    ] {
        let answer = call(&app, "POST", uri, &body).await;
        assert_eq!(
            answer.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{uri}: {:.200}",
            answer.text
        );
        assert_eq!(answer.json()["kind"], "batch_too_large");
        assert_eq!(budget.reserved(), 0);
    }
    // A batch that fits is answered, and its answer is no larger than was reserved for it.
    let answer = call(&app, "POST", "/predict", &batch(30)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.text.len() > 30 * 30_000);
}

#[tokio::test]
async fn pages_stay_small_whatever_the_store_holds() {
    // A model of 60 classes with long names, and a history of 20,000 lines with a 2 MB one.
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(dir.path());
    let name: ModelName = "iris".parse().unwrap();
    let classes = 60;
    let version = catalog
        .publish_candidate(&name, |v| {
            let mut a = crate::model::tests::multinomial_artifact();
            a.version = v.get();
            a.classes = (0..classes)
                .map(|k| format!("{k}-{}", "c".repeat(500)))
                .collect();
            a.coefficients = (0..classes).map(|k| vec![k as f64 / 10.0]).collect();
            a.intercepts = vec![0.0; classes];
            a.metrics.train = Some(crate::model::ClassReport {
                classes: a
                    .classes
                    .iter()
                    .map(|c| crate::model::ClassScores {
                        class: c.clone(),
                        precision: 0.5,
                        recall: 0.5,
                        f1: 0.5,
                        support: 10,
                    })
                    .collect(),
                confusion: vec![vec![1; classes]; classes],
                roc_auc: None,
            });
            a.to_json_bytes()
        })
        .unwrap();
    catalog
        .lock(&name)
        .unwrap()
        .move_production(Move::Promote, version, serde_json::Value::Null)
        .unwrap();
    let history = dir.path().join("iris/history.jsonl");
    let mut text = std::fs::read_to_string(&history).unwrap();
    let line = text.clone();
    for _ in 0..20_000 {
        text += &line;
    }
    text += &"x".repeat(2 << 20);
    text += "\n";
    text += &line;
    std::fs::write(&history, text).unwrap();
    let budget = Budget::new(64 << 20);
    let app = app_with(catalog, Limits::with_max_body(4096), budget.clone());
    for uri in ["/", "/models/iris/report"] {
        let answer = call(&app, "GET", uri, "").await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        assert!(
            answer.text.len() < 512 << 10,
            "{uri}: {} bytes",
            answer.text.len()
        );
        assert!(
            answer.text.contains("the first 20 of 60 classes"),
            "{uri} notes the classes it leaves out"
        );
        assert!(
            !answer.text.contains(&"c".repeat(100)),
            "{uri}: names are cut"
        );
        assert_eq!(budget.reserved(), 0, "{uri}: the page gave its bytes back");
    }
    // Over the budget: a 429, not a page that grows.
    let tiny = {
        let (_d, catalog, _) = served_catalog();
        let app = app_with(catalog, Limits::with_max_body(4096), Budget::new(64 << 10));
        (app, _d)
    };
    let answer = call(&tiny.0, "GET", "/", "").await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
}

/// Artifacts limen really trains on Iris's four features, with every optional part (scaler,
/// drift references, train and CV reports, a forest's mean contributions): binary and
/// three-class logistic models, then binary and three-class random forests (10 trees, depth at
/// most 4), as JSON values.
fn trained_artifacts() -> &'static [serde_json::Value; 4] {
    use crate::train::{Objective, TrainParams};
    static TRAINED: std::sync::OnceLock<[serde_json::Value; 4]> = std::sync::OnceLock::new();
    TRAINED.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/iris.csv");
        let features: Vec<String> = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
            .map(String::from)
            .to_vec();
        let data = crate::data::Dataset::load(&path, &features, "species").unwrap();
        let binary = || Objective::OneVsRest {
            positive: "virginica".into(),
        };
        [
            (binary(), false),
            (Objective::Multiclass, false),
            (binary(), true),
            (Objective::Multiclass, true),
        ]
        .map(|(objective, forest)| {
            let params = TrainParams::defaults(objective).unwrap();
            let params = if forest {
                let trees = crate::forest::params(10, Some(4), None, 0).unwrap();
                params.random_forest(trees).unwrap()
            } else {
                params.standardized(true)
            };
            let trained = crate::train::train(&data, &params).unwrap();
            let bytes = trained
                .artifact("iris", 1, "2026-12-01T00:00:00Z")
                .to_json_bytes();
            serde_json::from_slice(&bytes).unwrap()
        })
    })
}

/// One way to damage a `model.json` value.
#[derive(Debug, Clone)]
enum Mutation {
    /// Cut the `n`-th array (in document order) to `len` elements.
    Truncate(usize, usize),
    /// Repeat the last element of the `n`-th array `times` more times.
    Extend(usize, usize),
    /// Replace the `n`-th number.
    Number(usize, f64),
    /// Replace the `n`-th string.
    Text(usize, String),
    /// Remove the `n`-th object key.
    Remove(usize),
}

fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
    use proptest::prelude::*;
    let number = prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(-1.0),
        Just(1.0),
        Just(1e308),
        Just(-1e308),
        Just(5e-324),
        Just(18446744073709551615.0),
        Just(2.0),
        Just(3.0),
        Just(64.0),
        Just(4294967295.0),
        -1e6f64..1e6,
    ];
    let text = prop_oneof![
        Just(String::new()),
        Just("\"\\\u{1}<script>".repeat(50)),
        Just("x".repeat(20_000)),
        Just("multinomial_logistic".to_owned()),
        Just("binary_logistic".to_owned()),
        Just("tree_ensemble".to_owned()),
        Just("softmax".to_owned()),
        Just("less".to_owned()),
        Just("setosa".to_owned()),
        Just("petal_width".to_owned()),
        ".{0,8}",
    ];
    prop_oneof![
        (0..64usize, 0..4usize).prop_map(|(n, len)| Mutation::Truncate(n, len)),
        (0..64usize, 1..40usize).prop_map(|(n, t)| Mutation::Extend(n, t)),
        (0..512usize, number).prop_map(|(n, v)| Mutation::Number(n, v)),
        (0..128usize, text).prop_map(|(n, t)| Mutation::Text(n, t)),
        (0..128usize).prop_map(Mutation::Remove),
    ]
}

/// Applies `m` to the first node of its kind at or after its index (counting wraps around).
fn mutate(value: &mut serde_json::Value, m: &Mutation) {
    use serde_json::Value;
    fn visit(v: &mut Value, each: &mut dyn FnMut(&mut Value)) {
        each(v);
        match v {
            Value::Array(items) => items.iter_mut().for_each(|i| visit(i, each)),
            Value::Object(map) => map.values_mut().for_each(|i| visit(i, each)),
            _ => {}
        }
    }
    let is_target = |v: &Value| match m {
        Mutation::Truncate(..) | Mutation::Extend(..) => v.is_array(),
        Mutation::Number(..) => v.is_number(),
        Mutation::Text(..) => v.is_string(),
        Mutation::Remove(_) => v.as_object().is_some_and(|o| !o.is_empty()),
    };
    let mut count = 0;
    visit(value, &mut |v| count += usize::from(is_target(v)));
    if count == 0 {
        return;
    }
    let n = match m {
        Mutation::Truncate(n, _) | Mutation::Extend(n, _) | Mutation::Number(n, _) => *n,
        Mutation::Text(n, _) | Mutation::Remove(n) => *n,
    } % count;
    let mut seen = 0;
    visit(value, &mut |v| {
        if !is_target(v) {
            return;
        }
        seen += 1;
        if seen - 1 != n {
            return;
        }
        match (m, v) {
            (Mutation::Truncate(_, len), Value::Array(items)) => items.truncate(*len),
            (Mutation::Extend(_, times), Value::Array(items)) => {
                if let Some(last) = items.last().cloned() {
                    items.extend(std::iter::repeat_n(last, *times));
                }
            }
            (Mutation::Number(_, x), v) => {
                *v = serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number)
            }
            (Mutation::Text(_, t), v) => *v = Value::String(t.clone()),
            (Mutation::Remove(_), Value::Object(map)) => {
                let key = map.keys().nth(n % map.len()).cloned().unwrap_or_default();
                map.remove(&key);
            }
            _ => {}
        }
    });
}

/// Serves `artifact` (signed as is) as iris's production version and calls every route that
/// reads a model: none may answer 500 (a handler's panic is caught and answered 500).
async fn serve_every_route(artifact: &serde_json::Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let version = artifact["version"].as_u64().unwrap_or(1).max(1);
    let folder = dir.path().join("iris").join(version.to_string());
    std::fs::create_dir_all(&folder).unwrap();
    let mut signed = artifact.clone();
    crate::model::sign(&mut signed);
    std::fs::write(
        folder.join("model.json"),
        serde_json::to_vec(&signed).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("iris").join("production"),
        version.to_string(),
    )
    .unwrap();
    // What the server serves: a version that verifies and passes its warm-up (a weight of
    // 1e308 verifies, but overflows on the probes, and is never swapped in: 503, not a 500).
    let loads = Catalog::open(dir.path())
        .load_verified(
            &"iris".parse().unwrap(),
            crate::store::VersionId::try_from(version).unwrap(),
        )
        .is_ok_and(|model| model.self_test().is_ok());
    let app = app_over(Catalog::open(dir.path()));

    // Instances across each feature's training range (its minimum, quartiles and maximum, so
    // every drift bin is reached) and far outside it, by the names the file gives (a mutated name
    // is what a client of that model would send).
    let features: Vec<(String, f64, f64)> = artifact["features"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|f| {
                    let (min, max) = (f["min"].as_f64()?, f["max"].as_f64()?);
                    Some((f["name"].as_str()?.to_owned(), min, max))
                })
                .collect()
        })
        .unwrap_or_default();
    let at = |t: f64| -> Vec<f64> {
        features
            .iter()
            .map(|(_, min, max)| {
                let x = min + t * (max - min);
                if x.is_finite() {
                    x
                } else {
                    0.0
                }
            })
            .collect()
    };
    let instance = |row: &[f64]| {
        serde_json::Value::Object(
            features
                .iter()
                .zip(row)
                .map(|((name, ..), x)| (name.clone(), serde_json::json!(x)))
                .collect(),
        )
    };
    let far = |x: f64| vec![x; features.len()];
    let rows: Vec<Vec<f64>> = [0.0, 0.25, 0.5, 0.75, 1.0]
        .map(at)
        .into_iter()
        .chain([far(-3.0), far(1e6), far(-1e12)])
        .collect();
    let single = instance(&at(0.5)).to_string();
    let batch =
        serde_json::json!({"instances": rows.iter().map(|r| instance(r)).collect::<Vec<_>>()})
            .to_string();
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    let infer =
        serde_json::json!({"inputs": [{"name": "input", "shape": [rows.len(), features.len()],
        "datatype": "FP64", "data": flat}]})
        .to_string();
    let calls = [
        ("POST", "/predict", single.as_str()),
        ("POST", "/predict", batch.as_str()),
        ("POST", "/explain", single.as_str()),
        ("POST", "/explain", batch.as_str()),
        ("POST", "/v2/models/iris/infer", infer.as_str()),
        ("GET", "/v2/models/iris", ""),
        ("GET", "/models", ""),
        ("GET", "/models/iris", ""),
        ("GET", "/models/iris/report", ""),
        ("GET", "/", ""),
        ("GET", "/metrics", ""),
        ("GET", "/ready", ""),
    ];
    for (method, uri, body) in calls {
        let answer = call(&app, method, uri, body).await;
        if answer.status == StatusCode::INTERNAL_SERVER_ERROR {
            return Err(format!(
                "{method} {uri}: 500 (the artifact {} load)",
                if loads { "did" } else { "did not" }
            ));
        }
        // A model that loads (and so passed its warm-up) scores an in-range instance, unless the
        // body is over the test's 4 KiB limit (a mutated feature name can be 20,000 bytes).
        let scored = matches!(
            answer.status,
            StatusCode::OK | StatusCode::PAYLOAD_TOO_LARGE
        );
        if loads && uri == "/predict" && body == single && !scored {
            return Err(format!(
                "{method} {uri}: {} for an in-range instance",
                answer.status
            ));
        }
    }
    // `limen drift` bins logged values with the same reference.
    if loads {
        let log = tempfile::tempdir().unwrap();
        let day = log
            .path()
            .join("iris")
            .join(&crate::store::now_rfc3339()[..10]);
        std::fs::create_dir_all(&day).unwrap();
        let line = serde_json::json!({"ts": crate::store::now_rfc3339(), "model": "iris",
            "version": version.to_string(), "request_id": "r", "route": "/predict", "status": 200,
            "features": instance(&at(0.9))});
        std::fs::write(day.join("pod-0.jsonl"), format!("{line}\n")).unwrap();
        let cfg = crate::drift::DriftConfig {
            model: "iris".parse().unwrap(),
            log: log.path().to_owned(),
            since: Duration::from_secs(3600),
            max_psi: None,
            min_samples: 0,
        };
        let catalog = Catalog::open(dir.path());
        let drift = std::panic::catch_unwind(|| crate::drift::measure(&catalog, &cfg).map(|_| ()));
        if drift.is_err() {
            return Err("limen drift panicked".to_owned());
        }
    }
    Ok(())
}

/// Runs `f` on this thread's one runtime (the deadline layer keeps timers per thread, which
/// must not outlive their runtime).
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
    }
    RUNTIME.with(|runtime| runtime.block_on(f))
}

#[test]
fn the_trained_artifacts_serve_every_route() {
    for artifact in trained_artifacts() {
        block_on(serve_every_route(artifact)).unwrap();
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

    /// Any artifact that loads can score any input on every route without a panic; any other
    /// is refused at load with a reason (never served, never a 500).
    #[test]
    fn a_mutated_re_signed_artifact_loads_and_serves_or_is_refused(
        kind in 0..4usize,
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut artifact = trained_artifacts()[kind].clone();
        for m in &mutations {
            mutate(&mut artifact, m);
        }
        let served = block_on(serve_every_route(&artifact));
        let short = format!("{mutations:?}").chars().take(400).collect::<String>();
        proptest::prop_assert!(served.is_ok(), "{short}: {}", served.unwrap_err());
    }
}
