//! Criterion benchmarks of the model and the `/predict` codec, in process (no HTTP):
//! one row and batches of 1,000 for the binary and the three-species models, the body decode +
//! predict + encode of `/predict`, and loading and verifying a `model.json`.
//!
//!     cargo bench --bench predict

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use limen::api::{self, Template};
use limen::data::Dataset;
use limen::model::Model;
use limen::train::{self, Objective, TrainParams};
use ndarray::Array2;

fn trained(features: &[&str], objective: Objective) -> Model {
    let features: Vec<String> = features.iter().map(|s| s.to_string()).collect();
    let data = Dataset::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/iris.csv"),
        &features,
        "species",
    )
    .expect("data/iris.csv");
    let params = TrainParams::new(objective, 1.0, 100, 1e-4, 0).expect("valid params");
    let artifact = train::train(&data, &params).expect("training").artifact(
        "bench",
        1,
        "2026-01-01T00:00:00Z",
    );
    Model::from_json_bytes(&artifact.to_json_bytes()).expect("a valid model")
}

fn models() -> [(&'static str, Model); 2] {
    [
        (
            "binary",
            trained(
                &["petal_width"],
                Objective::OneVsRest {
                    positive: "virginica".into(),
                },
            ),
        ),
        (
            "multinomial",
            trained(
                &["sepal_length", "sepal_width", "petal_length", "petal_width"],
                Objective::Multiclass,
            ),
        ),
    ]
}

fn rows(model: &Model, n: usize) -> Array2<f64> {
    let f = model.feature_names().len();
    Array2::from_shape_fn((n, f), |(i, j)| 0.1 + ((i * 7 + j * 3) % 60) as f64 * 0.1)
}

fn bench_predict(c: &mut Criterion) {
    for (kind, model) in models() {
        let one = rows(&model, 1);
        let row = one.row(0).to_vec();
        let mut buf = Vec::new();
        c.bench_function(&format!("predict 1 row ({kind})"), |b| {
            b.iter(|| model.predict_into(black_box(&row), &mut buf).unwrap())
        });
        let batch = rows(&model, 1000);
        let mut group = c.benchmark_group(format!("predict batch ({kind})"));
        group.throughput(Throughput::Elements(1000));
        group.bench_function("1000 rows", |b| {
            b.iter(|| model.predict_batch(black_box(batch.view())).unwrap())
        });
        group.bench_function("1000 rows, one by one", |b| {
            b.iter(|| {
                for r in batch.rows() {
                    black_box(model.predict_into(r.as_slice().unwrap(), &mut buf).unwrap());
                }
            })
        });
        group.finish();
    }
}

fn bench_codec(c: &mut Criterion) {
    let [(_, binary), (_, multinomial)] = models();
    let template = Template::new(&binary);
    let seed = br#"{"petal_width": "2.1"}"#;
    c.bench_function(
        "/predict body: decode + predict + encode (seed request)",
        |b| b.iter(|| api::answer(&binary, &template, black_box(seed)).unwrap()),
    );
    let batch: Vec<u8> = serde_json::to_vec(&serde_json::json!({
        "instances": (0..100).map(|i| serde_json::json!({"petal_width": 0.1 + 0.024 * i as f64})).collect::<Vec<_>>()
    }))
    .unwrap();
    let mut group = c.benchmark_group("/predict body, batch of 100");
    group.throughput(Throughput::Elements(100));
    group.bench_function("decode + predict + encode", |b| {
        b.iter(|| api::answer(&binary, &template, black_box(&batch)).unwrap())
    });
    group.finish();
    let template = Template::new(&multinomial);
    let four =
        br#"{"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}"#;
    c.bench_function(
        "/predict body: decode + predict + encode (4 features, 3 classes)",
        |b| b.iter(|| api::answer(&multinomial, &template, black_box(four)).unwrap()),
    );
}

fn bench_load(c: &mut Criterion) {
    for (kind, model) in models() {
        let bytes = model.artifact().to_json_bytes();
        c.bench_function(
            &format!("load + verify model.json ({kind}, {} bytes)", bytes.len()),
            |b| b.iter(|| Model::from_json_bytes(black_box(&bytes)).unwrap()),
        );
        c.bench_function(&format!("warm-up self-test ({kind})"), |b| {
            b.iter(|| model.self_test().unwrap())
        });
    }
}

/// The inference log writer's work per logged request: re-score the row and format its line
/// (the budget: at least 50,000 lines a second on one core).
fn bench_inference_log(c: &mut Criterion) {
    use limen::inference_log::{Formatter, Record};
    use limen::registry::LoadedModel;
    use std::sync::Arc;
    let metrics = limen::telemetry::Metrics::new();
    let mut group = c.benchmark_group("inference_log");
    for (name, model) in models() {
        let handles = metrics.model_handles("bench", "1", model.feature_names(), &[]);
        let version = limen::store::VersionId::try_from(1).expect("1 is a version");
        let loaded = Arc::new(LoadedModel::new(model, version, handles, None));
        let row: Vec<f64> = loaded
            .model
            .artifact()
            .features
            .iter()
            .map(|f| f.stats.mean)
            .collect();
        let mut out = limen::inference_log::Chunk {
            bytes: Vec::with_capacity(4096),
            lines: 0,
        };
        // One formatter across iterations, as the writer keeps one.
        let mut formatter = Formatter::default();
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("format one line, {name}"), |b| {
            b.iter(|| {
                let record = Record {
                    production: Arc::clone(&loaded),
                    candidate: None,
                    request_id: "0123456789abcdef0123456789abcdef".to_owned(),
                    route: "/predict",
                    rows: row.clone(),
                    unseen: Vec::new(),
                    batch: false,
                    status: 200,
                    error: None,
                    at: std::time::SystemTime::now(),
                };
                out.bytes.clear();
                formatter.format(black_box(&record), &mut out, &mut |_| {});
                black_box(out.lines)
            })
        });
    }
    // Made on the request path for every request while the log is on.
    group.bench_function("new request id", |b| {
        b.iter(limen::inference_log::new_request_id)
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_predict,
    bench_codec,
    bench_load,
    bench_inference_log
);
criterion_main!(benches);
