//! limen's side of `benches/trees.sh`: rows per second of a tree model, in process, one thread,
//! batches of 1 and of 10,000 rows. Run by `benches/treebench.py`, which made the model and the
//! rows and measures the libraries on the same rows in the same run:
//!
//!     cargo bench --bench trees -- MODEL_JSON ROWS_F64 FEATURES [SECONDS]
//!
//! ROWS_F64 holds the rows as little-endian f64, FEATURES per row (NaN for a missing cell).
//! Prints one JSON line per batch size: `{"batch": 1, "rows_per_s": …}`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use limen::model::Model;
use ndarray::ArrayView2;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [model, rows, features, rest @ ..] = args.as_slice() else {
        eprintln!("usage: cargo bench --bench trees -- MODEL_JSON ROWS_F64 FEATURES [SECONDS]");
        std::process::exit(2);
    };
    let seconds: f64 = rest
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

fn report(batch: usize, rows: usize, took: Duration) {
    println!(
        "{{\"batch\": {batch}, \"rows_per_s\": {:.1}}}",
        rows as f64 / took.as_secs_f64()
    );
}
