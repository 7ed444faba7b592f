//! The store protocol, owned in one place: model names and versions, verified loading, and the
//! one way a pointer moves — under the model's lock, recorded in its history, crash-safe.
//!
//! [`crate::store`] knows bytes on disk (atomic files, folders, a lock file); this layer knows
//! what they mean. Everything above it (the gate, operator actions, the trainer's publish, the
//! servers' registry) calls the catalog and never touches a pointer or the history itself.
//!
//! # Moving production, and what a crash leaves
//!
//! [`ModelGuard::move_production`] is the only way `production` changes. It runs under the
//! model's lock (a [`ModelGuard`] exists only while the lock is held) and takes four durable
//! steps, each atomic on its own:
//!
//! 1. write the move's history entry (`promote` or `rollback`, `version`, `previous`, who, when,
//!    why) to `<model>/.move` (temp file, fsync, rename): the move is now decided;
//! 2. replace the `production` pointer (temp file, fsync, rename, fsync of the folder);
//! 3. append the same entry to `history.jsonl`, fsynced;
//! 4. delete `.move`.
//!
//! A process killed anywhere leaves `.move` behind, and every lock holder finishes it first
//! ([`Catalog::lock`]): if `production` still names the entry's `previous`, the pointer is moved
//! (when the version is complete); if it names the entry's `version`, the history line is
//! appended unless it is already the last line; then `.move` is deleted. A pointer naming
//! anything else was changed by hand after the crash: the record is dropped, and `limen models
//! rollback` refuses and says so, as for any pointer moved behind the history's back. So every
//! version production names through limen has its history line, and a crash can only delay a
//! decided move until the next lock holder, never lose it or record one that did not happen.
//!
//! Stores written by limen 0.1, which moved the pointer before writing its line and kept no
//! `.move`, can hold a production version that no line names; [`production_stack`] still
//! recovers it from the next line's `previous`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::model::{Model, ModelError};
use crate::store::{
    Action, FileIdentity, HistoryEntry, HistoryTail, ModelLock, ModelName, Pointer, Store,
    StoreError, SwitchRecord, VersionId,
};

/// Why a stored version could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Why a trained model cannot be published: what a load would refuse it for.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the model would be {size} bytes, over the {max}-byte limit servers load (raise --max-model-size / LIMEN_MAX_MODEL_SIZE everywhere, or train on fewer features)")]
    TooLarge { size: u64, max: u64 },
    #[error("the trained model would not load")]
    Model(#[from] ModelError),
    #[error("the trained model fails its warm-up probes: {0}")]
    WarmUp(String),
}

/// A move of the `production` pointer, as the history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Forward to a new version (`limen validate`, `limen models promote`).
    Promote,
    /// Back to the version the current one replaced (`limen models rollback`).
    Rollback,
}

impl From<Move> for Action {
    fn from(m: Move) -> Self {
        match m {
            Move::Promote => Action::Promote,
            Move::Rollback => Action::Rollback,
        }
    }
}

/// What a move of `production` did.
#[derive(Debug, Clone, Serialize)]
pub struct ProductionChange {
    pub name: String,
    pub from: Option<VersionId>,
    pub to: VersionId,
    /// False when production already was `to` and nothing was written.
    pub changed: bool,
}

/// A model's history: every well-formed line, oldest first, and how many lines were unreadable.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub entries: Vec<HistoryEntry>,
    pub unreadable_lines: usize,
}

impl History {
    /// The last promotion or rollback.
    pub fn last_move(&self) -> Option<&HistoryEntry> {
        self.entries.iter().rev().find(|e| is_move(e))
    }
}

/// Whether `entry` changed production (a promotion or a rollback).
pub fn is_move(entry: &HistoryEntry) -> bool {
    matches!(entry.action, Action::Promote | Action::Rollback)
}

/// The model repository on top of a [`Store`]. Cheap to clone; every call goes to the filesystem.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Store,
}

impl Catalog {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// A catalog over the store folder `root`.
    pub fn open(root: impl Into<PathBuf>) -> Self {
        Self::new(Store::new(root))
    }

    /// The same catalog, reading `model.json` files of at most `max` bytes.
    pub fn with_max_model_bytes(self, max: u64) -> Self {
        Self::new(self.store.with_max_model_bytes(max))
    }

    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// The folder of one model (what a file watcher watches).
    pub fn model_dir(&self, name: &ModelName) -> PathBuf {
        self.store.model_dir(name)
    }

    /// Names of the models in the store, sorted; an error (not an empty list) when the store
    /// folder is missing or unreadable.
    pub fn models(&self) -> Result<Vec<ModelName>, StoreError> {
        self.store.models()
    }

    /// Fails with the list of models present unless `name` exists.
    pub fn require_model(&self, name: &ModelName) -> Result<(), StoreError> {
        self.store.require_model(name)
    }

    /// Complete versions of `name`, oldest first.
    pub fn versions(&self, name: &ModelName) -> Result<Vec<VersionId>, StoreError> {
        self.store.versions(name)
    }

    /// Size, mtime and inode of `name/version`'s `model.json`, without reading it.
    pub fn model_identity(&self, name: &ModelName, version: VersionId) -> Option<FileIdentity> {
        self.store.model_identity(name, version)
    }

    /// The largest `model.json` this catalog reads.
    pub fn max_model_bytes(&self) -> u64 {
        self.store.max_model_bytes()
    }

    /// Whether `name/version` is a complete version on disk.
    pub fn has_version(&self, name: &ModelName, version: VersionId) -> bool {
        self.store.has_version(name, version)
    }

    /// A pointer as it is on disk now, read without the lock (what servers and listings do).
    pub fn pointer(
        &self,
        name: &ModelName,
        pointer: Pointer,
    ) -> Result<Option<VersionId>, StoreError> {
        self.store.read_pointer(name, pointer)
    }

    /// When a pointer was last replaced (its mtime); for reporting only.
    /// The switch record (see [`SwitchRecord`]), read afresh.
    pub fn switch_record(&self, name: &ModelName) -> Result<Option<SwitchRecord>, StoreError> {
        self.store.read_switch(name)
    }

    pub fn pointer_modified(&self, name: &ModelName, pointer: Pointer) -> Option<SystemTime> {
        self.store.pointer_modified(name, pointer)
    }

    /// The last `n` history lines for which `wanted` holds, read from the end of the file
    /// without the lock (memory bounded by `n`, whatever the file holds).
    pub fn history_tail(
        &self,
        name: &ModelName,
        n: usize,
        wanted: impl Fn(&HistoryEntry) -> bool,
    ) -> Result<HistoryTail, StoreError> {
        self.store.history_tail(name, n, wanted)
    }

    /// The last promotion or rollback, read from the end of the history.
    pub fn last_move(&self, name: &ModelName) -> Result<Option<HistoryEntry>, StoreError> {
        Ok(self.history_tail(name, 1, is_move)?.entries.pop())
    }

    /// The model's whole history, read without the lock. It holds every line: commands and the
    /// server read [`Catalog::history_tail`] or stream with [`ModelGuard::for_each_history`].
    pub fn history(&self, name: &ModelName) -> Result<History, StoreError> {
        let (entries, unreadable_lines) = self.store.history(name)?;
        Ok(History {
            entries,
            unreadable_lines,
        })
    }

    /// Reads `name/version`, verifies its checksum and schema, and checks that it names itself
    /// correctly (a copied or renamed version is refused).
    pub fn load_verified(&self, name: &ModelName, version: VersionId) -> Result<Model, LoadError> {
        let bytes = self.store.read_model(name, version)?;
        let model = Model::from_json_bytes(&bytes)?;
        model.check_identity(name.as_str(), version.get())?;
        Ok(model)
    }

    /// Checks the bytes of a `model.json` about to be published the way a load will check them
    /// (the size cap, checksum and schema, the feature limit, the warm-up probes), so that
    /// nothing is published that `validate` would call corrupt or a server could not serve.
    pub fn check_publishable(&self, bytes: &[u8]) -> Result<(), PublishError> {
        let max = self.store.max_model_bytes();
        if bytes.len() as u64 > max {
            return Err(PublishError::TooLarge {
                size: bytes.len() as u64,
                max,
            });
        }
        let model = Model::from_json_bytes(bytes)?;
        model.self_test().map_err(PublishError::WarmUp)?;
        Ok(())
    }

    /// Publishes a new immutable version and points `candidate` at it; returns its id. `render`
    /// turns the chosen id into the bytes of `model.json` (see [`Store::publish`]).
    pub fn publish_candidate(
        &self,
        name: &ModelName,
        render: impl FnMut(VersionId) -> Vec<u8>,
    ) -> Result<VersionId, StoreError> {
        let version = self.store.publish(name, render)?;
        self.lock(name)?.set_candidate(version)?;
        Ok(version)
    }

    /// Takes the model's exclusive lock (waiting for other holders, on any host of the shared
    /// store), then completes a production move that a killed holder left half done (see the
    /// module docs). Everything that changes the model goes through the returned guard.
    pub fn lock(&self, name: &ModelName) -> Result<ModelGuard<'_>, StoreError> {
        let guard = ModelGuard {
            catalog: self,
            lock: self.store.lock(name)?,
        };
        guard.complete_interrupted_move();
        guard.settle_switch();
        Ok(guard)
    }
}

/// One model's lock, held: the only handle through which pointers and history change.
/// Released on drop.
#[derive(Debug)]
pub struct ModelGuard<'c> {
    catalog: &'c Catalog,
    lock: ModelLock,
}

impl ModelGuard<'_> {
    pub fn name(&self) -> &ModelName {
        self.lock.name()
    }

    fn store(&self) -> &Store {
        &self.catalog.store
    }

    /// A pointer, as it stands under the lock.
    pub fn pointer(&self, pointer: Pointer) -> Result<Option<VersionId>, StoreError> {
        self.store().read_pointer(self.name(), pointer)
    }

    /// The history, as it stands under the lock (all of it: see [`ModelGuard::for_each_history`]).
    pub fn history(&self) -> Result<History, StoreError> {
        self.catalog.history(self.name())
    }

    /// Streams the history as it stands under the lock, oldest first, one line at a time;
    /// returns how many lines could not be read.
    pub fn for_each_history(&self, each: impl FnMut(HistoryEntry)) -> Result<usize, StoreError> {
        self.store().for_each_history(self.name(), each)
    }

    /// Points `candidate` at `version`. Not recorded in the history: candidates come and go
    /// with every training run; the history is about what production served.
    pub fn set_candidate(&self, version: VersionId) -> Result<(), StoreError> {
        self.store()
            .write_pointer(&self.lock, Pointer::Candidate, version)
    }

    /// Moves `production` to `to`: the history line first (the commit record), then the pointer.
    /// `details` is stored with the line (the gate's evidence, the command's name). Nothing is
    /// written when production already is `to`.
    pub fn move_production(
        &self,
        kind: Move,
        to: VersionId,
        details: serde_json::Value,
    ) -> Result<ProductionChange, StoreError> {
        let from = self.pointer(Pointer::Production)?;
        let change = ProductionChange {
            name: self.name().to_string(),
            from,
            to,
            changed: from != Some(to),
        };
        if !change.changed {
            return Ok(change);
        }
        let mut entry = HistoryEntry::now(kind.into(), Some(to), from);
        entry.details = details;
        let store = self.store();
        store.write_move(&self.lock, &entry)?;
        store.write_pointer(&self.lock, Pointer::Production, to)?;
        store.append_history(&self.lock, &entry)?;
        store.clear_move(&self.lock)?;
        Ok(change)
    }

    /// Deletes `versions` and leftover `temporaries`, and records the deletion in the history.
    /// The caller decides what may go; this only refuses to delete what a pointer names now.
    pub fn delete(
        &self,
        versions: &[VersionId],
        temporaries: &[PathBuf],
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        let production = self.pointer(Pointer::Production)?;
        let candidate = self.pointer(Pointer::Candidate)?;
        let mut deleted = Vec::with_capacity(versions.len());
        for &version in versions {
            if Some(version) == production || Some(version) == candidate {
                continue;
            }
            self.store().remove_version(&self.lock, version)?;
            deleted.push(version);
        }
        for path in temporaries {
            self.store().remove_temporary(&self.lock, path)?;
        }
        if !deleted.is_empty() {
            let mut entry = HistoryEntry::now(Action::Gc, None, production);
            let mut details = details;
            if let Some(map) = details.as_object_mut() {
                map.insert("deleted".to_owned(), serde_json::json!(deleted));
            }
            entry.details = details;
            self.store().append_history(&self.lock, &entry)?;
        }
        Ok(())
    }

    /// The store's root folder (where the fleet's heartbeats are).
    pub fn root(&self) -> &Path {
        self.catalog.root()
    }

    /// Writes the switch record that tells the fleet which version to load, then when to serve
    /// it (see [`SwitchRecord`]).
    pub fn write_switch(&self, record: &SwitchRecord) -> Result<(), StoreError> {
        self.store().write_switch(&self.lock, record)
    }

    /// Removes the switch record (a switch refused, or a move that does not wait for the fleet).
    pub fn clear_switch(&self) -> Result<(), StoreError> {
        self.store().clear_switch(&self.lock)
    }

    /// Leftovers of interrupted writes older than `min_age`.
    pub fn stale_temporaries(&self, min_age: Duration) -> Result<Vec<PathBuf>, StoreError> {
        self.store().stale_temporaries(self.name(), min_age)
    }

    /// Finishes the production move a killed holder of the lock recorded in `.move` (see the
    /// module docs). Best effort: a store it cannot read here is reported by the caller's own
    /// reads, so this never fails the lock.
    fn complete_interrupted_move(&self) {
        let name = self.name();
        let store = self.store();
        let entry = match store.read_move(&self.lock) {
            Ok(Some(entry)) => entry,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(model = %name, error = %e, "cannot read the record of an interrupted move");
                return;
            }
        };
        let finished = self.finish_move(&entry);
        if let Err(e) = finished.and_then(|()| store.clear_move(&self.lock)) {
            tracing::warn!(model = %name, error = %e, "cannot finish an interrupted production move; the next change retries");
        }
    }

    /// Removes a switch record its writer left behind: one still waiting for the fleet (no
    /// activation time: its writer held the lock, so it is gone), or one naming a version that
    /// production does not. Servers would keep that version loaded for nothing. Best effort.
    fn settle_switch(&self) {
        let name = self.name();
        let abandoned = match self.catalog.switch_record(name) {
            Ok(None) => false,
            Ok(Some(record)) => {
                record.activate_at_ms.is_none()
                    || self.pointer(Pointer::Production).ok().flatten() != Some(record.version)
            }
            // Not a record of ours: the next switch replaces it; nobody acts on it meanwhile.
            Err(
                StoreError::BadSwitch { .. }
                | StoreError::NotAFile { .. }
                | StoreError::TooLarge { .. },
            ) => true,
            Err(_) => false,
        };
        if abandoned {
            if let Err(e) = self.clear_switch() {
                tracing::warn!(model = %name, error = %e, "cannot remove an abandoned switch record");
            }
        }
    }

    fn finish_move(&self, entry: &HistoryEntry) -> Result<(), StoreError> {
        let name = self.name();
        let store = self.store();
        let Some(to) = entry.version else {
            return Ok(());
        };
        let current = match self.pointer(Pointer::Production) {
            Ok(current) => current,
            // A pointer that is not a version id was not written by the interrupted move.
            Err(StoreError::BadPointer { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let moved = if current == Some(to) {
            true
        } else if current == entry.previous && self.catalog.has_version(name, to) {
            store.write_pointer(&self.lock, Pointer::Production, to)?;
            true
        } else {
            false
        };
        if !moved {
            tracing::warn!(
                model = %name,
                recorded = to.get(),
                production = current.map(VersionId::get),
                "dropping an interrupted production move: the pointer was changed since"
            );
            return Ok(());
        }
        let recorded = self
            .store()
            .history_tail(self.name(), 1, |_| true)?
            .entries
            .last()
            == Some(entry);
        if !recorded {
            store.append_history(&self.lock, entry)?;
        }
        tracing::warn!(
            model = %name,
            version = to.get(),
            decided_at = %entry.at,
            "finished a production move whose writer stopped half way"
        );
        Ok(())
    }
}

/// Replays promotions and rollbacks into the stack of production versions, oldest first, so
/// that the entry below the top is where a rollback goes.
///
/// limen 0.1 wrote the pointer before the line, so a process killed between the two left a
/// production version with no line of its own; the next promotion names it as its `previous`,
/// and the replay puts it back in its place.
pub fn production_stack(history: &[HistoryEntry]) -> Vec<VersionId> {
    let mut stack = ProductionStack::default();
    history.iter().for_each(|e| stack.apply(e));
    stack.0
}

/// [`production_stack`] built one line at a time, as the history is streamed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductionStack(pub Vec<VersionId>);

impl ProductionStack {
    pub fn apply(&mut self, entry: &HistoryEntry) {
        let stack = &mut self.0;
        match (entry.action, entry.version) {
            (Action::Promote, Some(v)) => {
                if let Some(previous) = entry.previous {
                    if stack.last() != Some(&previous) {
                        stack.push(previous);
                    }
                }
                stack.push(v);
            }
            (Action::Rollback, Some(v)) => {
                stack.pop();
                if stack.last() != Some(&v) {
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::tests::binary_artifact;

    fn iris() -> ModelName {
        "iris".parse().unwrap()
    }

    /// Publishes the test binary model as a new candidate of `name`.
    pub(crate) fn publish(catalog: &Catalog, name: &ModelName) -> VersionId {
        catalog
            .publish_candidate(name, |v| {
                let mut a = binary_artifact();
                a.name = name.to_string();
                a.version = v.get();
                a.to_json_bytes()
            })
            .unwrap()
    }

    #[test]
    fn a_move_is_recorded_before_the_pointer_changes() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let name = iris();
        let v1 = publish(&catalog, &name);
        let v2 = publish(&catalog, &name);
        assert_eq!(
            catalog.pointer(&name, Pointer::Candidate).unwrap(),
            Some(v2)
        );
        let guard = catalog.lock(&name).unwrap();
        let first = guard
            .move_production(Move::Promote, v1, serde_json::json!({"via": "test"}))
            .unwrap();
        assert!(first.changed && first.from.is_none());
        let again = guard
            .move_production(Move::Promote, v1, serde_json::Value::Null)
            .unwrap();
        assert!(!again.changed);
        guard
            .move_production(Move::Promote, v2, serde_json::Value::Null)
            .unwrap();
        guard
            .move_production(Move::Rollback, v1, serde_json::Value::Null)
            .unwrap();
        drop(guard);
        let history = catalog.history(&name).unwrap();
        let moves: Vec<_> = history
            .entries
            .iter()
            .map(|e| (e.action, e.version, e.previous))
            .collect();
        assert_eq!(
            moves,
            vec![
                (Action::Promote, Some(v1), None),
                (Action::Promote, Some(v2), Some(v1)),
                (Action::Rollback, Some(v1), Some(v2)),
            ]
        );
        assert_eq!(history.entries[0].details["via"], "test");
        assert_eq!(
            catalog.pointer(&name, Pointer::Production).unwrap(),
            Some(v1)
        );
    }

    /// A store where production is `v1` and a move `v1 → v2` was interrupted after `steps` of
    /// its four steps (1: `.move` written, 2: pointer replaced, 3: history line appended).
    fn interrupted_after(steps: usize) -> (tempfile::TempDir, Catalog, VersionId, VersionId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let catalog = Catalog::new(store.clone());
        let name = iris();
        let v1 = publish(&catalog, &name);
        let v2 = publish(&catalog, &name);
        catalog
            .lock(&name)
            .unwrap()
            .move_production(Move::Promote, v1, serde_json::Value::Null)
            .unwrap();
        let lock = store.lock(&name).unwrap();
        let entry = HistoryEntry::now(Action::Promote, Some(v2), Some(v1));
        store.write_move(&lock, &entry).unwrap();
        if steps >= 2 {
            store.write_pointer(&lock, Pointer::Production, v2).unwrap();
        }
        if steps >= 3 {
            store.append_history(&lock, &entry).unwrap();
        }
        (dir, catalog, v1, v2)
    }

    #[test]
    fn the_next_lock_holder_finishes_a_move_interrupted_at_any_step() {
        for steps in 1..=3 {
            let (dir, catalog, v1, v2) = interrupted_after(steps);
            let name = iris();
            let guard = catalog.lock(&name).unwrap();
            assert_eq!(
                guard.pointer(Pointer::Production).unwrap(),
                Some(v2),
                "after {steps}"
            );
            drop(guard);
            let history = catalog.history(&name).unwrap().entries;
            assert_eq!(
                history.len(),
                2,
                "one line per move, after {steps}: {history:?}"
            );
            assert_eq!(production_stack(&history), vec![v1, v2]);
            assert!(!dir.path().join("iris/.move").exists());
        }
    }

    #[test]
    fn a_pointer_moved_by_hand_is_never_overwritten_by_recovery() {
        // Interrupted after step 1, then production moved by hand to a third version.
        let (dir, catalog, _, _) = interrupted_after(1);
        let name = iris();
        let v3 = catalog
            .versions(&name)
            .unwrap()
            .last()
            .map(|v| VersionId::try_from(v.get() + 1).unwrap())
            .unwrap();
        let v3_dir = dir.path().join(format!("iris/{v3}"));
        std::fs::create_dir(&v3_dir).unwrap();
        std::fs::write(v3_dir.join("model.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("iris/production"), format!("{v3}\n")).unwrap();
        let guard = catalog.lock(&name).unwrap();
        assert_eq!(guard.pointer(Pointer::Production).unwrap(), Some(v3));
        drop(guard);
        assert_eq!(catalog.history(&name).unwrap().entries.len(), 1);
        assert!(!dir.path().join("iris/.move").exists());

        // No move recorded, production set back by hand to what the last line replaced: a
        // hand change, left alone (rollback refuses on it).
        let (dir, catalog, v1, v2) = interrupted_after(3);
        drop(catalog.lock(&name).unwrap());
        std::fs::write(dir.path().join("iris/production"), format!("{v1}\n")).unwrap();
        let guard = catalog.lock(&name).unwrap();
        assert_eq!(guard.pointer(Pointer::Production).unwrap(), Some(v1));
        assert_eq!(
            production_stack(&guard.history().unwrap().entries).last(),
            Some(&v2)
        );
    }

    #[test]
    fn a_recorded_move_to_a_version_that_is_gone_is_dropped() {
        let (dir, catalog, v1, v2) = interrupted_after(1);
        std::fs::remove_dir_all(dir.path().join(format!("iris/{v2}"))).unwrap();
        let guard = catalog.lock(&iris()).unwrap();
        assert_eq!(guard.pointer(Pointer::Production).unwrap(), Some(v1));
        assert!(!dir.path().join("iris/.move").exists());
    }

    #[test]
    fn delete_never_removes_what_a_pointer_names_and_records_what_it_removed() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let name = iris();
        let old = publish(&catalog, &name);
        let prod = publish(&catalog, &name);
        let cand = publish(&catalog, &name);
        let guard = catalog.lock(&name).unwrap();
        guard
            .move_production(Move::Promote, prod, serde_json::Value::Null)
            .unwrap();
        guard
            .delete(&[old, prod, cand], &[], serde_json::json!({"keep": 0}))
            .unwrap();
        drop(guard);
        assert_eq!(catalog.versions(&name).unwrap(), vec![prod, cand]);
        let history = catalog.history(&name).unwrap();
        let gc = history.entries.last().unwrap();
        assert_eq!(gc.action, Action::Gc);
        assert_eq!(gc.details["deleted"], serde_json::json!([old.get()]));
        assert_eq!(gc.details["keep"], 0);
    }

    #[test]
    fn load_verified_refuses_a_version_copied_under_another_id() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let name = iris();
        let v = publish(&catalog, &name);
        let copy = dir.path().join("iris").join((v.get() + 1).to_string());
        std::fs::create_dir(&copy).unwrap();
        std::fs::copy(
            dir.path()
                .join("iris")
                .join(v.to_string())
                .join("model.json"),
            copy.join("model.json"),
        )
        .unwrap();
        assert!(catalog.load_verified(&name, v).is_ok());
        let err = catalog
            .load_verified(&name, VersionId::try_from(v.get() + 1).unwrap())
            .unwrap_err();
        assert!(matches!(err, LoadError::Model(_)), "{err}");
    }

    #[test]
    fn rollbacks_walk_back_down_the_promotion_stack() {
        let v = |n: u64| VersionId::try_from(n).unwrap();
        let entry = |action, version: u64| HistoryEntry::now(action, Some(v(version)), None);
        let mut history = vec![
            entry(Action::Promote, 1),
            entry(Action::Promote, 2),
            entry(Action::Promote, 3),
        ];
        assert_eq!(production_stack(&history), vec![v(1), v(2), v(3)]);
        history.push(entry(Action::Rollback, 2));
        assert_eq!(production_stack(&history), vec![v(1), v(2)]);
        history.push(entry(Action::Rollback, 1));
        assert_eq!(production_stack(&history), vec![v(1)]);
        history.push(HistoryEntry::now(Action::Gc, None, None));
        history.push(entry(Action::Promote, 4));
        assert_eq!(production_stack(&history), vec![v(1), v(4)]);
        // Version 5 was promoted by limen 0.1, killed before it wrote its history line; 6's
        // line names it as the production it replaced.
        history.push(HistoryEntry::now(Action::Promote, Some(v(6)), Some(v(5))));
        assert_eq!(production_stack(&history), vec![v(1), v(4), v(5), v(6)]);
    }
}
