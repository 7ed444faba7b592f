//! limen's side of `benches/trees.sh`: rows per second of a tree model, in process, one thread,
//! batches of 1 and of 10,000 rows. Run by `benches/treebench.py`, which made the model and the
//! rows and measures the libraries on the same rows in the same run:
//!
//!     cargo bench --bench trees -- MODEL_JSON ROWS_F64 FEATURES [SECONDS]
//!
//! ROWS_F64 holds the rows as little-endian f64, FEATURES per row (NaN for a missing cell).
//! Prints one JSON line per batch size: `{"batch": 1, "rows_per_s": …}`. Without arguments (as
//! `cargo test --all-targets` runs it) it measures a small random forest on Iris for a moment.

use std::hint::black_box;
use std::time::{Duration, Instant};

use limen::model::Model;
use ndarray::ArrayView2;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (model, values, p, seconds) = match args.as_slice() {
        [] => iris_forest(),
        [model, rows, features, rest @ ..] => {
            let seconds = rest
                .first()
                .map_or(2.0, |s| s.parse().expect("SECONDS is a number"));
            let bytes = std::fs::read(model).expect("the model file");
            let model = Model::from_json_bytes(&bytes).expect("a valid limen model.json");
            let p: usize = features.parse().expect("FEATURES is a count");
            let raw = std::fs::read(rows).expect("the rows file");
            let values: Vec<f64> = raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            (model, values, p, seconds)
        }
        _ => {
            eprintln!("usage: cargo bench --bench trees -- MODEL_JSON ROWS_F64 FEATURES [SECONDS]");
            std::process::exit(2);
        }
    };
    let n = values.len() / p;
    let all = ArrayView2::from_shape((n, p), &values[..n * p]).expect("rows × features");
    let budget = Duration::from_secs_f64(seconds);

    // Batch of 1: one row per call, cycling through the rows.
    let mut out = Vec::new();
    let (mut done, start) = (0usize, Instant::now());
    while start.elapsed() < budget {
        for row in all.rows().into_iter().take(1000) {
            let row = row.as_slice().expect("rows are contiguous");
            black_box(
                model
                    .predict_into(black_box(row), &mut out)
                    .expect("scored"),
            );
        }
        done += n.min(1000);
    }
    report(1, done, start.elapsed());

    // Batches of 10,000 rows (the rows repeated to fill one when there are fewer).
    let batch: Vec<f64> = values.iter().copied().cycle().take(10_000 * p).collect();
    let batch = ArrayView2::from_shape((10_000, p), &batch).expect("10,000 × features");
    let (mut done, start) = (0usize, Instant::now());
    while start.elapsed() < budget {
        black_box(model.predict_batch(black_box(batch)).expect("scored"));
        done += 10_000;
    }
    report(10_000, done, start.elapsed());
}

/// A 20-tree forest on Iris's four features and its rows, for a short run.
fn iris_forest() -> (Model, Vec<f64>, usize, f64) {
    use limen::train::{self, Objective, TrainParams};
    let features: Vec<String> = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/iris.csv");
    let data = limen::data::Dataset::load(&path, &features, "species").expect("data/iris.csv");
    let forest = limen::forest::params(20, None, None, 0).expect("valid forest");
    let params = TrainParams::new(Objective::Multiclass, 1.0, 100, 1e-4, 0)
        .and_then(|p| p.random_forest(forest))
        .expect("valid params");
    let artifact = train::train(&data, &params).expect("training").artifact(
        "bench",
        1,
        "2026-01-01T00:00:00Z",
    );
    let model = Model::from_json_bytes(&artifact.to_json_bytes()).expect("a valid model");
    let values = data.x.iter().copied().collect();
    (model, values, 4, 0.05)
}

fn report(batch: usize, rows: usize, took: Duration) {
    println!(
        "{{\"batch\": {batch}, \"rows_per_s\": {:.1}}}",
        rows as f64 / took.as_secs_f64()
    );
}
