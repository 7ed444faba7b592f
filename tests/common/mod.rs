//! Helpers shared by the black-box tests: run the real `limen` binary on a temporary store.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, where `data/iris.csv` lives.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

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
    cmd.env("LIMEN_LOG", "warn");
    cmd
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
