//! Black-box tests of many models in one store: per-model routes, pinned versions, the
//! `limen models` commands (list, show, promote, rollback, gc) and URL validation.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use common::{eventually, get, http, post, stderr, Server, TestStore, FOUR, PATIENCE};

const SPECIES_BODY: &str =
    r#"{"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}"#;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn history(store: &TestStore, model: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(store.path().join(model).join("history.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(json)
        .collect()
}

#[test]
fn multiclass_model_matches_scikit_learn_on_every_training_row() {
    let golden = json(
        &std::fs::read_to_string(common::repo().join("tests/golden/sklearn_iris_multinomial.json"))
            .unwrap(),
    );
    let store = TestStore::new();
    // Every row, as scikit-learn's golden fit.
    let version = store.train(&[
        "--model",
        "iris-species",
        "--multiclass",
        "--features",
        FOUR,
        "--holdout",
        "0",
    ]);
    let model = json(
        &std::fs::read_to_string(
            store
                .path()
                .join(format!("iris-species/{version}/model.json")),
        )
        .unwrap(),
    );
    assert!(model["metrics"]["train_accuracy"].as_f64().unwrap() >= 0.97);
    assert_eq!(model["classes"], golden["classes"]);

    // Score every training row through `limen predict` (stdin JSON), as a client would.
    let data = std::fs::read_to_string(common::repo().join("data/iris.csv")).unwrap();
    let rows: Vec<&str> = data.lines().skip(1).collect();
    let expected = golden["predict_proba"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    let instances: Vec<serde_json::Value> = rows
        .iter()
        .map(|line| {
            let cells: Vec<f64> = line
                .split(',')
                .take(4)
                .map(|c| c.parse().unwrap())
                .collect();
            serde_json::json!({
                "sepal_length": cells[0], "sepal_width": cells[1],
                "petal_length": cells[2], "petal_width": cells[3],
            })
        })
        .collect();
    let mut child = common::limen_command()
        .arg("--store")
        .arg(store.path())
        .args(["predict", "--model", "iris-species", "--version", &version])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let body = serde_json::json!({ "instances": instances }).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let answer = json(&String::from_utf8(out.stdout).unwrap());
    let mut worst: f64 = 0.0;
    for (i, (got, want)) in answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(expected)
        .enumerate()
    {
        for (j, class) in golden["classes"].as_array().unwrap().iter().enumerate() {
            let g = got["probabilities"][class.as_str().unwrap()]
                .as_f64()
                .unwrap();
            let w = want[j].as_f64().unwrap();
            worst = worst.max((g - w).abs());
            assert!(
                (g - w).abs() < 1e-2,
                "row {i} {class}: limen {g}, scikit-learn {w}"
            );
        }
    }
    eprintln!("largest probability difference from scikit-learn: {worst:.2e}");
}

#[test]
fn two_models_are_served_side_by_side() {
    let store = TestStore::new();
    let iris = store.promote_iris();
    let species = store.promote_species();
    let server = Server::serve(store.path(), &[]).ready();
    let agent = http();

    let default = post(&agent, &server.url("/predict"), r#"{"petal_width": 2.1}"#);
    let named = post(
        &agent,
        &server.url("/models/iris/predict"),
        r#"{"petal_width": 2.1}"#,
    );
    assert_eq!(default.body, named.body);
    assert_eq!(named.version_header.as_deref(), Some(iris.as_str()));

    let answer = eventually(PATIENCE, "iris-species to load", || {
        let a = post(
            &agent,
            &server.url("/models/iris-species/predict"),
            SPECIES_BODY,
        );
        (a.status == 200).then_some(a)
    });
    assert_eq!(answer.version_header.as_deref(), Some(species.as_str()));
    let body = answer.json();
    assert_eq!(body["label"], "virginica");
    assert_eq!(body["probabilities"].as_object().unwrap().len(), 3);
    assert!(body.get("result").is_none());

    let batch = post(
        &agent,
        &server.url("/models/iris-species/predict"),
        &format!(r#"{{"instances": [{SPECIES_BODY}, {SPECIES_BODY}]}}"#),
    );
    assert_eq!(batch.json()["predictions"].as_array().unwrap().len(), 2);

    // The iris model's features do not fit iris-species: a 422 that names the missing ones.
    let wrong = post(
        &agent,
        &server.url("/models/iris-species/predict"),
        r#"{"petal_width": 2.1}"#,
    );
    assert_eq!(wrong.status, 422);
    assert!(wrong.json()["error"]
        .as_str()
        .unwrap()
        .contains("sepal_length"));

    let detail = get(&agent, &server.url("/models/iris-species")).json();
    assert_eq!(detail["kind"], "multinomial_logistic");
    assert_eq!(
        detail["classes"],
        serde_json::json!(["setosa", "versicolor", "virginica"])
    );
    assert_eq!(detail["features"][2]["name"], "petal_length");
    assert_eq!(detail["features"][2]["min"], 1.0);
    assert_eq!(detail["features"][2]["max"], 6.9);
    assert_eq!(detail["production"].to_string(), species);
    assert_eq!(detail["loaded"].to_string(), species);
    assert_eq!(
        detail["versions"],
        serde_json::json!([species.parse::<u64>().unwrap()])
    );
    assert!(detail["metrics"]["train_accuracy"].as_f64().unwrap() >= 0.97);
    assert!(detail["last_error"].is_null());

    let all = get(&agent, &server.url("/models")).json();
    let names: Vec<&str> = all["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["iris", "iris-species"]);
    assert_eq!(get(&agent, &server.url("/models/nosuch")).status, 404);
    assert_eq!(
        post(&agent, &server.url("/models/nosuch/predict"), "{}").status,
        404
    );
}

#[test]
fn a_client_can_pin_any_version_on_disk() {
    let store = TestStore::new();
    let old = store.promote_iris();
    let new = store.promote_iris();
    let server = Server::serve(store.path(), &[]).ready();
    let agent = http();
    let pinned = |v: &str| {
        post(
            &agent,
            &server.url(&format!("/models/iris/versions/{v}/predict")),
            r#"{"petal_width": 2.1}"#,
        )
    };

    for v in [&old, &new] {
        let a = pinned(v);
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.version_header.as_deref(), Some(v.as_str()));
        assert_eq!(a.json()["version"], v.as_str());
    }
    assert_eq!(
        post(&agent, &server.url("/predict"), r#"{"petal_width": 2.1}"#).version_header,
        Some(new.clone())
    );

    let missing = (new.parse::<u64>().unwrap() + 1000).to_string();
    let a = pinned(&missing);
    assert_eq!(a.status, 404);
    assert!(a.json()["error"].as_str().unwrap().contains(&missing));

    // A corrupt version on disk is a clear 503, not a 500.
    let corrupt = (new.parse::<u64>().unwrap() + 1).to_string();
    std::fs::create_dir(store.path().join(format!("iris/{corrupt}"))).unwrap();
    std::fs::write(
        store.path().join(format!("iris/{corrupt}/model.json")),
        "{\"format\": \"limen.model/v1\", ",
    )
    .unwrap();
    let a = pinned(&corrupt);
    assert_eq!(a.status, 503, "{}", a.body);
    let error = a.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains(&corrupt) && error.contains("not valid JSON"),
        "{error}"
    );

    for bad in ["abc", "0", "-1", "1.5", "99999999999999999999999"] {
        assert_eq!(pinned(bad).status, 400, "version {bad}");
    }
}

#[test]
fn urls_cannot_reach_outside_the_store() {
    let parent = TestStore::new();
    let store_dir = parent.path().join("store");
    std::fs::create_dir(&store_dir).unwrap();
    let store = TestStore {
        dir: tempfile::tempdir_in(&store_dir).unwrap(),
    };
    store.promote_iris();
    // A complete model beside the store: reachable only by escaping it.
    let outside = TestStore {
        dir: tempfile::tempdir_in(parent.path()).unwrap(),
    };
    outside.promote("secret", &[]);
    let escape = format!(
        "..%2F{}%2Fsecret",
        outside.path().file_name().unwrap().to_string_lossy()
    );

    let server = Server::serve(store.path(), &[]).ready();
    let long = "a".repeat(65);
    let cases: Vec<(String, &str)> = vec![
        ("/models/../predict".into(), "POST"),
        ("/models/%2e%2e/predict".into(), "POST"),
        ("/models/%2E%2E%2Fetc/predict".into(), "POST"),
        (format!("/models/{escape}/predict"), "POST"),
        ("/models/%2Fetc%2Fpasswd/predict".into(), "POST"),
        ("/models//predict".into(), "POST"),
        ("/models/.hidden/predict".into(), "POST"),
        ("/models/Iris/predict".into(), "POST"),
        (format!("/models/{long}/predict"), "POST"),
        (
            "/models/iris/versions/..%2F..%2Fsecret/predict".into(),
            "POST",
        ),
        ("/models/iris/versions/%2e%2e/predict".into(), "POST"),
        ("/models/%2e%2e".into(), "GET"),
        (format!("/models/{escape}"), "GET"),
        ("/models/..%2F..%2F..%2Fetc".into(), "GET"),
    ];
    for (path, method) in &cases {
        // Raw requests: curl and HTTP libraries would normalise the dots away.
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let body = r#"{"petal_width": 2.1}"#;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        let status = &response[9..12];
        assert!(
            status == "400" || status == "404",
            "{method} {path}: {response}"
        );
        assert!(
            response.contains("{\"error\":"),
            "{method} {path}: {response}"
        );
    }
}

#[test]
fn rollback_walks_back_through_the_history_and_refuses_when_it_cannot() {
    let store = TestStore::new();
    let out = store.limen(&["models", "rollback", "iris"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no model at all is an error: {}",
        stderr(&out)
    );

    let v1 = store.train(&["--cv-folds", "0"]);
    let out = store.limen(&["models", "rollback", "iris"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no production version"),
        "{}",
        stderr(&out)
    );

    store.ok(&["validate"]);
    let out = store.limen(&["models", "rollback", "iris"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nothing earlier"), "{}", stderr(&out));

    let v2 = store.promote_iris();
    let v3 = store.promote_iris();
    let change = json(&store.ok(&["models", "rollback", "iris", "--json"]));
    assert_eq!(change["from"].to_string(), v3);
    assert_eq!(change["to"].to_string(), v2);
    assert_eq!(store.pointer("iris", "production"), Some(v2.clone()));
    store.ok(&["models", "rollback", "iris"]);
    assert_eq!(store.pointer("iris", "production"), Some(v1.clone()));
    let out = store.limen(&["models", "rollback", "iris"]);
    assert_eq!(out.status.code(), Some(1), "v1 was the first production");

    let last = history(&store, "iris").pop().unwrap();
    assert_eq!(last["action"], "rollback");
    assert_eq!(last["version"].to_string(), v1);
    assert_eq!(last["previous"].to_string(), v2);
    assert!(!last["user"].as_str().unwrap().is_empty());
    assert!(!last["host"].as_str().unwrap().is_empty());
    assert!(last["command"]
        .as_str()
        .unwrap()
        .contains("models rollback iris"));

    // Promote by hand: integrity is checked first; a missing or corrupt version is refused.
    let text = store.ok(&["models", "promote", "iris", &v3]);
    assert!(text.contains(&format!("-> {v3}")), "{text}");
    assert_eq!(store.pointer("iris", "production"), Some(v3.clone()));
    let out = store.limen(&["models", "promote", "iris", "12345"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no version 12345"),
        "{}",
        stderr(&out)
    );
    let file = store.path().join(format!("iris/{v2}/model.json"));
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, original.replacen("0.", "1.", 1)).unwrap();
    let out = store.limen(&["models", "promote", "iris", &v2]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("checksum"), "{}", stderr(&out));
    assert_eq!(store.pointer("iris", "production"), Some(v3.clone()));

    // A pointer moved behind the history's back: rollback refuses rather than guess.
    std::fs::write(store.path().join("iris/production"), format!("{v1}\n")).unwrap();
    let out = store.limen(&["models", "rollback", "iris"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("changed outside limen"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn gc_keeps_production_candidate_and_recent_history_and_deletes_the_rest() {
    let store = TestStore::new();
    let v1 = store.promote_iris();
    let v2 = store.promote_iris();
    let v3 = store.promote_iris();
    let orphan = store.train(&["--cv-folds", "0"]);
    let candidate = store.train(&["--cv-folds", "0"]);
    // Leftovers of a killed writer.
    std::fs::create_dir(store.path().join("iris/.publish-dead")).unwrap();
    std::fs::write(store.path().join("iris/.pointer-dead"), "1").unwrap();

    let dry = json(&store.ok(&[
        "models",
        "gc",
        "iris",
        "--keep",
        "2",
        "--dry-run",
        "--temp-age",
        "0s",
        "--json",
    ]));
    let deleted: Vec<String> = dry["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(deleted, vec![v1.clone(), orphan.clone()]);
    assert_eq!(
        dry["kept"][&v3],
        serde_json::json!(["production", "in recent history"])
    );
    assert_eq!(
        dry["kept"][&v2],
        serde_json::json!(["in recent history", "rollback target"])
    );
    assert_eq!(dry["kept"][&candidate], serde_json::json!(["candidate"]));
    assert_eq!(dry["temporaries"].as_array().unwrap().len(), 2);
    assert!(
        store.path().join(format!("iris/{v1}")).exists(),
        "a dry run deletes nothing"
    );

    let before = history(&store, "iris").len();
    store.ok(&["models", "gc", "iris", "--keep", "2", "--temp-age", "0s"]);
    let listing = store.listing();
    assert!(
        !listing
            .iter()
            .any(|p| p.contains(&v1) || p.contains(&orphan) || p.contains("dead")),
        "{listing:?}"
    );
    for kept in [&v2, &v3, &candidate] {
        assert!(store
            .path()
            .join(format!("iris/{kept}/model.json"))
            .exists());
    }
    let after = history(&store, "iris");
    assert_eq!(after.len(), before + 1);
    assert_eq!(after.last().unwrap()["action"], "gc");

    // Nothing left to delete: no history line either.
    store.ok(&["models", "gc", "iris", "--keep", "2"]);
    assert_eq!(history(&store, "iris").len(), before + 1);

    let list = json(&store.ok(&["models", "list", "--json"]));
    assert_eq!(list[0]["name"], "iris");
    assert_eq!(list[0]["versions"], 3);
    assert_eq!(list[0]["production"].to_string(), v3);
    let table = store.ok(&["models", "list"]);
    assert!(table.contains("iris") && table.contains(&v3), "{table}");
    let show = json(&store.ok(&["models", "show", "iris", "--json"]));
    assert_eq!(show["model"]["features"][0]["name"], "petal_width");
    assert_eq!(show["history"].as_array().unwrap().len(), before + 1);
}

#[test]
fn models_appear_and_disappear_while_serving() {
    let store = TestStore::new();
    store.promote_iris();
    let server = Server::serve(store.path(), &["--poll-interval", "200ms"]).ready();
    let agent = http();
    let url = server.url("/models/iris-species/predict");
    assert_eq!(post(&agent, &url, SPECIES_BODY).status, 404);

    store.promote_species();
    eventually(PATIENCE, "the new model to be served", || {
        (post(&agent, &url, SPECIES_BODY).status == 200).then_some(())
    });

    std::fs::remove_dir_all(store.path().join("iris-species")).unwrap();
    eventually(PATIENCE, "the deleted model to stop being served", || {
        (post(&agent, &url, SPECIES_BODY).status == 404).then_some(())
    });
    // The other model never noticed.
    assert_eq!(
        post(&agent, &server.url("/predict"), r#"{"petal_width": 1}"#).status,
        200
    );
}

/// `limen validate` killed between writing `production` and appending its history line leaves a
/// production version without a line; the next promotion names it as `previous`.
#[test]
fn a_promotion_whose_history_line_was_lost_is_kept_and_rolled_back_to() {
    let store = TestStore::new();
    let v1 = store.promote_iris();
    let v2 = store.train(&["--cv-folds", "0"]);
    std::fs::write(store.path().join("iris/production"), format!("{v2}\n")).unwrap();
    let v3 = store.promote_iris();
    let last = history(&store, "iris").pop().unwrap();
    assert_eq!(last["previous"].to_string(), v2);
    assert_eq!(last["version"].to_string(), v3);

    store.ok(&["models", "gc", "iris", "--keep", "1"]);
    assert!(
        store.path().join(format!("iris/{v2}/model.json")).exists(),
        "gc deleted a former production"
    );
    assert!(!store.path().join(format!("iris/{v1}")).exists());
    store.ok(&["models", "rollback", "iris"]);
    assert_eq!(store.pointer("iris", "production"), Some(v2));
}
