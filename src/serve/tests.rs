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

use super::{router, AppState, Limits};
use crate::catalog::{Catalog, Move};
use crate::inference_log::InferenceLog;
use crate::model::tests::binary_artifact;
use crate::registry::{Registry, RegistryConfig};
use crate::shadow::{Shadow, ShadowConfig};
use crate::store::ModelName;
use crate::telemetry::Metrics;

/// The router over `catalog`, after one scan, with a 4 KiB body limit.
fn app_over(catalog: Catalog) -> Router {
    let metrics = Arc::new(Metrics::new());
    let registry = Arc::new(Registry::new(
        catalog,
        RegistryConfig::default(),
        Arc::clone(&metrics),
    ));
    registry.scan();
    router(AppState::new(
        registry,
        "iris".parse().unwrap(),
        Limits {
            max_body: 4096,
            request_timeout: Duration::from_secs(5),
        },
        Arc::clone(&metrics),
        Arc::new(Shadow::start(
            ShadowConfig {
                rate: 0.0,
                evidence: None,
                instance: "test".to_owned(),
            },
            Arc::clone(&metrics),
        )),
        Arc::new(InferenceLog::off(&metrics)),
        Arc::default(),
    ))
}

/// A router over an empty, absent store.
fn empty_app() -> Router {
    let dir = std::env::temp_dir().join("limen-router-tests-nonexistent");
    app_over(Catalog::open(dir))
}

/// A store with `iris` (scikit-learn's petal-width weights) promoted to production; the
/// version id is returned with it.
fn served_store() -> (tempfile::TempDir, Router, u64) {
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
    (dir, app_over(catalog), version.get())
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
