//! `limen train --standardize` on two public tables other than Iris (scikit-learn's breast cancer:
//! 569 rows × 30 features, binary; wine: 178 × 13, three classes) gives, for every row, the
//! probabilities of scikit-learn's `make_pipeline(StandardScaler(), LogisticRegression(C=1))`
//! fully converged: within 1e-3 (binary) and 1e-2 (multinomial). Goldens from
//! `scripts/sklearn_golden.py`. The model is trained and scored through the library, the same
//! code `limen train` and the server run.

mod common;

use limen::data::Dataset;
use limen::model::Model;
use limen::train::{train, Objective, TrainParams};

struct Golden {
    features: Vec<String>,
    label_column: String,
    positive: Option<String>,
    classes: Vec<String>,
    proba: Vec<Vec<f64>>,
}

fn golden(table: &str) -> Golden {
    let path = common::repo().join(format!("tests/golden/sklearn_{table}.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let strings = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    Golden {
        features: strings("features"),
        label_column: v["label_column"].as_str().unwrap().to_owned(),
        positive: v["positive"].as_str().map(str::to_owned),
        classes: strings("classes"),
        proba: v["predict_proba"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_f64().unwrap())
                    .collect()
            })
            .collect(),
    }
}

/// Trains on `table` as `limen train --standardize` would, and returns the largest difference
/// from scikit-learn's probability of any class on any row.
fn largest_difference(table: &str, standardize: bool) -> (f64, Model) {
    let g = golden(table);
    let path = common::repo().join(format!("data/{table}.csv"));
    let data = Dataset::load(&path, &g.features, &g.label_column).unwrap();
    let objective = match &g.positive {
        Some(positive) => Objective::OneVsRest {
            positive: positive.clone(),
        },
        None => Objective::Multiclass,
    };
    // scikit-learn's C=1 (alpha 1), limen's default iterations and tolerance; no CV (not compared).
    let params = TrainParams::new(
        objective,
        TrainParams::DEFAULT_ALPHA,
        TrainParams::DEFAULT_MAX_ITER,
        TrainParams::DEFAULT_GRADIENT_TOLERANCE,
        0,
    )
    .unwrap()
    .standardized(standardize);
    let trained = train(&data, &params).unwrap();
    let model = Model::new(trained.artifact(table, 1, "2026-11-28T00:00:00Z")).unwrap();
    assert_eq!(model.classes(), g.classes.as_slice());
    let mut worst = 0.0f64;
    for (i, row) in data.x.rows().into_iter().enumerate() {
        let p = model.predict(&row.to_vec()).unwrap().probabilities;
        for (ours, theirs) in p.iter().zip(&g.proba[i]) {
            worst = worst.max((ours - theirs).abs());
        }
    }
    (worst, model)
}

#[test]
fn standardized_fits_match_scikit_learn_on_public_tables() {
    let (binary, model) = largest_difference("breast_cancer", true);
    eprintln!("breast cancer, --standardize: largest |Δp| {binary:.2e}");
    assert!(binary < 1e-3, "binary: {binary}");
    let m = &model.artifact().metrics;
    assert_eq!(m.converged, Some(true));
    assert!(m.iterations.unwrap() < 100, "{:?}", m.iterations);
    assert!(model.artifact().scaler.is_some());

    let (multinomial, model) = largest_difference("wine", true);
    eprintln!("wine, --standardize: largest |Δp| {multinomial:.2e}");
    assert!(multinomial < 1e-2, "multinomial: {multinomial}");
    assert_eq!(model.artifact().metrics.converged, Some(true));
}

#[test]
fn unscaled_fits_of_the_same_tables_are_flagged_as_unconverged() {
    for table in ["breast_cancer", "wine"] {
        let (difference, model) = largest_difference(table, false);
        let m = &model.artifact().metrics;
        eprintln!(
            "{table}, unscaled: converged {:?} after {:?} iterations, gradient norm {:?}, largest |Δp| from scikit-learn's standardized fit {difference:.2}",
            m.converged, m.iterations, m.gradient_norm
        );
        assert_eq!(m.converged, Some(false), "{table}");
        assert_eq!(m.iterations, Some(100), "{table}");
        assert!(m.gradient_norm.unwrap() > 1e-4, "{table}");
    }
}
