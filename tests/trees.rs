//! Tree ensembles against the libraries that trained them: XGBoost and LightGBM models made by
//! `scripts/tree_fixtures.py` (in CI, in the pinned venv of tests/trees/requirements.txt) are
//! imported with the real `limen import`, loaded as a server loads them, and must give the
//! library's probabilities (1e-6), margins (1e-5: XGBoost sums in float32) and SHAP values
//! (`pred_contribs` / `pred_contrib`, 1e-5) on held-out rows, missing values and categorical
//! codes included. Without the fixtures (no venv on this machine) the
//! tests say so and skip, unless `LIMEN_REQUIRE_TREE_FIXTURES=1` (as in CI).

mod common;

use common::{tree_fixtures as fixtures, TestStore};

/// Imports `case` into `store` as `name`; returns the model as a server would load it.
fn import(
    store: &TestStore,
    dir: &std::path::Path,
    case: &str,
    name: &str,
) -> (limen::model::Model, serde_json::Value) {
    import_file(store, dir, case, name, None)
}

/// [`import`] of the case's `file` (default: the library's own, `model.json` or `model.txt`).
fn import_file(
    store: &TestStore,
    dir: &std::path::Path,
    case: &str,
    name: &str,
    file: Option<&str>,
) -> (limen::model::Model, serde_json::Value) {
    let folder = dir.join(case);
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("expected.json")).unwrap()).unwrap();
    let classes: Vec<&str> = expected["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let (flag, default) = match expected["library"].as_str() {
        Some("lightgbm") => ("--lightgbm", "model.txt"),
        _ => ("--xgboost", "model.json"),
    };
    let file = file.unwrap_or(default);
    let out = store.ok(&[
        "import",
        name,
        flag,
        folder.join(file).to_str().unwrap(),
        "--data",
        folder.join("data.csv").to_str().unwrap(),
        "--label-column",
        "label",
        "--classes",
        &classes.join(","),
    ]);
    let version = out.lines().last().unwrap().trim().to_owned();
    let bytes = std::fs::read(store.path().join(name).join(&version).join("model.json")).unwrap();
    (
        limen::model::Model::from_json_bytes(&bytes).unwrap(),
        expected,
    )
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

/// Every fixture case: binary and multiclass, numeric and categorical, each library's missing
/// value rules, 10 to 1,000 trees, depth up to 8.
const CASES: [&str; 9] = [
    "xgb_binary",
    "xgb_deep",
    "lgb_deep",
    "xgb_multiclass",
    "xgb_categorical",
    "lgb_binary",
    "lgb_zero_missing",
    "lgb_multiclass",
    "lgb_categorical",
];

#[test]
fn imported_models_score_and_explain_as_their_library_does() {
    let Some(dir) = fixtures() else { return };
    let store = TestStore::new();
    for case in CASES {
        let name = case.replace('_', "-");
        let (model, expected) = import(&store, &dir, case, &name);
        let rows = expected["rows"].as_array().unwrap();
        let (mut worst_p, mut worst_m, mut worst_c) = (0.0f64, 0.0f64, 0.0f64);
        for (i, row) in rows.iter().enumerate() {
            let row = floats(row);
            let p = model.predict(&row).unwrap();
            for (a, b) in p
                .probabilities
                .iter()
                .zip(floats(&expected["probabilities"][i]))
            {
                worst_p = worst_p.max((a - b).abs());
            }
            let e = model.explain(&row).unwrap();
            for (k, margin) in floats(&expected["margins"][i]).into_iter().enumerate() {
                worst_m = worst_m.max((e.logits[k] - margin).abs());
                let library = floats(&expected["contributions"][i][k]);
                let (bias, per_feature) = library.split_last().unwrap();
                worst_c = worst_c.max((e.baseline[k] - bias).abs());
                for (a, b) in e.contributions[k].iter().zip(per_feature) {
                    worst_c = worst_c.max((a - b).abs());
                }
                // The decomposition adds up to the margin.
                let sum: f64 = e.baseline[k] + e.contributions[k].iter().sum::<f64>();
                assert!((sum - e.logits[k]).abs() < 1e-9, "{case} row {i}");
            }
        }
        eprintln!("{case}: {} rows, worst |Δp| {worst_p:.2e}, |Δmargin| {worst_m:.2e}, |Δshap| {worst_c:.2e}", rows.len());
        assert!(
            worst_p < 1e-6,
            "{case}: probabilities differ by {worst_p:e}"
        );
        // XGBoost sums margins in float32 (about 7 digits: 2e-6 at a margin of 10).
        assert!(worst_m < 1e-5, "{case}: margins differ by {worst_m:e}");
        assert!(
            worst_c < 1e-5,
            "{case}: contributions differ by {worst_c:e}"
        );
    }
}

/// The same held-out rows, sent over HTTP as a client would: missing cells as JSON `null` in one
/// `/predict` batch and in an OIP tensor, after the real gate promoted the import.
#[test]
fn an_imported_model_passes_the_gate_and_answers_null_as_missing_over_http() {
    use common::{http, post, Server};
    let Some(dir) = fixtures() else { return };
    let store = TestStore::new();
    let (model, expected) = import(&store, &dir, "xgb_binary", "cancer");
    let gate = store.ok(&["validate", "--model", "cancer"]);
    assert!(
        gate.contains("not applicable to a tree ensemble (imported from xgboost"),
        "{gate}"
    );
    let log = tempfile::tempdir().unwrap();
    let server = Server::serve(
        store.path(),
        &[
            "--model",
            "cancer",
            "--inference-log",
            log.path().to_str().unwrap(),
            "--instance",
            "pod-a",
        ],
    );
    let mut server = server.ready();
    let agent = http();
    let features = model.feature_names();
    let rows = expected["rows"].as_array().unwrap();
    assert!(
        rows.iter()
            .flat_map(|r| r.as_array().unwrap())
            .any(|v| v.is_null()),
        "the fixture has missing cells"
    );
    let instances: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let cells = row.as_array().unwrap();
            features
                .iter()
                .cloned()
                .zip(cells.iter().cloned())
                .collect()
        })
        .collect();
    let body = serde_json::json!({ "instances": instances }).to_string();
    let answer = post(&agent, &server.url("/models/cancer/predict"), &body);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let predictions = answer.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(predictions.len(), rows.len());
    let mut worst = 0.0f64;
    for (i, p) in predictions.iter().enumerate() {
        let library = floats(&expected["probabilities"][i]);
        let served = p["probabilities"]["benign"].as_f64().unwrap();
        worst = worst.max((served - library[1]).abs());
    }
    assert!(worst < 1e-6, "served probabilities differ by {worst:e}");

    // OIP: one [N, F] FP64 tensor with null cells gives the same probabilities.
    let flat: Vec<serde_json::Value> = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .collect();
    let infer = serde_json::json!({"inputs": [{
        "name": "input", "shape": [rows.len(), features.len()], "datatype": "FP64", "data": flat
    }], "outputs": [{"name": "probabilities"}]});
    let answer = post(
        &agent,
        &server.url("/v2/models/cancer/infer"),
        &infer.to_string(),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let data = floats(&answer.json()["outputs"][0]["data"]);
    for (i, p) in predictions.iter().enumerate() {
        assert_eq!(
            data[2 * i + 1],
            p["probabilities"]["benign"].as_f64().unwrap()
        );
    }

    // A row that lacks a feature entirely is still refused, naming it.
    let mut short = instances[0].clone();
    short.as_object_mut().unwrap().remove(&features[3]);
    let answer = post(
        &agent,
        &server.url("/models/cancer/predict"),
        &short.to_string(),
    );
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(answer.body.contains(&features[3]), "{}", answer.body);

    // The inference log holds every instance, a missing cell as null; `limen drift` reads it.
    server.terminate();
    assert!(server.wait_exit(common::PATIENCE).success());
    let mut logged = Vec::new();
    let mut folders = vec![log.path().to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    logged.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
                }
            }
        }
    }
    let instances_logged: Vec<&serde_json::Value> = logged
        .iter()
        .filter(|l| l["model"] == "cancer" && l.get("features").is_some())
        .collect();
    assert!(instances_logged.len() >= rows.len(), "{}", logged.len());
    assert!(
        instances_logged.iter().any(|l| l["features"]
            .as_object()
            .unwrap()
            .values()
            .any(|v| v.is_null())),
        "a missing cell is logged as null"
    );
    // A verdict on the 48 lines logged (the default wants 200): this is about reading them.
    let drift = store.limen(&[
        "drift",
        "cancer",
        "--log",
        log.path().to_str().unwrap(),
        "--json",
        "--min-samples",
        "1",
    ]);
    assert!(
        matches!(drift.status.code(), Some(0 | 1)),
        "{}",
        common::stderr(&drift)
    );
    let report: serde_json::Value = serde_json::from_slice(&drift.stdout).unwrap();
    assert!(report.to_string().contains(&features[0]), "{report}");
}

#[test]
fn an_xgboost_ubjson_file_imports_exactly_as_its_json() {
    let Some(dir) = fixtures() else { return };
    let store = TestStore::new();
    for case in ["xgb_binary", "xgb_multiclass", "xgb_categorical"] {
        let name = case.replace('_', "-");
        let (json, _) = import_file(&store, &dir, case, &format!("{name}-json"), None);
        let (ubj, _) = import_file(
            &store,
            &dir,
            case,
            &format!("{name}-ubj"),
            Some("model.ubj"),
        );
        let (json, ubj) = (json.artifact(), ubj.artifact());
        assert_eq!(
            json.trees, ubj.trees,
            "{case}: the two files give other trees"
        );
        let (from_json, from_ubj) = (
            json.provenance.imported.as_ref().unwrap(),
            ubj.provenance.imported.as_ref().unwrap(),
        );
        assert_eq!(from_json.library_version, from_ubj.library_version);
        assert_ne!(from_json.file_sha256, from_ubj.file_sha256);
    }
}
