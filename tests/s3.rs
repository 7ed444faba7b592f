//! Tables, labels and inference logs in S3 and Parquet, black-box: each test starts its own
//! S3-compatible server (moto's, from the pinned venv `target/s3-venv`, tests/s3/requirements.txt)
//! on a kernel-picked loopback port, uploads files over real HTTP, and runs the real binary with
//! the standard AWS variables pointing at it, so the requests go through limen's own S3 client.
//! The Parquet files are written by pyarrow (tests/s3/tables.py), never by limen.
//!
//! Outside CI, with no venv, the tests say so and skip; CI sets `LIMEN_REQUIRE_S3=1`.

mod common;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{http, limen_command, stderr, TestStore, PATIENCE};

/// The venv with moto and pyarrow, or `None` (skip) when it was not made here.
fn venv() -> Option<PathBuf> {
    let venv = common::repo().join("target/s3-venv");
    if venv.join("bin/moto_server").is_file() {
        return Some(venv);
    }
    assert!(
        std::env::var_os("LIMEN_REQUIRE_S3").is_none(),
        "no S3 test venv in {}: make it from tests/s3/requirements.txt",
        venv.display()
    );
    eprintln!(
        "skipped: no {} (python3 -m venv target/s3-venv && target/s3-venv/bin/pip install -r tests/s3/requirements.txt)",
        venv.display()
    );
    None
}

/// A moto S3 server on 127.0.0.1, killed when dropped, and the tables pyarrow wrote.
struct S3 {
    child: Child,
    endpoint: String,
    tables: tempfile::TempDir,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    fn start() -> Option<Self> {
        let venv = venv()?;
        let mut child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        let err = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("http://127.0.0.1:") {
                    let _ = tx.send(line[at..].trim().to_owned());
                }
            }
        });
        let endpoint = rx
            .recv_timeout(PATIENCE * 3)
            .expect("moto_server did not print its address in time");
        let tables = tempfile::tempdir().unwrap();
        let made = Command::new(venv.join("bin/python"))
            .arg(common::repo().join("tests/s3/tables.py"))
            .arg(tables.path())
            .status()
            .expect("run tests/s3/tables.py");
        assert!(made.success());
        let s3 = S3 {
            child,
            endpoint,
            tables,
        };
        s3.upload_all(&[]);
        Some(s3)
    }

    /// Uploads `file` as `tables/key`, with boto3 (tests/s3/put.py).
    fn upload(&self, key: &str, file: &Path) {
        self.upload_all(&[(key, file)]);
    }

    /// Uploads each `(key, file)` into bucket `tables` (made if absent), in one boto3 run.
    fn upload_all(&self, files: &[(&str, &Path)]) {
        let venv = venv().expect("the venv this server came from");
        let mut cmd = Command::new(venv.join("bin/python"));
        cmd.arg(common::repo().join("tests/s3/put.py"))
            .args([&self.endpoint, "tables"]);
        for (key, file) in files {
            cmd.arg(format!("{key}={}", file.display()));
        }
        let status = cmd.status().expect("run tests/s3/put.py");
        assert!(status.success(), "uploading {files:?}");
    }

    fn table(&self, name: &str) -> PathBuf {
        self.tables.path().join(name)
    }

    /// `limen --store <store> <args>` with the AWS settings of this server (and no others).
    fn limen(&self, store: &TestStore, args: &[&str]) -> Output {
        let mut cmd = self.command(store);
        cmd.args(args);
        cmd.output().expect("run limen")
    }

    fn command(&self, store: &TestStore) -> Command {
        let mut cmd = limen_command();
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HOME", store.path())
            .arg("--store")
            .arg(store.path());
        cmd
    }

    /// `limen train` of `model` on the churn table at `data` (its four features), with `extra`
    /// flags; the version.
    fn train(&self, store: &TestStore, model: &str, data: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "train",
            "--model",
            model,
            "--data",
            data,
            "--label-column",
            "churned",
            "--features",
            FEATURES,
        ];
        args.extend_from_slice(extra);
        last_line(&self.ok(store, &args))
    }

    fn ok(&self, store: &TestStore, args: &[&str]) -> String {
        let out = self.limen(store, args);
        assert!(
            out.status.success(),
            "limen {args:?} failed: {}",
            stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

const FEATURES: &str = "tenure,monthly_charges,support_calls,discount";

fn artifact(store: &TestStore, model: &str, version: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(store.path().join(model).join(version).join("model.json")).unwrap(),
    )
    .unwrap()
}

fn last_line(out: &str) -> String {
    out.lines().last().unwrap_or_default().trim().to_owned()
}

#[test]
fn a_parquet_table_in_s3_trains_the_same_model_as_its_csv_on_disk_and_gates_on_its_hold_out() {
    let Some(s3) = S3::start() else { return };
    s3.upload("churn/churn.parquet", &s3.table("churn.parquet"));
    let store = TestStore::new();
    let train = |data: &str| {
        s3.train(
            &store,
            "churn",
            data,
            &["--standardize", "--split-by", "signup"],
        )
    };
    let local_csv = s3.table("churn.csv");
    let from_disk = train(local_csv.to_str().unwrap());
    // Trained second, so the candidate the gate takes.
    let from_s3 = train("s3://tables/churn/churn.parquet");
    let (a, b) = (
        artifact(&store, "churn", &from_s3),
        artifact(&store, "churn", &from_disk),
    );
    assert_eq!(
        a["provenance"]["data_path"],
        "s3://tables/churn/churn.parquet"
    );
    assert_eq!(a["classes"], serde_json::json!(["no", "yes"]));
    // The same values (float32 and int64 columns, a dictionary-encoded label, a timestamp the
    // split orders by): the same fit and the same held-out rows.
    assert_eq!(a["coefficients"], b["coefficients"]);
    assert_eq!(a["intercepts"], b["intercepts"]);
    assert_eq!(
        a["provenance"]["holdout"]["rows_sha256"],
        b["provenance"]["holdout"]["rows_sha256"]
    );
    assert_eq!(a["provenance"]["holdout"]["rows"], 400);

    // Changed in S3 after training: the hold-out is not the one the candidate recorded, so the
    // gate refuses, naming the location.
    s3.upload("churn/churn.parquet", &s3.table("parts/part-0.parquet"));
    let out = s3.limen(
        &store,
        &["validate", "--model", "churn", "--min-accuracy", "0.5"],
    );
    assert!(!out.status.success(), "a changed table must not pass");
    assert!(
        stderr(&out).contains("s3://tables/churn/churn.parquet"),
        "{}",
        stderr(&out)
    );
    // As trained: the gate reads the candidate's hold-out back from S3 (a lenient bar: this is
    // about which rows).
    s3.upload("churn/churn.parquet", &s3.table("churn.parquet"));
    let out = s3.ok(
        &store,
        &["validate", "--model", "churn", "--min-accuracy", "0.5"],
    );
    assert!(
        out.contains("on the 400 rows of s3://tables/churn/churn.parquet"),
        "{out}"
    );
    assert_eq!(
        store.pointer("churn", "production").as_deref(),
        Some(&*from_s3)
    );
}

#[test]
fn parquet_in_every_common_codec_reads_as_the_same_rows() {
    let Some(s3) = S3::start() else { return };
    let store = TestStore::new();
    let coefficients = |file: &str| {
        let data = s3.table(file);
        let version = s3.train(
            &store,
            "codecs",
            data.to_str().unwrap(),
            &["--cv-folds", "0"],
        );
        artifact(&store, "codecs", &version)["coefficients"].clone()
    };
    let csv = coefficients("churn.csv");
    for codec in ["snappy", "zstd", "gzip", "lz4", "none"] {
        let file = match codec {
            "snappy" => "churn.parquet".to_owned(),
            other => format!("churn.{other}.parquet"),
        };
        assert_eq!(coefficients(&file), csv, "{codec}");
    }
}

#[test]
fn a_prefix_or_glob_of_parts_reads_as_one_table() {
    let Some(s3) = S3::start() else { return };
    s3.upload_all(&[
        ("parts/part-0.parquet", &s3.table("parts/part-0.parquet")),
        ("parts/part-1.parquet", &s3.table("parts/part-1.parquet")),
        // Spark's marker, and a table of another layout under the same prefix: not parts.
        ("parts/_SUCCESS", &s3.table("nested.parquet")),
    ]);
    let store = TestStore::new();
    for data in [
        "s3://tables/parts/",
        "s3://tables/parts",
        "s3://tables/parts/part-*.parquet",
    ] {
        let version = s3.train(
            &store,
            "parts",
            data,
            &["--holdout", "0", "--cv-folds", "0"],
        );
        let a = artifact(&store, "parts", &version);
        assert_eq!(a["provenance"]["rows"], 2000, "{data}");
        assert_eq!(a["provenance"]["data_path"], data);
    }
}

#[test]
fn s3_errors_say_what_was_wrong_and_what_to_do() {
    let Some(s3) = S3::start() else { return };
    s3.upload("nested.parquet", &s3.table("nested.parquet"));
    let store = TestStore::new();
    let fails = |cmd: &mut Command, want: &[&str]| {
        let out = cmd.output().expect("run limen");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        for w in want {
            assert!(err.contains(w), "{w:?} not in: {err}");
        }
        assert!(store.listing().is_empty(), "nothing is written: {err}");
    };
    let train = |data: &str| {
        let mut cmd = s3.command(&store);
        cmd.args(["train", "--data", data, "--label-column", "y"]);
        cmd
    };
    fails(
        &mut train("s3://tables/absent.parquet"),
        &[
            "nothing in S3 matches s3://tables/absent.parquet",
            "no object has that key",
        ],
    );
    fails(
        &mut train("s3://no-such-bucket/t.csv"),
        &["the bucket does not exist"],
    );
    fails(
        &mut train("s3://tables/nested.parquet"),
        &[
            "column \"tags\" of s3://tables/nested.parquet",
            "not table cells",
        ],
    );
    fails(&mut train("s3://"), &["is not an S3 location"]);
    let mut cmd = train("s3://tables/nested.parquet");
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    fails(
        &mut cmd,
        &["no AWS credentials", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"],
    );

    // A profile of the shared credentials file supplies keys when the environment has none.
    let aws = store.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        "[team]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let mut cmd = train("s3://tables/nested.parquet");
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_PROFILE", "team");
    // Past the credentials, to the table's own problem.
    let out = cmd.output().unwrap();
    assert!(stderr(&out).contains("not table cells"), "{}", stderr(&out));
    std::fs::remove_dir_all(&aws).unwrap();
}

#[test]
fn a_model_trains_from_an_inference_log_and_labels_in_s3_and_validates_on_them() {
    let Some(s3) = S3::start() else { return };
    let store = TestStore::new();
    store.promote_iris();
    let log = tempfile::tempdir().unwrap();
    {
        let mut server = common::logging_server(&store, log.path(), "pod-a", &[]);
        let agent = http();
        let mut labels = String::from("request_id,species\n");
        for i in 0..150u32 {
            let width = 0.1 + f64::from(i % 25) / 10.0;
            let answer = agent
                .post(&server.url("/predict"))
                .header("X-Request-Id", &format!("r{i}"))
                .send(format!("{{\"petal_width\": {width}}}"))
                .unwrap();
            assert_eq!(answer.status(), 200);
            let species = if width >= 1.7 {
                "virginica"
            } else {
                "versicolor"
            };
            labels += &format!("r{i},{species}\n");
        }
        server.terminate();
        assert!(server.wait_exit(PATIENCE).success());
        std::fs::write(log.path().join("labels.csv"), labels).unwrap();
    }
    let mut uploaded = 0;
    let mut stack = vec![log.path().to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                let key = path.strip_prefix(log.path()).unwrap().display().to_string();
                s3.upload(&format!("logs/{key}"), &path);
                uploaded += 1;
            }
        }
    }
    assert!(uploaded > 0);
    s3.upload("truth/labels.csv", &log.path().join("labels.csv"));

    let out = s3.ok(
        &store,
        &[
            "train",
            "--model",
            "iris-next",
            "--log-model",
            "iris",
            "--data",
            "s3://tables/logs/",
            "--labels",
            "s3://tables/truth/labels.csv",
            "--cv-folds",
            "0",
        ],
    );
    assert!(out.contains("150 with a label"), "{out}");
    let version = last_line(&out);
    let a = artifact(&store, "iris-next", &version);
    assert_eq!(a["provenance"]["data_path"], "s3://tables/logs/");
    assert_eq!(
        a["provenance"]["log"]["labels"],
        "s3://tables/truth/labels.csv"
    );
    assert_eq!(a["provenance"]["holdout"]["method"], "request_id");
    // The gate re-reads the log and labels from S3 and scores the request ids held out.
    let out = s3.ok(&store, &["validate", "--model", "iris-next"]);
    assert!(out.contains("s3://tables/logs/"), "{out}");

    // `limen drift --log` reads the same log from S3 as from its folder.
    let drift = |log: &str| -> serde_json::Value {
        let out = s3.ok(
            &store,
            &[
                "drift",
                "iris",
                "--log",
                log,
                "--min-samples",
                "1",
                "--json",
            ],
        );
        serde_json::from_str(&out).unwrap()
    };
    let local = drift(log.path().to_str().unwrap());
    let remote = drift("s3://tables/logs");
    assert_eq!(local["instances"], 150, "{local}");
    assert_eq!(remote["instances"], local["instances"]);
    assert_eq!(remote["features"], local["features"]);
    // A model with no log there is no data (exit 2), not an S3 failure.
    let out = s3.limen(&store, &["drift", "iris", "--log", "s3://tables/elsewhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no data"), "{}", stderr(&out));
}
