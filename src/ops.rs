//! Operator actions on the store (`limen models …`): summaries for `list` and `show`, and the
//! changes `promote`, `rollback` and `gc`. Every change runs under the model's lock and is
//! appended to its history with who, where and which command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::model::Model;
use crate::store::{
    production_stack, Action, HistoryEntry, ModelName, Pointer, Store, StoreError, VersionId,
};
use crate::validate::{load_verified, LoadError};

/// Why an operator action failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{name}/{version} cannot be used")]
    Unusable {
        name: String,
        version: VersionId,
        #[source]
        source: LoadError,
    },
    /// The action would be wrong here; the message says why and what to do instead.
    #[error("{0}")]
    Refused(String),
}

/// One row of `limen models list`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub production: Option<VersionId>,
    pub candidate: Option<VersionId>,
    pub versions: usize,
    pub last_promotion: Option<HistoryEntry>,
}

/// Every model in the store with its pointers, version count and last production change.
pub fn list(store: &Store) -> Result<Vec<ModelSummary>, OpsError> {
    store
        .models()?
        .into_iter()
        .map(|name| {
            let (history, _) = store.history(&name)?;
            Ok(ModelSummary {
                production: store.read_pointer(&name, Pointer::Production)?,
                candidate: store.read_pointer(&name, Pointer::Candidate)?,
                versions: store.versions(&name)?.len(),
                last_promotion: history
                    .into_iter()
                    .rev()
                    .find(|e| matches!(e.action, Action::Promote | Action::Rollback)),
                name: name.to_string(),
            })
        })
        .collect()
}

/// What `limen models show` prints.
#[derive(Debug, Serialize)]
pub struct ModelReport {
    pub name: String,
    pub production: Option<VersionId>,
    pub candidate: Option<VersionId>,
    pub versions: Vec<VersionId>,
    /// Metadata of the production version (else the candidate), if it loads.
    pub model: Option<serde_json::Value>,
    /// Why that version does not load, if it does not.
    pub model_error: Option<String>,
    pub history: Vec<HistoryEntry>,
    /// History lines that could not be parsed.
    pub unreadable_history_lines: usize,
}

/// Pointers, versions, metadata and history of one model.
pub fn show(store: &Store, name: &ModelName) -> Result<ModelReport, OpsError> {
    store.require_model(name)?;
    let production = store.read_pointer(name, Pointer::Production)?;
    let candidate = store.read_pointer(name, Pointer::Candidate)?;
    let (history, unreadable_history_lines) = store.history(name)?;
    let mut report = ModelReport {
        name: name.to_string(),
        production,
        candidate,
        versions: store.versions(name)?,
        model: None,
        model_error: None,
        history,
        unreadable_history_lines,
    };
    if let Some(version) = production.or(candidate) {
        match load_verified(store, name, version) {
            Ok(model) => report.model = serde_json::to_value(model.metadata()).ok(),
            Err(e) => report.model_error = Some(format!("version {version}: {e}")),
        }
    }
    Ok(report)
}

/// A change of the `production` pointer.
#[derive(Debug, Clone, Serialize)]
pub struct PointerChange {
    pub name: String,
    pub from: Option<VersionId>,
    pub to: VersionId,
    /// False when production already was `to` and nothing was written.
    pub changed: bool,
}

fn load_usable(store: &Store, name: &ModelName, version: VersionId) -> Result<Model, OpsError> {
    let unusable = |source| OpsError::Unusable {
        name: name.to_string(),
        version,
        source,
    };
    let model = load_verified(store, name, version).map_err(unusable)?;
    model.self_test().map_err(|why| {
        OpsError::Refused(format!(
            "{name}/{version} fails its probe self-test ({why}); it cannot be served"
        ))
    })?;
    Ok(model)
}

/// Points production at `version` after checking its integrity and probes; no quality gate
/// (that is `limen validate`'s job): this is the operator's override.
pub fn promote(
    store: &Store,
    name: &ModelName,
    version: VersionId,
) -> Result<PointerChange, OpsError> {
    store.require_model(name)?;
    let lock = store.lock(name)?;
    load_usable(store, name, version)?;
    let from = store.read_pointer(name, Pointer::Production)?;
    if from == Some(version) {
        return Ok(PointerChange {
            name: name.to_string(),
            from,
            to: version,
            changed: false,
        });
    }
    store.write_pointer(name, Pointer::Production, version)?;
    let mut entry = HistoryEntry::now(Action::Promote, Some(version), from);
    entry.details = serde_json::json!({ "via": "limen models promote" });
    store.append_history(name, &entry, &lock)?;
    Ok(PointerChange {
        name: name.to_string(),
        from,
        to: version,
        changed: true,
    })
}

/// Moves production back to the version it replaced, as the history tells: promotions stack
/// up and each rollback steps one down. Refuses when there is nothing to go back to, when
/// production was changed by hand behind the history's back, or when the earlier version no
/// longer loads.
pub fn rollback(store: &Store, name: &ModelName) -> Result<PointerChange, OpsError> {
    store.require_model(name)?;
    let lock = store.lock(name)?;
    let current = store
        .read_pointer(name, Pointer::Production)?
        .ok_or_else(|| {
            OpsError::Refused(format!(
                "{name} has no production version to roll back from"
            ))
        })?;
    let (history, _) = store.history(name)?;
    let stack = production_stack(&history);
    match stack.last() {
        Some(top) if *top == current => {}
        Some(top) => {
            return Err(OpsError::Refused(format!(
                "{name}'s production is {current}, but its history ends at {top}: the pointer was changed outside limen; use `limen models promote {name} VERSION`"
            )))
        }
        None => {
            return Err(OpsError::Refused(format!(
                "{name} has no promotions in its history, so there is no earlier production version; use `limen models promote {name} VERSION`"
            )))
        }
    }
    let Some(&target) = stack.len().checked_sub(2).and_then(|i| stack.get(i)) else {
        return Err(OpsError::Refused(format!(
            "{name}/{current} is the first production version in the history; there is nothing earlier to roll back to"
        )));
    };
    load_usable(store, name, target)?;
    store.write_pointer(name, Pointer::Production, target)?;
    let entry = HistoryEntry::now(Action::Rollback, Some(target), Some(current));
    store.append_history(name, &entry, &lock)?;
    Ok(PointerChange {
        name: name.to_string(),
        from: Some(current),
        to: target,
        changed: true,
    })
}

/// What `gc` removed, or would remove with `--dry-run`, and why the rest stays.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    pub name: String,
    pub dry_run: bool,
    pub deleted: Vec<VersionId>,
    /// Each kept version and the reasons it is kept.
    pub kept: BTreeMap<VersionId, Vec<&'static str>>,
    /// Leftovers of interrupted writes that were (or would be) removed.
    pub temporaries: Vec<PathBuf>,
}

/// Deletes every version except production, candidate and those promoted (or rolled back to) in
/// the last `keep` promotions and rollbacks of the history; also removes temporary leftovers
/// older than `temp_age`.
pub fn gc(
    store: &Store,
    name: &ModelName,
    keep: usize,
    temp_age: Duration,
    dry_run: bool,
) -> Result<GcReport, OpsError> {
    store.require_model(name)?;
    let lock = store.lock(name)?;
    let production = store.read_pointer(name, Pointer::Production)?;
    let candidate = store.read_pointer(name, Pointer::Candidate)?;
    let (history, _) = store.history(name)?;
    // The versions the last `keep` production changes moved to; gc's own lines do not use up the
    // allowance. A promotion killed between its pointer write and its history line is known only
    // as the next line's `previous`: such a version counts as promoted there too.
    let named: std::collections::HashSet<VersionId> =
        history.iter().filter_map(|e| e.version).collect();
    let recent: Vec<VersionId> = history
        .iter()
        .rev()
        .filter(|e| matches!(e.action, Action::Promote | Action::Rollback))
        .take(keep)
        .flat_map(|e| [e.version, e.previous.filter(|p| !named.contains(p))])
        .flatten()
        .collect();

    let mut report = GcReport {
        name: name.to_string(),
        dry_run,
        deleted: Vec::new(),
        kept: BTreeMap::new(),
        temporaries: store.stale_temporaries(name, temp_age)?,
    };
    for version in store.versions(name)? {
        let mut reasons = Vec::new();
        if production == Some(version) {
            reasons.push("production");
        }
        if candidate == Some(version) {
            reasons.push("candidate");
        }
        if recent.contains(&version) {
            reasons.push("in recent history");
        }
        if reasons.is_empty() {
            report.deleted.push(version);
        } else {
            report.kept.insert(version, reasons);
        }
    }
    if dry_run {
        return Ok(report);
    }
    for version in &report.deleted {
        store.remove_version(name, *version)?;
    }
    for path in &report.temporaries {
        store.remove_temporary(path)?;
    }
    if !report.deleted.is_empty() {
        let mut entry = HistoryEntry::now(Action::Gc, None, production);
        entry.details = serde_json::json!({ "deleted": report.deleted, "keep": keep });
        store.append_history(name, &entry, &lock)?;
    }
    Ok(report)
}
