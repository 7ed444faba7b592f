//! `limen train --class-weight balanced` on imbalanced tables (binary, 8 % positive; three classes,
//! 70/22/8 %) gives, on every held-out row, the probabilities of scikit-learn's
//! `make_pipeline(StandardScaler(), LogisticRegression(C=1, class_weight="balanced"))` within
//! 1e-3; without the flag, those of the unweighted pipeline. Tables and answers are made by
//! `scripts/tree_fixtures.py` in CI's pinned venv. Trained by the binary into a temp store; the
//! artifact it wrote is scored by the library code every route uses.

mod common;

use common::{tree_fixtures, TestStore};
use limen::model::Model;

/// Trains `case` with `extra` flags and returns the largest |Δp| from `expected[key]` over every
/// held-out row and class, and the artifact.
fn largest_difference(case: &str, extra: &[&str], key: &str) -> Option<(f64, serde_json::Value)> {
    let dir = tree_fixtures()?.join("class_weight").join(case);
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let store = TestStore::new();
    let mut args = vec![
        "--model",
        case,
        "--data",
        dir.join("train.csv").to_str().unwrap().to_owned().leak(),
        "--label-column",
        expected["label"].as_str().unwrap(),
        "--standardize",
        "--holdout",
        "0",
        "--cv-folds",
        "0",
    ];
    args.extend_from_slice(extra);
    let version = store.train(&args);
    let bytes = std::fs::read(store.path().join(case).join(&version).join("model.json")).unwrap();
    let model = Model::from_json_bytes(&bytes).unwrap();
    let classes: Vec<&str> = expected["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(model.classes(), classes.as_slice());
    let test = std::fs::read_to_string(dir.join("test.csv")).unwrap();
    let theirs_rows = expected[key].as_array().unwrap();
    // Every held-out row is compared: none left out by a short file or a short answer.
    assert_eq!(test.lines().skip(1).count(), theirs_rows.len());
    assert!(
        theirs_rows.len() >= 100,
        "{} held-out rows",
        theirs_rows.len()
    );
    let mut worst = 0.0f64;
    for (line, theirs) in test.lines().skip(1).zip(theirs_rows) {
        let cells: Vec<f64> = line.split(',').map_while(|c| c.parse().ok()).collect();
        assert_eq!(cells.len(), 4, "{line}");
        let ours = model.predict(&cells).unwrap().probabilities;
        for (p, q) in ours.iter().zip(theirs.as_array().unwrap()) {
            worst = worst.max((p - q.as_f64().unwrap()).abs());
        }
    }
    let artifact = serde_json::from_slice(&bytes).unwrap();
    Some((worst, artifact))
}

#[test]
fn balanced_class_weights_match_scikit_learn_on_held_out_rows() {
    for case in ["binary", "multiclass"] {
        let Some((weighted, artifact)) =
            largest_difference(case, &["--class-weight", "balanced"], "predict_proba")
        else {
            return;
        };
        eprintln!("{case}, class_weight balanced: largest |Δp| {weighted:.2e}");
        assert!(weighted < 1e-3, "{case}: {weighted}");
        let h = &artifact["provenance"]["hyperparameters"];
        assert_eq!(h["class_weight"], "balanced", "{h}");
        assert_eq!(artifact["metrics"]["converged"], true);

        let (plain, artifact) = largest_difference(case, &[], "unweighted_predict_proba").unwrap();
        eprintln!("{case}, unweighted: largest |Δp| {plain:.2e}");
        assert!(plain < 1e-3, "{case}: {plain}");
        assert!(artifact["provenance"]["hyperparameters"]
            .get("class_weight")
            .is_none());
    }
}

#[test]
fn balanced_weights_raise_the_minority_class_recall() {
    let Some(dir) = tree_fixtures() else { return };
    let data = dir.join("class_weight/binary/train.csv");
    let store = TestStore::new();
    let recall = |extra: &[&str]| -> f64 {
        let mut args = vec![
            "--model",
            "churn",
            "--data",
            data.to_str().unwrap(),
            "--label-column",
            "outcome",
            "--target",
            "churn",
            "--standardize",
            "--cv-folds",
            "0",
        ];
        args.extend_from_slice(extra);
        let version = store.train(&args);
        let artifact: serde_json::Value = serde_json::from_slice(
            &std::fs::read(store.path().join("churn").join(version).join("model.json")).unwrap(),
        )
        .unwrap();
        let holdout = &artifact["metrics"]["holdout"];
        let churn = holdout["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["class"] == "churn")
            .unwrap_or_else(|| panic!("no churn class in {holdout}"));
        churn["recall"].as_f64().unwrap()
    };
    let plain = recall(&[]);
    let balanced = recall(&["--class-weight", "balanced"]);
    eprintln!("hold-out recall of churn: unweighted {plain:.3}, balanced {balanced:.3}");
    assert!(balanced > plain + 0.2, "{plain} → {balanced}");
}

#[test]
fn class_weights_are_refused_for_a_forest_naming_the_flag() {
    let store = TestStore::new();
    let out = store.limen(&[
        "train",
        "--kind",
        "random-forest",
        "--class-weight",
        "balanced",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--class-weight"), "{err}");
}
