//! The harness every black-box test uses: the real `limen` binary on a temporary store
//! ([`TestStore`]), models trained and promoted through it ([`TestStore::promote`]), and a real
//! server on a kernel-picked loopback port ([`Server`], or [`TestApp`] for all of it at once).
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, where `data/iris.csv` lives.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The four Iris measurements: the features of the three-species model.
pub const FOUR: &str = "sepal_length,sepal_width,petal_length,petal_width";

/// A fresh temporary store, removed when dropped.
pub struct TestStore {
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create a temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `limen --store <this store> <args>`, run from the repo root with a clean environment.
    pub fn limen(&self, args: &[&str]) -> Output {
        let mut cmd = limen_command();
        cmd.arg("--store").arg(self.path()).args(args);
        cmd.output().expect("run limen")
    }

    /// Like [`TestStore::limen`], but fails the test unless the command exits 0.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.limen(args);
        assert!(
            out.status.success(),
            "limen {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Trains with `args` and returns the version id (the last line of stdout).
    pub fn train(&self, args: &[&str]) -> String {
        let mut all = vec!["train"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        out.lines()
            .last()
            .expect("train printed nothing")
            .trim()
            .to_owned()
    }

    /// Trains `model` with `train_args` on every row (cross-validation off, for speed; no
    /// hold-out, so the fits equal scikit-learn's on the whole table, as the golden values
    /// are), validates it on those rows, and returns the version, which is now production.
    /// The default hold-out and the gate on it are tested in `train_validate.rs`.
    pub fn promote(&self, model: &str, train_args: &[&str]) -> String {
        let mut args = vec!["--model", model, "--cv-folds", "0", "--holdout", "0"];
        args.extend_from_slice(train_args);
        let version = self.train(&args);
        self.ok(&["validate", "--model", model, "--allow-training-rows"]);
        version
    }

    /// The reference model (`iris`: petal width, virginica against the rest), promoted.
    pub fn promote_iris(&self) -> String {
        self.promote("iris", &[])
    }

    /// `iris` in production (alpha 1) and a candidate that draws the boundary elsewhere
    /// (alpha 30), not promoted: what shadow scoring and side-by-side reports compare.
    /// Returns (production, candidate).
    pub fn promote_iris_with_a_different_candidate(&self) -> (String, String) {
        let production = self.promote_iris();
        let candidate = self.train(&["--cv-folds", "0", "--alpha", "30", "--holdout", "0"]);
        (production, candidate)
    }

    /// The three-species model (`iris-species`, multinomial on four unscaled features),
    /// promoted. It needs 133 L-BFGS iterations to converge, more than the default 100.
    pub fn promote_species(&self) -> String {
        self.promote(
            "iris-species",
            &["--multiclass", "--features", FOUR, "--max-iter", "1000"],
        )
    }

    pub fn pointer(&self, model: &str, pointer: &str) -> Option<String> {
        std::fs::read_to_string(self.path().join(model).join(pointer))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Every entry of the store, recursively, as relative paths: to prove nothing was written.
    pub fn listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(self.path(), self.path(), &mut out);
        out.sort();
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        out.push(p.strip_prefix(root).unwrap().display().to_string());
        if p.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// The `limen` binary with the `LIMEN_*` and `MOUNT_PATH` variables of the caller removed.
pub fn limen_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_limen"));
    cmd.current_dir(repo());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("LIMEN_") || key == "MOUNT_PATH" {
            cmd.env_remove(&key);
        }
    }
    // Quiet unless asked: TEST_LOG=debug cargo test shows the servers' logs.
    cmd.env(
        "LIMEN_LOG",
        std::env::var("TEST_LOG").unwrap_or_else(|_| "error".to_owned()),
    );
    cmd
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The usual starting point: a store with a production `iris` model and a ready server on it.
pub struct TestApp {
    // Declared first so it is dropped (killed) before the store's folder is removed.
    pub server: Server,
    pub store: TestStore,
    /// The production version of `iris`.
    pub version: String,
}

impl TestApp {
    /// `iris` promoted, then `limen serve <serve_args>` started and ready.
    pub fn spawn(serve_args: &[&str]) -> Self {
        let store = TestStore::new();
        let version = store.promote_iris();
        let server = Server::serve(store.path(), serve_args).ready();
        Self {
            server,
            store,
            version,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }
}

/// A running `limen serve` (or `quickstart`) on 127.0.0.1 with a port picked by the kernel;
/// killed when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    /// Every stdout line up to and including the "listening" one.
    pub banner: Vec<String>,
}

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

impl Server {
    /// Starts `limen --store <store> serve --addr 127.0.0.1:0 <args>` and waits for its address.
    pub fn serve(store: &Path, args: &[&str]) -> Self {
        let mut all = vec!["serve", "--addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::start(store, &all, "listening on http://")
    }

    /// Starts `limen --store <store> <args>` and waits for a stdout line starting with `marker`
    /// followed by the address.
    pub fn start(store: &Path, args: &[&str], marker: &str) -> Self {
        let mut cmd = limen_command();
        cmd.arg("--store").arg(store).args(args);
        Self::spawn(&mut cmd, marker)
    }

    /// Starts `cmd` and waits for a stdout line starting with `marker` followed by the address.
    pub fn spawn(cmd: &mut Command, marker: &str) -> Self {
        use std::io::BufRead as _;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start limen");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let marker = marker.to_owned();
        std::thread::spawn(move || {
            let mut banner = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                banner.push(line.clone());
                if let Some(rest) = line.strip_prefix(&marker) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send((addr, banner.clone()));
                }
            }
        });
        let (addr, banner) = rx
            .recv_timeout(PATIENCE)
            .expect("limen did not print its address in time");
        Self {
            child,
            addr: addr.parse().expect("a socket address"),
            banner,
        }
    }

    /// Waits until `/ready` answers 200: the default model is loaded.
    pub fn ready(self) -> Self {
        let agent = http();
        eventually(PATIENCE, "/ready to answer 200", || {
            (get(&agent, &self.url("/ready")).status == 200).then_some(())
        });
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, failing the test after `limit`.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "limen did not exit within {limit:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that returns 4xx/5xx answers instead of failing on them.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .into()
}

/// Status and body of a response.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub version_header: Option<String>,
    pub content_type: Option<String>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn answer(resp: ureq::http::Response<ureq::Body>) -> Answer {
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, version_header, content_type) = (
        resp.status().as_u16(),
        header("x-model-version"),
        header("content-type"),
    );
    let body = resp.into_body().read_to_string().unwrap_or_default();
    Answer {
        status,
        body,
        version_header,
        content_type,
    }
}

pub fn get(agent: &ureq::Agent, url: &str) -> Answer {
    answer(agent.get(url).call().expect("GET"))
}

pub fn post(agent: &ureq::Agent, url: &str, body: &str) -> Answer {
    answer(agent.post(url).send(body).expect("POST"))
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `limit`.
pub fn eventually<T>(
    limit: std::time::Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

/// Peak RSS (KiB) and CPU time (user + system) of a process, from `/proc`.
pub fn usage(pid: u32) -> (u64, std::time::Duration) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    (
        hwm,
        std::time::Duration::from_millis(ticks * 1000 / per_second),
    )
}

/// Runs `cmd` as the unprivileged user `nobody` when we are root (root ignores `chmod 000`).
/// The program is copied into `scratch` first: the checkout may sit where `nobody` cannot reach.
pub fn unprivileged<'c>(cmd: &'c mut Command, scratch: &Path) -> &'c mut Command {
    use std::os::unix::fs::PermissionsExt as _;
    if is_root() {
        std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
        let program = scratch.join("limen");
        std::fs::copy(cmd.get_program(), &program).unwrap();
        let mut wrapped = Command::new("setpriv");
        wrapped
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&program)
            .args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        wrapped.current_dir("/");
        *cmd = wrapped;
    }
    cmd
}

pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The folder of `scripts/tree_fixtures.py`'s fixtures (libraries' models and outputs), or
/// `None` (skipping) when it was not made here; CI sets `LIMEN_REQUIRE_TREE_FIXTURES`.
pub fn tree_fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("LIMEN_TREE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/tree-fixtures"));
    if dir.join("xgb_binary/expected.json").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("LIMEN_REQUIRE_TREE_FIXTURES").is_none(),
        "no tree fixtures in {}: run scripts/tree_fixtures.py",
        dir.display()
    );
    eprintln!(
        "skipped: no tree fixtures in {} (make them with scripts/tree_fixtures.py in a venv of tests/trees/requirements.txt)",
        dir.display()
    );
    None
}

/// `limen serve` as `instance`, logging every request to `log` (no shadow scoring), ready.
pub fn logging_server(store: &TestStore, log: &Path, instance: &str, extra: &[&str]) -> Server {
    let mut cmd = limen_command();
    cmd.arg("--store").arg(store.path()).args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--instance",
        instance,
        "--shadow-rate",
        "0",
    ]);
    cmd.arg("--inference-log").arg(log).args(extra);
    Server::spawn(&mut cmd, "listening on http://").ready()
}

/// `limen serve` writing evidence to `evidence` as `instance`, shadowing every request.
pub fn evidence_server(store: &TestStore, evidence: &Path, instance: &str) -> Server {
    let mut cmd = limen_command();
    cmd.arg("--store").arg(store.path()).args([
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--shadow-rate",
        "1",
        "--poll-interval",
        "50ms",
        "--instance",
        instance,
    ]);
    cmd.arg("--evidence").arg(evidence);
    Server::spawn(&mut cmd, "listening on http://").ready()
}

/// The inference log's files under `dir` (`.jsonl`; not an instance's lock file).
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                out.push(p);
            }
        }
    }
    out
}
