//! Tables with text columns and missing cells, from the CSV to the answer: `limen train` on a
//! table of four numbers and three text columns (20 categories each) with 5-20 % missing cells
//! gives, on every held-out row (with categories training never saw), scikit-learn's
//! `make_pipeline(ColumnTransformer([median imputer + scaler on the numbers,
//! OneHotEncoder(handle_unknown="ignore") on the text]), LogisticRegression(C=1))` probabilities
//! within 1e-3 (binary) and 1e-2 (three classes), and its imputed values. The rows are sent to
//! the real server over HTTP as a client would: text, `null`, or the key left out. Tables and
//! answers are made by `scripts/tree_fixtures.py` in CI's pinned venv.

mod common;

use std::path::{Path, PathBuf};

use common::{get, http, post, tree_fixtures, Server, TestStore};
use serde_json::{json, Value};

fn fixture(case: &str) -> Option<(PathBuf, Value)> {
    let dir = tree_fixtures()?.join("mixed").join(case);
    let expected = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).ok()?).ok()?;
    Some((dir, expected))
}

/// Trains `case` on its training table into `store` and points production at it.
fn train(store: &TestStore, case: &str, dir: &Path, extra: &[&str]) -> String {
    let data = dir.join("train.csv");
    let mut args = vec![
        "--model",
        case,
        "--data",
        data.to_str().unwrap(),
        "--label-column",
        "label",
        "--standardize",
        "--holdout",
        "0",
        "--cv-folds",
        "0",
    ];
    args.extend_from_slice(extra);
    let version = store.train(&args);
    store.ok(&["models", "promote", case, &version, "--no-wait"]);
    version
}

/// The held-out rows as `/predict` instances: numbers as numbers, text as text; a missing cell
/// as `null` in even rows and as an absent key in odd ones.
fn instances(dir: &Path) -> (Vec<Value>, Vec<String>) {
    let text = std::fs::read_to_string(dir.join("test.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let mut row = serde_json::Map::new();
        for (name, cell) in header.iter().zip(line.split(',')).take(header.len() - 1) {
            let value = match (cell.parse::<f64>(), cell.is_empty()) {
                (_, true) if i % 2 == 1 => continue,
                (_, true) => Value::Null,
                (Ok(v), _) => json!(v),
                (Err(_), _) => json!(cell),
            };
            row.insert(name.clone(), value);
        }
        rows.push(Value::Object(row));
    }
    (rows, header)
}

fn metric(metrics: &str, name: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn parity(case: &str, tolerance: f64) {
    let Some((dir, expected)) = fixture(case) else {
        return;
    };
    let store = TestStore::new();
    let version = train(&store, case, &dir, &[]);
    let artifact: Value = serde_json::from_slice(
        &std::fs::read(store.path().join(case).join(&version).join("model.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(artifact["format"], "limen.model/v3");
    let prep = artifact["preprocessing"].as_array().unwrap();
    // The imputed values are scikit-learn's statistics; the categories its encoder's.
    for (column, theirs) in prep.iter().zip(expected["imputed"].as_array().unwrap()) {
        let (ours, theirs) = (column["impute"].as_f64().unwrap(), theirs.as_f64().unwrap());
        assert!(
            (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0),
            "{ours} vs {theirs}"
        );
    }
    for (column, theirs) in prep[4..]
        .iter()
        .zip(expected["categories"].as_array().unwrap())
    {
        let theirs: Vec<&Value> = theirs.as_array().unwrap().iter().collect();
        let named: Vec<&Value> = theirs.iter().copied().filter(|v| !v.is_null()).collect();
        assert_eq!(
            column["categories"]
                .as_array()
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            named
        );
        assert_eq!(column["missing"], json!(theirs.iter().any(|v| v.is_null())));
    }

    let server = Server::serve(store.path(), &["--model", case]).ready();
    let agent = http();
    let (rows, header) = instances(&dir);
    let theirs = expected["predict_proba"].as_array().unwrap();
    assert_eq!(rows.len(), theirs.len());
    assert!(rows.len() >= 500, "{} held-out rows", rows.len());
    let answer = post(
        &agent,
        &server.url("/predict"),
        &json!({ "instances": rows }).to_string(),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let predictions = answer.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(predictions.len(), theirs.len());
    let classes = expected["classes"].as_array().unwrap();
    let mut worst = 0.0f64;
    for (ours, theirs) in predictions.iter().zip(theirs) {
        for (class, q) in classes.iter().zip(theirs.as_array().unwrap()) {
            let p = ours["probabilities"][class.as_str().unwrap()]
                .as_f64()
                .unwrap();
            worst = worst.max((p - q.as_f64().unwrap()).abs());
        }
    }
    println!(
        "{case}: largest |Δp| against scikit-learn over {} rows: {worst:.2e}",
        theirs.len()
    );
    assert!(worst <= tolerance, "{case}: {worst}");

    // Every category training never saw was counted, per feature.
    let metrics = get(&agent, &server.url("/metrics")).body;
    for feature in &header[4..7] {
        let sent = rows
            .iter()
            .filter(|r| r[feature].as_str().is_some_and(|t| t.ends_with("_new")))
            .count();
        assert!(sent > 20, "{feature}: {sent}");
        let counted = metric(
            &metrics,
            "limen_unseen_category_total",
            &format!("feature=\"{feature}\",model=\"{case}\""),
        );
        assert_eq!(counted as usize, sent, "{feature}\n{metrics}");
    }
}

#[test]
fn binary_answers_match_scikit_learns_column_transformer_pipeline() {
    parity("binary", 1e-3);
}

#[test]
fn multiclass_answers_match_scikit_learns_column_transformer_pipeline() {
    parity("multiclass", 1e-2);
}

/// A string where the model takes a number is a 422 naming the feature; a body with none of
/// the model's features is refused; a number sent for a category is known by its text.
#[test]
fn wrong_types_are_refused_by_feature_name() {
    let store = TestStore::new();
    let data = store.path().join("t.csv");
    std::fs::write(
        &data,
        "size,colour,zone,y\n1,red,1,a\n2,blue,2,b\n,red,1,a\n4,,2,b\n5,blue,1,b\n0.5,red,2,a\n",
    )
    .unwrap();
    let version = store.train(&[
        "--model",
        "t",
        "--data",
        data.to_str().unwrap(),
        "--label-column",
        "y",
        "--categorical",
        "zone",
        "--holdout",
        "0",
        "--cv-folds",
        "0",
    ]);
    store.ok(&["models", "promote", "t", &version, "--no-wait"]);
    let server = Server::serve(store.path(), &["--model", "t"]).ready();
    let agent = http();
    let url = server.url("/predict");
    let bad = post(
        &agent,
        &url,
        r#"{"size": "big", "colour": "red", "zone": "1"}"#,
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("\\\"size\\\""), "{}", bad.body);
    let none = post(&agent, &url, r#"{"sise": 1}"#);
    assert_eq!(none.status, 422, "{}", none.body);
    let boolean = post(&agent, &url, r#"{"size": 1, "colour": true}"#);
    assert_eq!(boolean.status, 422, "{}", boolean.body);
    // `zone` 1 as a number and as text are one category; an absent key is a missing value.
    let as_number = post(&agent, &url, r#"{"size": 1, "colour": "red", "zone": 1}"#);
    let as_text = post(
        &agent,
        &url,
        r#"{"size": 1, "colour": "red", "zone": "1.0"}"#,
    );
    assert_eq!(
        (as_number.status, as_text.status),
        (200, 200),
        "{}",
        as_text.body
    );
    let (as_number, as_text) = (as_number.json(), as_text.json());
    assert!(as_number["probabilities"].is_object(), "{as_number}");
    assert_eq!(as_number["probabilities"], as_text["probabilities"]);
    let missing = post(&agent, &url, r#"{"colour": "red", "zone": null}"#);
    assert_eq!(missing.status, 200, "{}", missing.body);
    // curl's form content type, as typed.
    let form = std::process::Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-d",
            r#"{"size": "2.1", "colour": "green"}"#,
            &url,
        ])
        .output()
        .unwrap();
    let form: Value = serde_json::from_slice(&form.stdout).unwrap();
    assert!(form["label"].is_string(), "{form}");
}

/// A table of one number and one text column, with missing cells: `colour` decides the label
/// more than `size` does.
fn small_table() -> String {
    let colours = ["red", "blue", "green"];
    let mut text = String::from("size,colour,y\n");
    for i in 0..300u32 {
        let colour = colours[(i % 3) as usize];
        let size = f64::from(i % 17) / 4.0;
        let y = if (colour == "red") ^ (i % 7 == 0) {
            "yes"
        } else {
            "no"
        };
        let size = if i % 11 == 0 {
            String::new()
        } else {
            size.to_string()
        };
        let colour = if i % 13 == 0 { "NA" } else { colour };
        text += &format!("{size},{colour},{y}\n");
    }
    text
}

/// What a client sends is what the inference log keeps (the text of a category the model never
/// saw, `null` for a missing value), so a model retrained from the log learns the new category;
/// `limen drift` reads the same lines, with a categorical feature's PSI over its category
/// shares; `/explain` gives one contribution per original column, summing to the logit; the
/// Open Inference Protocol takes text as a BYTES input.
#[test]
fn categories_and_missing_values_go_round_the_log_drift_explain_and_oip() {
    let store = TestStore::new();
    let data = store.path().join("small.csv");
    std::fs::write(&data, small_table()).unwrap();
    let trained = store.ok(&[
        "train",
        "--model",
        "t",
        "--data",
        data.to_str().unwrap(),
        "--label-column",
        "y",
        "--holdout",
        "0",
        "--cv-folds",
        "0",
    ]);
    // The summary says which columns were read as text, and what a missing number becomes.
    assert!(
        trained.contains("preprocessing: size (missing → 2), colour (text: 3 categories)"),
        "{trained}"
    );
    let version = trained.lines().last().unwrap().trim().to_owned();
    store.ok(&["models", "promote", "t", &version, "--no-wait"]);
    let log = tempfile::tempdir().unwrap();
    let mut server = common::logging_server(&store, log.path(), "pod-a", &["--model", "t"]);
    let agent = http();
    let mut labels = String::from("request_id,y\n");
    // Production traffic has moved: mostly a colour training never saw.
    for i in 0..300u32 {
        let body = match i % 4 {
            0 => r#"{"size": 1.5, "colour": "purple"}"#.to_owned(),
            1 => r#"{"size": null, "colour": "purple"}"#.to_owned(),
            2 => r#"{"colour": "red"}"#.to_owned(),
            _ => format!(r#"{{"size": {}, "colour": "purple"}}"#, f64::from(i % 5)),
        };
        let answer = agent
            .post(&server.url("/predict"))
            .header("X-Request-Id", &format!("r{i}"))
            .send(&body)
            .unwrap();
        assert_eq!(answer.status(), 200);
        labels += &format!("r{i},{}\n", if i % 4 == 2 { "no" } else { "yes" });
    }
    // /explain: one contribution per column, summing with the baseline to the logit.
    let explained = post(
        &agent,
        &server.url("/explain"),
        r#"{"size": null, "colour": "purple"}"#,
    )
    .json();
    let parts = explained["contributions"].as_object().unwrap();
    // One per column (a JSON object's keys, in sorted order here).
    assert_eq!(parts.keys().collect::<Vec<_>>(), ["colour", "size"]);
    let sum: f64 = parts.values().map(|v| v.as_f64().unwrap()).sum();
    let logit = explained["logit"].as_f64().unwrap();
    assert!((explained["baseline_logit"].as_f64().unwrap() + sum - logit).abs() < 1e-9);
    // The Open Inference Protocol: text as BYTES, numbers as FP64; the same answer as /predict.
    let infer = post(
        &agent,
        &server.url("/v2/models/t/infer"),
        r#"{"inputs": [{"name": "size", "datatype": "FP64", "shape": [2], "data": [1.5, null]},
                       {"name": "colour", "datatype": "BYTES", "shape": [2], "data": ["red", "purple"]}]}"#,
    );
    assert_eq!(infer.status, 200, "{}", infer.body);
    let predicted = post(
        &agent,
        &server.url("/predict"),
        r#"{"instances": [{"size": 1.5, "colour": "red"}, {"size": null, "colour": "purple"}]}"#,
    )
    .json();
    let infer = infer.json();
    let probabilities = infer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "probabilities")
        .unwrap()["data"]
        .clone();
    let p_yes: Vec<f64> = predicted["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["probabilities"]["yes"].as_f64().unwrap())
        .collect();
    assert_eq!(probabilities[1].as_f64().unwrap(), p_yes[0], "{infer}");
    assert_eq!(probabilities[3].as_f64().unwrap(), p_yes[1], "{infer}");
    let metrics = get(&agent, &server.url("/metrics")).body;
    assert!(
        metric(
            &metrics,
            "limen_unseen_category_total",
            "feature=\"colour\",model=\"t\""
        ) >= 225.0,
        "{metrics}"
    );
    server.terminate();
    assert!(server.wait_exit(common::PATIENCE).success());

    // The log kept what was sent.
    let lines: Vec<Value> = common::log_files(log.path())
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .filter(|l| l["request_id"] == "r1")
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        lines[0]["features"],
        json!({"size": null, "colour": "purple"})
    );

    // Drift: the colour shares moved far, the PSI says so (exit 1 past --max-psi).
    let out = store.limen(&[
        "drift",
        "t",
        "--log",
        log.path().to_str().unwrap(),
        "--json",
        "--max-psi",
        "0.25",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let colour = report["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "colour")
        .unwrap()
        .clone();
    assert!(colour["psi"].as_f64().unwrap() > 1.0, "{report}");
    // Three in four of the /predict requests (and some of the others) sent purple.
    assert!(colour["out_of_range"].as_f64().unwrap() > 0.7, "{report}");

    // Retrained from the log joined with its labels, the model knows purple.
    let labels_file = log.path().join("labels.csv");
    std::fs::write(&labels_file, labels).unwrap();
    let retrained = store.train(&[
        "--model",
        "t2",
        "--log-model",
        "t",
        "--data",
        log.path().to_str().unwrap(),
        "--labels",
        labels_file.to_str().unwrap(),
        "--label-column",
        "y",
        "--holdout",
        "0",
        "--cv-folds",
        "0",
    ]);
    let artifact: Value = serde_json::from_slice(
        &std::fs::read(store.path().join("t2").join(&retrained).join("model.json")).unwrap(),
    )
    .unwrap();
    let at = |name: &str| {
        let features = artifact["features"].as_array().unwrap();
        features.iter().position(|f| f["name"] == name).unwrap()
    };
    let colour = &artifact["preprocessing"][at("colour")];
    assert_eq!(colour["categories"], json!(["purple", "red"]), "{colour}");
    assert_eq!(artifact["preprocessing"][at("size")]["type"], "numeric");
}
