//! The models a server answers with, and how they change: scan the store's `production`
//! pointers, then load → verify → warm up → swap, one model at a time.
//!
//! The serving table is an [`ArcSwap`]: a request takes an `Arc` of its model with one atomic
//! load and keeps it to the end, so a swap never disturbs a request in flight, and a version that
//! fails any step is never swapped in (the previous one keeps serving and the failure is recorded
//! for `/models` and logged once). No sockets here.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::model::Model;
use crate::store::{ModelName, Pointer, Store, StoreError, VersionId};
use crate::validate::{load_verified, LoadError};
use crate::watch::ChangeSource;

/// A verified, warmed-up model as served.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: Model,
    pub version: VersionId,
    pub loaded_at: SystemTime,
}

/// What `/models` reports for one model.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelStatus {
    pub name: String,
    /// The `production` pointer as last read.
    pub production: Option<VersionId>,
    /// The `candidate` pointer as last read.
    pub candidate: Option<VersionId>,
    /// The version being served.
    pub loaded: Option<VersionId>,
    pub loaded_at: Option<String>,
    /// Why the production version is not the one served, if it is not.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// What `/models` reports about the store itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStatus {
    pub root: String,
    /// When the store was last listed successfully.
    pub last_scan_ok_at: Option<String>,
    /// Why the last scan could not list the store (unmounted, unreadable…), if it could not.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct Book {
    models: BTreeMap<ModelName, ModelStatus>,
    store: StoreStatus,
    last_scan_ok: Option<SystemTime>,
}

type Table = HashMap<ModelName, Arc<LoadedModel>>;

/// The loaded models of one store.
pub struct Registry {
    store: Store,
    serving: ArcSwap<Table>,
    book: Mutex<Book>,
}

impl Borrow<str> for ModelName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Registry {
    pub fn new(store: Store) -> Self {
        let book = Book {
            store: StoreStatus {
                root: store.root().display().to_string(),
                ..StoreStatus::default()
            },
            ..Book::default()
        };
        Self {
            store,
            serving: ArcSwap::from_pointee(Table::new()),
            book: Mutex::new(book),
        }
    }

    /// The production model served under `name`, if one is loaded. Lock-free.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedModel>> {
        self.serving.load().get(name).cloned()
    }

    /// Status of every model known from the last scan, sorted by name.
    pub fn statuses(&self) -> Vec<ModelStatus> {
        let serving = self.serving.load();
        self.book()
            .models
            .values()
            .map(|status| {
                let mut status = status.clone();
                if let Some(loaded) = serving.get(status.name.as_str()) {
                    status.loaded = Some(loaded.version);
                    status.loaded_at = Some(rfc3339(loaded.loaded_at));
                }
                status
            })
            .collect()
    }

    pub fn store_status(&self) -> StoreStatus {
        self.book().store.clone()
    }

    /// Seconds since the store was last listed successfully, if ever.
    pub fn seconds_since_scan(&self) -> Option<f64> {
        let at = self.book().last_scan_ok?;
        Some(at.elapsed().map_or(0.0, |d| d.as_secs_f64()))
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock cannot leave the book inconsistent (each update is a
        // plain assignment), so a poisoned lock is still usable.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads every model's pointers and swaps in production versions that changed. Blocking:
    /// run it off the async threads. Returns whether the store root could be listed.
    pub fn scan(&self) -> bool {
        let names = match self.store.models() {
            Ok(names) => names,
            Err(e) => {
                self.note_store_error(&e);
                return false;
            }
        };
        let current = self.serving.load_full();
        let mut loads = Vec::new();
        let mut statuses = BTreeMap::new();
        {
            let book = self.book();
            for name in &names {
                let previous = book.models.get(name);
                let (status, load) = self.scan_model(name, current.get(name), previous);
                statuses.insert(name.clone(), status);
                loads.extend(load);
            }
        }
        let gone: Vec<&ModelName> = current
            .keys()
            .filter(|n| !statuses.contains_key(*n))
            .collect();
        if !loads.is_empty() || !gone.is_empty() {
            for name in &gone {
                tracing::info!(model = %name, "model folder removed from the store; no longer serving it");
            }
            self.serving.rcu(|table| {
                let mut table: Table = table
                    .iter()
                    .filter(|(n, _)| statuses.contains_key(*n))
                    .map(|(n, m)| (n.clone(), Arc::clone(m)))
                    .collect();
                for (name, loaded) in &loads {
                    table.insert(name.clone(), Arc::clone(loaded));
                }
                table
            });
        }
        let mut book = self.book();
        book.models = statuses;
        if book.store.error.take().is_some() {
            tracing::info!(root = %book.store.root, "store is readable again");
        }
        let now = SystemTime::now();
        book.last_scan_ok = Some(now);
        book.store.last_scan_ok_at = Some(rfc3339(now));
        true
    }

    /// Reads one model's pointers; loads its production version if that is not what is served.
    fn scan_model(
        &self,
        name: &ModelName,
        served: Option<&Arc<LoadedModel>>,
        previous: Option<&ModelStatus>,
    ) -> (ModelStatus, Option<(ModelName, Arc<LoadedModel>)>) {
        let mut status = ModelStatus {
            name: name.to_string(),
            candidate: self
                .store
                .read_pointer(name, Pointer::Candidate)
                .ok()
                .flatten(),
            ..ModelStatus::default()
        };
        let mut load = None;
        let error = match self.store.read_pointer(name, Pointer::Production) {
            Err(e) => Some(format!("cannot read the production pointer: {e}")),
            Ok(None) => served.map(|s| {
                format!(
                    "the production pointer is missing; still serving version {}",
                    s.version
                )
            }),
            Ok(Some(version)) => {
                status.production = Some(version);
                if served.is_some_and(|s| s.version == version) {
                    None
                } else {
                    match self.load(name, version) {
                        Ok(loaded) => {
                            tracing::info!(
                                model = %name,
                                version = version.get(),
                                previous = served.map(|s| s.version.get()),
                                "serving new production version"
                            );
                            load = Some((name.clone(), Arc::new(loaded)));
                            None
                        }
                        Err(e) => Some(format!("cannot serve version {version}: {e}")),
                    }
                }
            }
        };
        if let Some(error) = error {
            let same_as_before = previous.and_then(|p| p.last_error.as_ref()) == Some(&error);
            if same_as_before {
                status.last_error_at = previous.and_then(|p| p.last_error_at.clone());
            } else {
                tracing::warn!(model = %name, error = %error, "keeping the version already served");
                status.last_error_at = Some(rfc3339(SystemTime::now()));
            }
            status.last_error = Some(error);
        }
        (status, load)
    }

    /// Load → verify (checksum, schema, identity) → warm up (the probe self-test).
    fn load(&self, name: &ModelName, version: VersionId) -> Result<LoadedModel, String> {
        let model = load_verified(&self.store, name, version).map_err(|e| match e {
            LoadError::Store(e) => e.to_string(),
            LoadError::Model(e) => e.to_string(),
        })?;
        model
            .self_test()
            .map_err(|why| format!("failed its warm-up: {why}"))?;
        Ok(LoadedModel {
            model,
            version,
            loaded_at: SystemTime::now(),
        })
    }

    fn note_store_error(&self, e: &StoreError) {
        let message = error_chain(e);
        let mut book = self.book();
        if book.store.error.as_ref() != Some(&message) {
            tracing::warn!(error = %message, "cannot read the store; still serving the models already loaded");
        }
        book.store.error = Some(message);
    }

    /// Rescans whenever `changes` says so, until the returned future is dropped.
    pub async fn run(self: Arc<Self>, mut changes: ChangeSource) {
        loop {
            changes.changed().await;
            let registry = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || registry.scan()).await {
                Ok(readable) => changes.rearm(readable),
                Err(e) => {
                    tracing::error!(error = %e, "store scan panicked; retrying at the next change")
                }
            }
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `error: cause: cause`, for errors shown to operators in one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{binary_artifact, multinomial_artifact};

    fn publish(
        store: &Store,
        name: &ModelName,
        tweak: impl Fn(&mut crate::model::ModelArtifact),
    ) -> VersionId {
        store
            .publish(name, |v| {
                let mut a = binary_artifact();
                a.name = name.to_string();
                a.version = v.get();
                tweak(&mut a);
                a.to_json_bytes()
            })
            .unwrap()
    }

    #[test]
    fn a_scan_loads_production_and_swaps_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let iris: ModelName = "iris".parse().unwrap();
        let registry = Registry::new(store.clone());
        assert!(registry.scan());
        assert!(registry.get("iris").is_none());

        let v1 = publish(&store, &iris, |_| {});
        store.write_pointer(&iris, Pointer::Production, v1).unwrap();
        registry.scan();
        let first = registry.get("iris").unwrap();
        assert_eq!(first.version, v1);
        registry.scan();
        assert!(
            Arc::ptr_eq(&first, &registry.get("iris").unwrap()),
            "reloaded an unchanged model"
        );

        let v2 = publish(&store, &iris, |_| {});
        store.write_pointer(&iris, Pointer::Production, v2).unwrap();
        registry.scan();
        assert_eq!(registry.get("iris").unwrap().version, v2);
        // The request that held the old model still has it, whole.
        assert_eq!(first.version, v1);
    }

    #[test]
    fn a_bad_version_keeps_the_old_one_serving_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let iris: ModelName = "iris".parse().unwrap();
        let v1 = publish(&store, &iris, |_| {});
        store.write_pointer(&iris, Pointer::Production, v1).unwrap();
        let registry = Registry::new(store.clone());
        registry.scan();

        // Weights so large that probes overflow: the file verifies, but the warm-up fails.
        let v2 = publish(&store, &iris, |a| {
            let huge = multinomial_artifact();
            a.kind = huge.kind;
            a.classes = huge.classes;
            a.positive_class = None;
            a.coefficients = vec![vec![1e300], vec![0.0], vec![0.0]];
            a.intercepts = vec![0.0; 3];
        });
        store.write_pointer(&iris, Pointer::Production, v2).unwrap();
        registry.scan();
        assert_eq!(registry.get("iris").unwrap().version, v1);
        let status = &registry.statuses()[0];
        assert_eq!(status.production, Some(v2));
        assert_eq!(status.loaded, Some(v1));
        let err = status.last_error.as_deref().unwrap();
        assert!(err.contains(&v2.to_string()), "{err}");

        // Garbage in the pointer: same story.
        std::fs::write(store.pointer_path(&iris, Pointer::Production), "oops").unwrap();
        registry.scan();
        assert_eq!(registry.get("iris").unwrap().version, v1);
        assert!(registry.statuses()[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("oops"));

        // Fixed: the error clears.
        store.write_pointer(&iris, Pointer::Production, v1).unwrap();
        registry.scan();
        assert_eq!(registry.statuses()[0].last_error, None);
    }

    #[test]
    fn an_unreadable_store_keeps_serving_and_a_removed_model_stops() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::new(&root);
        let iris: ModelName = "iris".parse().unwrap();
        let v1 = publish(&store, &iris, |_| {});
        store.write_pointer(&iris, Pointer::Production, v1).unwrap();
        let registry = Registry::new(store.clone());
        registry.scan();

        // The root replaced by a file (an unmounted volume looks similar): keep serving.
        let aside = dir.path().join("aside");
        std::fs::rename(&root, &aside).unwrap();
        std::fs::write(&root, b"not a folder").unwrap();
        assert!(!registry.scan());
        assert_eq!(registry.get("iris").unwrap().version, v1);
        assert!(registry.store_status().error.is_some());

        // Back, then the model's folder removed: it stops being served.
        std::fs::remove_file(&root).unwrap();
        std::fs::rename(&aside, &root).unwrap();
        assert!(registry.scan());
        assert!(registry.store_status().error.is_none());
        std::fs::remove_dir_all(store.model_dir(&iris)).unwrap();
        registry.scan();
        assert!(registry.get("iris").is_none());
        assert!(registry.statuses().is_empty());
    }
}
