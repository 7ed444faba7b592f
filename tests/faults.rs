//! Fault injection on the real binary and a temporary store: crashes mid-publish, corrupt files
//! and pointers, racing pipelines, promotions under load, a vanishing store, SIGTERM under load,
//! and another client's writes that raise no inotify events (bindfs, the EFS case).
//!
//! Each test prints one `RELIABILITY` line (faults injected, requests sent and failed, models
//! lost or served partially); `RELIABILITY.md` tabulates them.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    eventually, get, http, limen_command, post, stderr, unprivileged, Server, TestStore, PATIENCE,
};
use limen::catalog::{production_stack, Catalog};
use limen::store::{ModelName, Pointer};

const BODY: &str = r#"{"petal_width": 2.1}"#;

fn iris() -> ModelName {
    "iris".parse().unwrap()
}

/// A small deterministic PRNG (xorshift), so a failing run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn from_env() -> Self {
        let seed = std::env::var("LIMEN_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("fault seed: LIMEN_FAULT_SEED={seed}");
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Every version folder of `model` verifies, and so does every version a pointer names.
fn assert_store_whole(root: &Path, model: &str) -> usize {
    let catalog = Catalog::open(root);
    let name: ModelName = model.parse().unwrap();
    let dir = catalog.model_dir(&name);
    let mut versions = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(version) = file_name.parse() {
            catalog.load_verified(&name, version).unwrap_or_else(|e| {
                panic!("{model}/{file_name} looks published but is not whole: {e}")
            });
            versions += 1;
        }
    }
    for pointer in [Pointer::Candidate, Pointer::Production] {
        if let Some(v) = catalog.pointer(&name, pointer).unwrap() {
            catalog
                .load_verified(&name, v)
                .unwrap_or_else(|e| panic!("{pointer:?} names {v}, which does not verify: {e}"));
        }
    }
    versions
}

/// Clients posting to `url` in a loop until stopped; each outcome is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<Vec<Outcome>>>,
}

#[derive(Debug, Clone)]
struct Outcome {
    started: Instant,
    ended: Instant,
    /// HTTP status and X-Model-Version, or the transport error.
    result: Result<(u16, Option<String>), String>,
}

impl Load {
    fn start(url: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let (url, stop) = (url.to_owned(), Arc::clone(&stop));
                thread::spawn(move || {
                    let agent = http();
                    let mut outcomes = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let result = agent
                            .post(&url)
                            .send(BODY)
                            .map(|r| {
                                let version = r
                                    .headers()
                                    .get("x-model-version")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned);
                                (r.status().as_u16(), version)
                            })
                            .map_err(|e| e.to_string());
                        outcomes.push(Outcome {
                            started,
                            ended: Instant::now(),
                            result,
                        });
                    }
                    outcomes
                })
            })
            .collect();
        Self { stop, threads }
    }

    fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    }
}

fn failures(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| match &o.result {
            Ok((200, _)) => None,
            Ok((status, _)) => Some(format!("HTTP {status}")),
            Err(e) => Some(e.clone()),
        })
        .collect()
}

fn report(fault: &str, injected: usize, sent: usize, failed: usize, lost: usize) {
    eprintln!(
        "RELIABILITY | {fault} | injected {injected} | requests {sent} | failed {failed} | models lost or partial {lost}"
    );
}

/// Whether a JSON version number is `version`.
fn is_version(value: &serde_json::Value, version: &str) -> bool {
    value.as_u64().is_some_and(|v| v.to_string() == version)
}

#[test]
fn kill_9_during_train_and_validate_never_leaves_a_partial_version() {
    let mut rng = Rng::from_env();
    let store = TestStore::new();
    store.promote_iris();
    let server = Server::serve(store.path(), &["--poll-interval", "50ms"]).ready();
    let load = Load::start(&server.url("/predict"), 2);

    // At least 60 kills, and more until at least two landed mid-write (a publish or a pointer
    // move left its temporary behind), so that recovery from one is always tested.
    let mid_write = |store: &TestStore| {
        store
            .listing()
            .into_iter()
            .filter(|p| p.contains("/.publish-") || p.contains("/.pointer-"))
            .count()
    };
    let spawn = |command: &str| {
        limen_command()
            .arg("--store")
            .arg(store.path())
            .args([command, "--model", "iris"])
            .args(if command == "train" {
                &["--cv-folds", "0"][..]
            } else {
                &[][..]
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long each command runs here (debug build, this machine's load), so that kills land
    // anywhere in it: reading data, fitting, or publishing.
    let took = |command: &str| {
        let started = Instant::now();
        let _ = spawn(command).wait();
        started.elapsed()
    };
    let (train_run, validate_run) = (took("train"), took("validate"));
    let mut rounds = 0;
    while rounds < 60 || (mid_write(&store) < 2 && rounds < 400) {
        let round = rounds;
        rounds += 1;
        let command = if round % 4 == 3 { "validate" } else { "train" };
        let run = if command == "train" {
            train_run
        } else {
            validate_run
        };
        let mut child = spawn(command);
        let span = u64::try_from(run.as_micros()).unwrap_or(u64::MAX).max(1000);
        thread::sleep(Duration::from_micros(rng.below(span + span / 5)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    let outcomes = load.finish();

    let versions = assert_store_whole(store.path(), "iris");
    let leftovers: Vec<String> = store
        .listing()
        .into_iter()
        .filter(|p| p.contains("/.publish-") || p.contains("/.pointer-"))
        .collect();
    eprintln!(
        "{versions} whole versions; {} of {rounds} kills landed mid-write: {leftovers:?}",
        leftovers.len()
    );
    assert!(
        leftovers.len() >= 2,
        "no kill landed mid-write in {rounds} rounds: recovery went untested"
    );
    // Readers ignore the leftovers, and gc removes them.
    let listed: serde_json::Value =
        serde_json::from_str(&store.ok(&["models", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["versions"], versions);
    store.ok(&["models", "gc", "iris", "--keep", "1000", "--temp-age", "0s"]);
    assert!(!store
        .listing()
        .iter()
        .any(|p| p.contains("/.publish-") || p.contains("/.pointer-")));
    // gc took the lock, so any move a kill cut short is finished: the history names production.
    let catalog = Catalog::open(store.path());
    let history = catalog.history(&iris()).unwrap();
    assert_eq!(history.unreadable_lines, 0, "a torn history line");
    assert_eq!(
        production_stack(&history.entries).last().copied(),
        catalog.pointer(&iris(), Pointer::Production).unwrap(),
        "production is not the version the history ends at"
    );
    assert!(!store.path().join("iris/.move").exists());

    let failed = failures(&outcomes);
    assert!(failed.is_empty(), "{failed:?}");
    for o in &outcomes {
        let (_, Some(v)) = o.result.as_ref().unwrap() else {
            panic!("no version header")
        };
        Catalog::open(store.path())
            .load_verified(&iris(), v.parse().unwrap())
            .unwrap();
    }
    report(
        "kill -9 of train/validate at random points",
        rounds,
        outcomes.len(),
        failed.len(),
        0,
    );
}

#[test]
fn corrupt_files_and_pointers_keep_the_last_good_model_and_recover() {
    let store = TestStore::new();
    let good = store.promote_iris();
    // No shadow: a candidate loaded in shadow before its file is damaged would be served
    // (verified, whole) when promoted, and this test is about loading damaged production files.
    let args = ["--poll-interval", "50ms", "--shadow-rate", "0"];
    let server = Server::serve(store.path(), &args).ready();
    let agent = http();
    let load = Load::start(&server.url("/predict"), 1);
    let production = store.path().join("iris/production");
    let set_production = |v: &str| {
        // Atomic, as limen writes it: a reader never sees a half-written pointer here.
        let tmp = store.path().join("iris/.pointer-test");
        std::fs::write(&tmp, v).unwrap();
        std::fs::rename(&tmp, &production).unwrap();
    };

    type Damage = fn(&[u8]) -> Vec<u8>;
    let file_faults: [(&str, Damage); 4] = [
        ("truncated model.json", |b| b[..b.len() / 2].to_vec()),
        ("bit-flipped model.json", |b| {
            let mut b = b.to_vec();
            let at = b.windows(4).position(|w| w == b"4.33").unwrap() + 2;
            b[at] ^= 0x01;
            b
        }),
        ("model.json replaced by other JSON", |_| {
            br#"{"hello": "world"}"#.to_vec()
        }),
        ("empty model.json", |_| Vec::new()),
    ];
    let mut injected = 0;
    for (fault, damage) in file_faults {
        let next = store.train(&["--cv-folds", "0", "--holdout", "0"]);
        let file = store.path().join(format!("iris/{next}/model.json"));
        let original = std::fs::read(&file).unwrap();
        std::fs::write(&file, damage(&original)).unwrap();
        set_production(&next);
        injected += 1;
        let status = eventually(PATIENCE, fault, || {
            let m = get(&agent, &server.url("/models/iris")).json();
            (is_version(&m["production"], &next) && !m["last_error"].is_null()).then_some(m)
        });
        assert_eq!(status["loaded"].to_string(), good, "{fault}");
        eprintln!("{fault}: {}", status["last_error"]);
        // Fixed in place: the server loads it by itself.
        std::fs::write(&file, &original).unwrap();
        eventually(PATIENCE, "recovery", || {
            let m = get(&agent, &server.url("/models/iris")).json();
            (is_version(&m["loaded"], &next) && m["last_error"].is_null()).then_some(())
        });
        set_production(&good);
        eventually(PATIENCE, "back to the good version", || {
            (get(&agent, &server.url("/version")).body == good).then_some(())
        });
    }
    for (fault, content) in [
        ("pointer naming a missing version", "999999999\n"),
        ("pointer holding garbage", "not-a-version\n"),
        ("empty pointer", ""),
    ] {
        set_production(content);
        injected += 1;
        let status = eventually(PATIENCE, fault, || {
            let m = get(&agent, &server.url("/models/iris")).json();
            (!m["last_error"].is_null()).then_some(m)
        });
        assert_eq!(status["loaded"].to_string(), good, "{fault}");
        set_production(&good);
        eventually(PATIENCE, "recovery", || {
            get(&agent, &server.url("/models/iris")).json()["last_error"]
                .is_null()
                .then_some(())
        });
    }
    let outcomes = load.finish();
    let failed = failures(&outcomes);
    assert!(failed.is_empty(), "{failed:?}");
    // Every answer came from a whole version that was production at some point.
    let served: BTreeSet<String> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok()?.1.clone())
        .collect();
    for v in &served {
        Catalog::open(store.path())
            .load_verified(&iris(), v.parse().unwrap())
            .unwrap();
    }
    report(
        "corrupt model.json / pointer",
        injected,
        outcomes.len(),
        failed.len(),
        0,
    );
}

#[test]
fn eight_trainers_and_four_validators_race_without_tearing_anything() {
    let store = TestStore::new();
    store.promote_iris();
    let rounds = 5;
    let mut promotions = 0;
    for _ in 0..rounds {
        let spawn = |args: &[&str]| {
            limen_command()
                .arg("--store")
                .arg(store.path())
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut children: Vec<_> = (0..8)
            .map(|_| spawn(&["train", "--cv-folds", "0"]))
            .collect();
        children.extend((0..4).map(|_| spawn(&["validate"])));
        for child in children {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            // A validator may find no new candidate (exit 0) or lose the race to a better one.
            assert!(out.status.code() != Some(2), "{text}\n{}", stderr(&out));
            promotions += text.lines().filter(|l| l.starts_with("promoted ")).count();
        }
        assert_store_whole(store.path(), "iris");
    }
    let history = std::fs::read_to_string(store.path().join("iris/history.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn history line ({e}): {l}")))
        .collect();
    // One line per promotion (plus the first), each naming a version that passed the gate.
    assert_eq!(lines.len(), promotions + 1);
    for line in &lines {
        assert_eq!(line["action"], "promote");
        assert_eq!(line["details"]["gate"], "limen validate");
        Catalog::open(store.path())
            .load_verified(
                &iris(),
                line["version"].as_u64().unwrap().try_into().unwrap(),
            )
            .unwrap();
    }
    let production = store.pointer("iris", "production").unwrap();
    assert_eq!(lines.last().unwrap()["version"].to_string(), production);
    report("8 trainers + 4 validators at once", rounds * 12, 0, 0, 0);
}

#[test]
fn promotions_and_rollbacks_every_half_second_under_load_fail_no_request() {
    let store = TestStore::new();
    let versions: Vec<String> = (0..3).map(|_| store.promote_iris()).collect();
    let server = Server::serve(store.path(), &["--poll-interval", "50ms"]).ready();
    let load = Load::start(&server.url("/predict"), 2);

    // (when the command that made the change started, production after it). The pointer flips
    // somewhere inside the command, so a version counts as production from its command's start
    // until the end of the next command.
    let mut timeline = vec![(Instant::now(), versions[2].clone())];
    let mut ends = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut changes = 0;
    while Instant::now() < deadline {
        let started = Instant::now();
        let current = store.pointer("iris", "production").unwrap();
        let out = store.limen(&["models", "rollback", "iris"]);
        if out.status.code() == Some(1) {
            // At the bottom of the history: promote the newest again.
            store.ok(&["models", "promote", "iris", &versions[2]]);
        } else {
            assert!(out.status.success(), "{}", stderr(&out));
        }
        let now = store.pointer("iris", "production").unwrap();
        assert_ne!(now, current);
        timeline.push((started, now));
        ends.push(Instant::now());
        changes += 1;
        // Longer than LAG, so that the versions an answer may come from are at most the one
        // before and the one after a change: of three, one is always wrong.
        thread::sleep(Duration::from_millis(500));
    }
    let outcomes = load.finish();
    let failed = failures(&outcomes);
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());

    // The server learns of a change asynchronously (inotify, else the 50 ms poll), so an answer
    // may come from the version that was production up to LAG before the request started: five
    // poll intervals, for a debug build on a busy machine.
    const LAG: Duration = Duration::from_millis(250);
    let was_production = |v: &str, from: Instant, to: Instant| {
        timeline.iter().enumerate().any(|(i, (t, pv))| {
            let until = ends.get(i).copied().unwrap_or(to);
            pv == v && *t <= to && until >= from
        })
    };
    for o in &outcomes {
        let (_, Some(v)) = o.result.as_ref().unwrap() else {
            panic!("no version")
        };
        let from = o.started.checked_sub(LAG).unwrap_or(o.started);
        assert!(
            was_production(v, from, o.ended),
            "answered with {v} in [{:?}, {:?}] after the first change, not production then; timeline {:?}",
            o.started.saturating_duration_since(timeline[0].0),
            o.ended.saturating_duration_since(timeline[0].0),
            timeline.iter().map(|(t, v)| (t.duration_since(timeline[0].0), v)).collect::<Vec<_>>()
        );
    }
    report(
        "promote/rollback every 500 ms under load",
        changes,
        outcomes.len(),
        failed.len(),
        0,
    );
}

#[test]
fn a_store_that_vanishes_or_locks_us_out_keeps_serving_and_says_so() {
    use std::os::unix::fs::PermissionsExt as _;
    let store = TestStore::new();
    let good = store.promote_iris();
    let root = store.path().to_owned();
    // The server may run as another user: the store must be readable by it (and is, by design).
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut cmd = limen_command();
    cmd.arg("--store").arg(&root).args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--poll-interval",
        "50ms",
    ]);
    let scratch = tempfile::tempdir().unwrap();
    let server = Server::spawn(
        unprivileged(&mut cmd, scratch.path()),
        "listening on http://",
    )
    .ready();
    let agent = http();
    let load = Load::start(&server.url("/predict"), 1);
    let aside = root.with_extension("aside");

    type Break = fn(&Path, &Path);
    let faults: [(&str, Break, Break); 3] = [
        (
            "store folder removed",
            |r, a| std::fs::rename(r, a).unwrap(),
            |r, a| std::fs::rename(a, r).unwrap(),
        ),
        (
            "store made unreadable (chmod 000)",
            |r, _| std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o000)).unwrap(),
            |r, _| std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap(),
        ),
        (
            "store replaced by a file",
            |r, a| {
                std::fs::rename(r, a).unwrap();
                std::fs::write(r, b"not a folder").unwrap();
            },
            |r, a| {
                std::fs::remove_file(r).unwrap();
                std::fs::rename(a, r).unwrap();
            },
        ),
    ];
    for (fault, breaks, mends) in faults {
        breaks(&root, &aside);
        let models = eventually(PATIENCE, fault, || {
            let m = get(&agent, &server.url("/models")).json();
            (!m["store"]["error"].is_null()).then_some(m)
        });
        eprintln!("{fault}: {}", models["store"]["error"]);
        let metrics = get(&agent, &server.url("/metrics")).body;
        assert!(metrics.contains("limen_store_up 0"), "{fault}: {metrics}");
        let answer = post(&agent, &server.url("/predict"), BODY);
        assert_eq!(
            (answer.status, answer.version_header.as_deref()),
            (200, Some(good.as_str())),
            "{fault}"
        );
        mends(&root, &aside);
        eventually(PATIENCE, "the store to be back", || {
            get(&agent, &server.url("/models")).json()["store"]["error"]
                .is_null()
                .then_some(())
        });
        assert!(get(&agent, &server.url("/metrics"))
            .body
            .contains("limen_store_up 1"));
    }
    // And it follows the store again.
    let next = store.promote_iris();
    eventually(PATIENCE, "a promotion after the outages", || {
        (get(&agent, &server.url("/version")).body == next).then_some(())
    });
    let outcomes = load.finish();
    let failed = failures(&outcomes);
    assert!(failed.is_empty(), "{failed:?}");
    report(
        "store removed / chmod 000 / replaced by a file",
        3,
        outcomes.len(),
        failed.len(),
        0,
    );
}

#[test]
fn sigterm_under_load_finishes_what_was_accepted_and_exits_0() {
    use std::io::{Read as _, Write as _};
    let store = TestStore::new();
    store.promote_iris();
    let mut server = Server::serve(store.path(), &["--shutdown-timeout", "3s"]).ready();
    let load = Load::start(&server.url("/predict"), 2);
    // Requests certainly accepted: their heads are read and their bodies half sent.
    let (head, tail) = BODY.as_bytes().split_at(BODY.len() / 2);
    let mut slow: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(server.addr).unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            write!(
                s,
                "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                BODY.len()
            )
            .unwrap();
            s.write_all(head).unwrap();
            s
        })
        .collect();
    eventually(PATIENCE, "the slow requests to be accepted", || {
        (get(&http(), &server.url("/healthcheck")).status == 200).then_some(())
    });
    thread::sleep(Duration::from_millis(300)); // let the load run before the signal
    let signalled = Instant::now();
    server.terminate();
    thread::sleep(Duration::from_millis(200)); // requests in flight while draining
    for s in &mut slow {
        s.write_all(tail).unwrap();
    }
    for s in &mut slow {
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    let status = server.wait_exit(Duration::from_secs(4));
    let exited = signalled.elapsed();
    let outcomes = load.finish();
    assert!(status.success(), "{status}");
    // Every answer the load got is a 200. Transport errors can only hit requests the server never
    // read: ones sent on a keep-alive connection as the draining server closed it, or after.
    let http_errors: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o.result, Ok((s, _)) if s != 200))
        .collect();
    assert!(http_errors.is_empty(), "{http_errors:?}");
    let before_signal_failed = outcomes
        .iter()
        .filter(|o| o.result.is_err() && o.ended < signalled)
        .count();
    assert_eq!(before_signal_failed, 0);
    eprintln!(
        "exited {exited:?} after SIGTERM; {} load requests",
        outcomes.len()
    );
    report(
        "SIGTERM under load",
        1,
        outcomes.len() + slow.len(),
        http_errors.len(),
        0,
    );
}

/// A bindfs mount of a folder, unmounted on drop.
struct Bindfs {
    mount: std::path::PathBuf,
}

impl Bindfs {
    fn mount(source: &Path, target: &Path) -> Self {
        std::fs::create_dir_all(target).unwrap();
        let out = Command::new("bindfs")
            .arg(source)
            .arg(target)
            .output()
            .expect("bindfs is installed (.ci/run installs it from Debian's packages)");
        assert!(out.status.success(), "bindfs failed: {}", stderr(&out));
        Self {
            mount: target.to_owned(),
        }
    }
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        for (program, flag) in [
            ("fusermount3", "-u"),
            ("fusermount", "-u"),
            ("umount", "-l"),
        ] {
            let done = Command::new(program).arg(flag).arg(&self.mount).status();
            if done.is_ok_and(|s| s.success()) {
                return;
            }
        }
    }
}

/// Another EFS client's writes raise no inotify events on this one; bindfs reproduces that
/// (FUSE passes on no events for writes to the backing folder), so only polling can see them.
#[test]
fn writes_by_another_client_are_found_by_polling_within_one_and_a_half_intervals() {
    let fuse =
        Command::new("bindfs").arg("--version").output().is_ok() && Path::new("/dev/fuse").exists();
    if !fuse {
        // CI (.ci/run) installs bindfs and sets LIMEN_REQUIRE_FUSE, so there this fails instead.
        assert!(
            std::env::var_os("LIMEN_REQUIRE_FUSE").is_none(),
            "bindfs or /dev/fuse is missing; install bindfs (Debian package)"
        );
        eprintln!(
            "SKIPPED: bindfs or /dev/fuse missing; `apt-get install bindfs` to run this test"
        );
        return;
    }
    let store = TestStore::new();
    let first = store.promote_iris();
    let scratch = tempfile::tempdir().unwrap();
    let mount = Bindfs::mount(store.path(), &scratch.path().join("efs"));
    let poll = Duration::from_millis(1000);
    // No heartbeats: this is the poll path a store without a fleet takes (with them, the
    // promotion would wait for the notify-only server, which never hears of it, and refuse).
    let quiet = ["--heartbeat-interval", "0s"];
    let auto = Server::serve(&mount.mount, &["--poll-interval", "1s", quiet[0], quiet[1]]).ready();
    let notify_only =
        Server::serve(&mount.mount, &["--watch", "notify", quiet[0], quiet[1]]).ready();
    let agent = http();

    // "Another client": the pipeline writes to the backing folder, not through the mount.
    let second = store.promote_iris();
    let promoted = Instant::now();
    eventually(poll * 3, "the poller to find the new version", || {
        (post(&agent, &auto.url("/predict"), BODY)
            .version_header
            .as_deref()
            == Some(second.as_str()))
        .then_some(())
    });
    let seen_after = promoted.elapsed();
    assert!(
        seen_after <= poll * 3 / 2,
        "took {seen_after:?}, more than 1.5 × {poll:?}"
    );
    // Inotify alone never hears of it: the notify-only server still answers the old version.
    thread::sleep(poll);
    let stale = post(&agent, &notify_only.url("/predict"), BODY);
    assert_eq!(stale.version_header.as_deref(), Some(first.as_str()));
    eprintln!("promotion seen through bindfs after {seen_after:?} (poll interval {poll:?})");
    report("writes by another client (bindfs), poll 1 s", 1, 0, 0, 0);
}
