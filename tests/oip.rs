//! Black-box tests of the Open Inference Protocol (KServe v2) REST routes, with golden request and
//! response bodies adapted from the specification's examples to the Iris models.

mod common;

use common::{get, http, post, Server, TestStore};
use serde_json::json;

/// A store with production `iris` (binary) and `iris-species` (three classes).
fn two_models() -> (TestStore, String, String) {
    let store = TestStore::new();
    let iris = store.promote_iris();
    let species = store.promote_species();
    (store, iris, species)
}

fn ready_server(store: &TestStore) -> Server {
    let server = Server::serve(store.path(), &[]).ready();
    let agent = http();
    common::eventually(common::PATIENCE, "every model to load", || {
        (get(&agent, &server.url("/v2/health/ready")).status == 200).then_some(())
    });
    server
}

#[test]
fn server_metadata_and_health_follow_the_protocol() {
    let (store, iris, _) = two_models();
    let server = ready_server(&store);
    let agent = http();

    let meta = get(&agent, &server.url("/v2"));
    assert_eq!(meta.status, 200);
    assert_eq!(
        meta.json(),
        json!({"name": "limen", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]})
    );
    for (path, want) in [
        ("/v2/health/live", 200),
        ("/v2/health/ready", 200),
        ("/v2/models/iris/ready", 200),
        ("/v2/models/iris-species/ready", 200),
        (&*format!("/v2/models/iris/versions/{iris}/ready"), 200),
        ("/v2/models/nosuch/ready", 404),
        ("/v2/models/iris/versions/1/ready", 404),
    ] {
        let answer = get(&agent, &server.url(path));
        assert_eq!(answer.status, want, "{path}: {}", answer.body);
        assert!(
            answer.body.is_empty(),
            "{path}: health bodies are empty: {}",
            answer.body
        );
    }
}

#[test]
fn health_is_false_until_models_load() {
    let store = TestStore::new();
    let server = Server::serve(store.path(), &[]);
    let agent = http();
    assert_eq!(get(&agent, &server.url("/v2/health/live")).status, 200);
    assert_eq!(get(&agent, &server.url("/v2/health/ready")).status, 400);
    // A model that exists but has no production version: not ready, and infer says 503.
    store.train(&["--cv-folds", "0"]);
    common::eventually(common::PATIENCE, "the scan to see the model", || {
        (get(&agent, &server.url("/v2/models/iris/ready")).status == 400).then_some(())
    });
    let body =
        r#"{"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP64", "data": [2.1]}]}"#;
    let answer = post(&agent, &server.url("/v2/models/iris/infer"), body);
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(answer.json()["error"].as_str().unwrap().contains("iris"));
}

#[test]
fn model_metadata_describes_tensors_with_a_batch_dimension() {
    let (store, iris, species) = two_models();
    let server = ready_server(&store);
    let agent = http();
    let iris_meta = get(&agent, &server.url("/v2/models/iris"));
    assert_eq!(iris_meta.status, 200);
    assert_eq!(
        iris_meta.json(),
        json!({
            "name": "iris",
            "versions": [iris],
            "platform": "linfa_logistic",
            "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 1]}],
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]}
            ]
        })
    );
    let species_meta = get(
        &agent,
        &server.url(&format!("/v2/models/iris-species/versions/{species}")),
    )
    .json();
    assert_eq!(species_meta["inputs"][0]["shape"], json!([-1, 4]));
    assert_eq!(species_meta["outputs"][1]["shape"], json!([-1, 3]));
    assert_eq!(get(&agent, &server.url("/v2/models/nosuch")).status, 404);
    assert_eq!(
        get(&agent, &server.url("/v2/models/iris/versions/1")).status,
        404
    );
}

#[test]
fn infer_answers_the_specifications_example_adapted_to_iris() {
    let (store, iris, species) = two_models();
    let server = ready_server(&store);
    let agent = http();

    // The spec's example: an id, a [N, features] input, one requested output.
    let request = json!({
        "id": "42",
        "inputs": [{"name": "input", "shape": [2, 1], "datatype": "FP32", "data": [2.1, 0.2]}],
        "outputs": [{"name": "label"}]
    });
    let answer = post(
        &agent,
        &server.url("/v2/models/iris/infer"),
        &request.to_string(),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.version_header.as_deref(), Some(iris.as_str()));
    assert_eq!(
        answer.json(),
        json!({
            "model_name": "iris",
            "model_version": iris,
            "id": "42",
            "outputs": [{"name": "label", "shape": [2], "datatype": "BYTES", "data": ["virginica", "not_virginica"]}]
        })
    );

    // Without "outputs", both; probabilities agree with /predict to the last bit (FP64 input).
    let request = json!({"inputs": [{"name": "petal_width", "shape": [1], "datatype": "FP64", "data": [2.1]}]});
    let v2 = post(
        &agent,
        &server.url("/v2/models/iris/infer"),
        &request.to_string(),
    )
    .json();
    let classic = post(&agent, &server.url("/predict"), r#"{"petal_width": 2.1}"#).json();
    assert!(v2.get("id").is_none());
    assert_eq!(v2["outputs"][0]["name"], "label");
    assert_eq!(v2["outputs"][1]["shape"], json!([1, 2]));
    assert_eq!(v2["outputs"][1]["data"][1], classic["result"]);

    // Per-feature tensors for the three-species model, integers converted, nested data.
    let request = json!({
        "inputs": [
            {"name": "petal_width", "shape": [2, 1], "datatype": "FP64", "data": [[2.5], [0.2]]},
            {"name": "petal_length", "shape": [2], "datatype": "INT64", "data": [6, 1]},
            {"name": "sepal_width", "shape": [2], "datatype": "FP64", "data": [3.3, 3.5]},
            {"name": "sepal_length", "shape": [2], "datatype": "UINT8", "data": [6, 5]}
        ],
        "outputs": [{"name": "label"}, {"name": "probabilities"}]
    });
    let answer = post(
        &agent,
        &server.url(&format!("/v2/models/iris-species/versions/{species}/infer")),
        &request.to_string(),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["model_version"], species.as_str());
    assert_eq!(body["outputs"][0]["data"], json!(["virginica", "setosa"]));
    let probs: Vec<f64> = body["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(probs.len(), 6);
    assert!((probs[..3].iter().sum::<f64>() - 1.0).abs() < 1e-9);
}

#[test]
fn infer_errors_use_the_protocols_shape_and_status_codes() {
    let (store, _, _) = two_models();
    let server = ready_server(&store);
    let agent = http();
    let species = server.url("/v2/models/iris-species/infer");
    let cases: Vec<(String, &str, u16)> = vec![
        (species.clone(), "{not json", 400),
        (
            species.clone(),
            r#"{"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}"#,
            400,
        ),
        (
            species.clone(),
            r#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}]}"#,
            400,
        ),
        (
            species.clone(),
            r#"{"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}"#,
            400,
        ),
        // Well formed, but three of the four features are missing: as on /predict, a 422.
        (
            species.clone(),
            r#"{"inputs": [{"name": "petal_width", "shape": [1], "datatype": "FP64", "data": [1]}]}"#,
            422,
        ),
        (
            species.clone(),
            r#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}], "outputs": [{"name": "logits"}]}"#,
            400,
        ),
        (
            server.url("/v2/models/nosuch/infer"),
            r#"{"inputs": []}"#,
            404,
        ),
        (
            server.url("/v2/models/iris/versions/1/infer"),
            r#"{"inputs": []}"#,
            404,
        ),
        (
            server.url("/v2/models/iris/versions/x/infer"),
            r#"{"inputs": []}"#,
            400,
        ),
        (
            server.url("/v2/models/%2e%2e/infer"),
            r#"{"inputs": []}"#,
            400,
        ),
    ];
    for (url, body, want) in cases {
        let answer = post(&agent, &url, body);
        assert_eq!(answer.status, want, "{url} {body}: {}", answer.body);
        let error = answer.json();
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{url}: {}",
            answer.body
        );
        assert!(
            error["kind"].as_str().is_some_and(|k| !k.is_empty()),
            "{url}: {}",
            answer.body
        );
        assert_eq!(
            error.as_object().unwrap().len(),
            2,
            "only \"error\" and \"kind\": {}",
            answer.body
        );
    }
}

#[test]
fn the_same_bad_input_gets_the_same_status_and_kind_on_predict_and_v2() {
    let (store, _, _) = two_models();
    let server = ready_server(&store);
    let agent = http();
    // The four-feature model, so that a feature can be missing on both routes.
    let predict = server.url("/models/iris-species/predict");
    let infer = server.url("/v2/models/iris-species/infer");
    // (what is wrong, the /predict body, the /v2 body, status, kind)
    let cases = [
        (
            "a missing feature",
            r#"{"petal_width": 1}"#,
            r#"{"inputs": [{"name": "petal_width", "shape": [1], "datatype": "FP64", "data": [1]}]}"#,
            422,
            "missing_feature",
        ),
        (
            "an empty batch",
            r#"{"instances": []}"#,
            r#"{"inputs": [{"name": "input", "shape": [0, 4], "datatype": "FP64", "data": []}]}"#,
            422,
            "empty_batch",
        ),
        (
            "a value that is not finite",
            r#"{"sepal_length": 1, "sepal_width": 1, "petal_length": 1, "petal_width": 1e999}"#,
            r#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1e39]}]}"#,
            422,
            "invalid_value",
        ),
        (
            "a body that is not JSON",
            "{not json",
            "{not json",
            400,
            "malformed",
        ),
    ];
    for (what, predict_body, infer_body, status, kind) in cases {
        for (url, body) in [(&predict, predict_body), (&infer, infer_body)] {
            let answer = post(&agent, url, body);
            assert_eq!(answer.status, status, "{what} on {url}: {}", answer.body);
            assert_eq!(
                answer.json()["kind"],
                kind,
                "{what} on {url}: {}",
                answer.body
            );
        }
    }
}

#[test]
fn binary_tensor_data_works_as_tritons_http_client_sends_it() {
    let (store, _, _) = two_models();
    let server = ready_server(&store);
    // What tritonclient.http sends by default: JSON header, then raw little-endian tensors.
    let header = br#"{"inputs":[{"name":"input","shape":[2,1],"datatype":"FP32","parameters":{"binary_data_size":8}}],"outputs":[{"name":"label","parameters":{"binary_data":true}},{"name":"probabilities","parameters":{"binary_data":true}}]}"#;
    let mut body = header.to_vec();
    body.extend_from_slice(&2.1f32.to_le_bytes());
    body.extend_from_slice(&0.2f32.to_le_bytes());
    let response = http()
        .post(&server.url("/v2/models/iris/infer"))
        .header("Inference-Header-Content-Length", header.len().to_string())
        .header("Content-Type", "application/octet-stream")
        .send(&body[..])
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let split: usize = response
        .headers()
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a binary answer says where its JSON ends");
    let bytes = response.into_body().read_to_vec().unwrap();
    let head: serde_json::Value = serde_json::from_slice(&bytes[..split]).unwrap();
    let sizes: Vec<usize> = head["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["parameters"]["binary_data_size"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(sizes, vec![4 + 9 + 4 + 13, 4 * 8]);
    let probabilities: Vec<f64> = bytes[split + sizes[0]..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(probabilities.len(), 4);
    assert!(
        probabilities[1] > 0.8 && probabilities[3] < 0.01,
        "{probabilities:?}"
    );
}
