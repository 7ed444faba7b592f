//! Operator actions on the store (`limen models …`): summaries for `list` and `show`, and the
//! changes `promote`, `rollback` and `gc`. Every change runs under the model's lock and is
//! appended to its history with who, where and which command.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::catalog::{Catalog, LoadError, Move, ProductionStack};
use crate::model::Model;
use crate::store::{Action, HistoryEntry, ModelName, Pointer, StoreError, VersionId};
use crate::switch::{self, SwitchError, SwitchOptions, Switched};

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

impl From<SwitchError> for OpsError {
    fn from(e: SwitchError) -> Self {
        match e {
            SwitchError::Store(e) => Self::Store(e),
            refused @ SwitchError::FleetNotReady { .. } => Self::Refused(refused.to_string()),
        }
    }
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

/// What `limen models list` prints: one row per model (a JSON array with `--json`).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct ModelList(pub Vec<ModelSummary>);

/// Every model in the store with its pointers, version count and last production change.
pub fn list(catalog: &Catalog) -> Result<ModelList, OpsError> {
    catalog
        .models()?
        .into_iter()
        .map(|name| {
            Ok(ModelSummary {
                production: catalog.pointer(&name, Pointer::Production)?,
                candidate: catalog.pointer(&name, Pointer::Candidate)?,
                versions: catalog.versions(&name)?.len(),
                last_promotion: catalog.last_move(&name)?,
                name: name.to_string(),
            })
        })
        .collect::<Result<_, OpsError>>()
        .map(ModelList)
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
    /// Its training metrics, for the text form (the JSON form has them in `model`).
    #[serde(skip)]
    pub metrics: Option<crate::model::Metrics>,
    /// Why that version does not load, if it does not.
    pub model_error: Option<String>,
    /// The last [`SHOWN_HISTORY`] history lines, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Whether the history holds earlier lines than those.
    pub earlier_history: bool,
    /// History lines that could not be read, among those read.
    pub unreadable_history_lines: usize,
}

/// History lines `limen models show` prints (the file holds them all).
pub const SHOWN_HISTORY: usize = 50;

/// Pointers, versions, metadata and history of one model.
pub fn show(catalog: &Catalog, name: &ModelName) -> Result<ModelReport, OpsError> {
    catalog.require_model(name)?;
    let production = catalog.pointer(name, Pointer::Production)?;
    let candidate = catalog.pointer(name, Pointer::Candidate)?;
    let history = catalog.history_tail(name, SHOWN_HISTORY, |_| true)?;
    let mut report = ModelReport {
        name: name.to_string(),
        production,
        candidate,
        versions: catalog.versions(name)?,
        model: None,
        metrics: None,
        model_error: None,
        history: history.entries,
        earlier_history: history.earlier,
        unreadable_history_lines: history.unreadable,
    };
    if let Some(version) = production.or(candidate) {
        match catalog.load_verified(name, version) {
            Ok(model) => {
                report.metrics = Some(model.artifact().metrics.clone());
                report.model = Some(
                    serde_json::to_value(model.metadata())
                        .expect("model metadata is strings and finite numbers, which serialize"),
                )
            }
            Err(e) => report.model_error = Some(format!("version {version}: {e}")),
        }
    }
    Ok(report)
}

/// A change of the `production` pointer by `promote` or `rollback`.
#[derive(Debug, Clone, Serialize)]
pub struct PointerChange {
    #[serde(flatten)]
    pub switched: Switched,
    #[serde(skip)]
    pub kind: Move,
}

impl fmt::Display for PointerChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.switched.change;
        let verb = match self.kind {
            Move::Promote => "promoted",
            Move::Rollback => "rolled back",
        };
        if c.changed {
            writeln!(
                f,
                "{verb} {}: production {} -> {}",
                c.name,
                opt(c.from),
                c.to
            )?;
            if let Some(at) = self.switched.activate_at_ms {
                writeln!(
                    f,
                    "the {} live server(s) loaded it in {} ms, then switched together at {}",
                    self.switched.replicas.len(),
                    self.switched.waited_ms,
                    crate::store::rfc3339_from_ms(at)
                )?;
            }
            Ok(())
        } else {
            writeln!(
                f,
                "{}/{} already is production; nothing changed",
                c.name, c.to
            )
        }
    }
}

fn load_usable(catalog: &Catalog, name: &ModelName, version: VersionId) -> Result<Model, OpsError> {
    let unusable = |source| OpsError::Unusable {
        name: name.to_string(),
        version,
        source,
    };
    let model = catalog.load_verified(name, version).map_err(unusable)?;
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
    catalog: &Catalog,
    name: &ModelName,
    version: VersionId,
    switch: SwitchOptions,
) -> Result<PointerChange, OpsError> {
    catalog.require_model(name)?;
    let guard = catalog.lock(name)?;
    load_usable(catalog, name, version)?;
    let switched = switch::move_production(
        &guard,
        Move::Promote,
        version,
        serde_json::json!({ "via": "limen models promote" }),
        switch,
    )?;
    Ok(PointerChange {
        switched,
        kind: Move::Promote,
    })
}

/// Moves production back to the version it replaced, as the history tells: promotions stack
/// up and each rollback steps one down. Refuses when there is nothing to go back to, when
/// production was changed by hand behind the history's back, or when the earlier version no
/// longer loads.
pub fn rollback(
    catalog: &Catalog,
    name: &ModelName,
    switch: SwitchOptions,
) -> Result<PointerChange, OpsError> {
    rollback_from(catalog, name, None, serde_json::Value::Null, switch)
}

/// [`rollback`], refused unless production still is `expected` when the lock is taken (a
/// watcher rolls back the version it watched, never one promoted since); `details` go in the
/// history line (why).
pub fn rollback_from(
    catalog: &Catalog,
    name: &ModelName,
    expected: Option<VersionId>,
    details: serde_json::Value,
    switch: SwitchOptions,
) -> Result<PointerChange, OpsError> {
    catalog.require_model(name)?;
    let guard = catalog.lock(name)?;
    let current = guard.pointer(Pointer::Production)?.ok_or_else(|| {
        OpsError::Refused(format!(
            "{name} has no production version to roll back from"
        ))
    })?;
    if let Some(expected) = expected.filter(|e| *e != current) {
        return Err(OpsError::Refused(format!(
            "{name}'s production moved from {expected} to {current} meanwhile; not rolling back"
        )));
    }
    // Streamed: the stack holds version ids, not the lines.
    let mut stack = ProductionStack::default();
    guard.for_each_history(|e| stack.apply(&e))?;
    let stack = stack.0;
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
    load_usable(catalog, name, target)?;
    let switched = switch::move_production(&guard, Move::Rollback, target, details, switch)?;
    Ok(PointerChange {
        switched,
        kind: Move::Rollback,
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

/// Deletes every version except production, candidate, the rollback target and those promoted
/// (or rolled back to) in the last `keep` promotions and rollbacks of the history; also removes
/// temporary leftovers older than `temp_age`.
pub fn gc(
    catalog: &Catalog,
    name: &ModelName,
    keep: usize,
    temp_age: Duration,
    dry_run: bool,
) -> Result<GcReport, OpsError> {
    catalog.require_model(name)?;
    let guard = catalog.lock(name)?;
    let production = guard.pointer(Pointer::Production)?;
    let candidate = guard.pointer(Pointer::Candidate)?;
    // The versions the last `keep` production changes moved to; gc's own lines do not use up the
    // allowance. A promotion killed between its pointer write and its history line is known only
    // as the next line's `previous`: such a version counts as promoted there too. Streamed:
    // what is held is version ids and the last `keep` moves, not the lines.
    let mut named: HashSet<VersionId> = HashSet::new();
    let mut moves: std::collections::VecDeque<(Option<VersionId>, Option<VersionId>)> =
        std::collections::VecDeque::with_capacity(keep.min(1024));
    // Where `limen models rollback` (and a tripped `limen watch`) would go: kept whatever
    // `keep` says, or the next rollback would find it deleted.
    let mut stack = ProductionStack::default();
    guard.for_each_history(|e| {
        stack.apply(&e);
        named.extend(e.version);
        if matches!(e.action, Action::Promote | Action::Rollback) && keep > 0 {
            if moves.len() == keep {
                moves.pop_front();
            }
            moves.push_back((e.version, e.previous));
        }
    })?;
    let recent: Vec<VersionId> = moves
        .iter()
        .flat_map(|(version, previous)| [*version, previous.filter(|p| !named.contains(p))])
        .flatten()
        .collect();

    let rollback_target = match stack.0.as_slice() {
        [.., below, top] if Some(*top) == production => Some(*below),
        _ => None,
    };

    let mut report = GcReport {
        name: name.to_string(),
        dry_run,
        deleted: Vec::new(),
        kept: BTreeMap::new(),
        temporaries: guard.stale_temporaries(temp_age)?,
    };
    for version in catalog.versions(name)? {
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
        if rollback_target == Some(version) {
            reasons.push("rollback target");
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
    guard.delete(
        &report.deleted,
        &report.temporaries,
        serde_json::json!({ "keep": keep }),
    )?;
    Ok(report)
}

fn opt(v: Option<VersionId>) -> String {
    v.map_or("-".to_owned(), |v| v.to_string())
}

fn joined(versions: &[VersionId]) -> String {
    versions
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for ModelList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<24} {:>15} {:>15} {:>8}  LAST PROMOTION",
            "MODEL", "PRODUCTION", "CANDIDATE", "VERSIONS"
        )?;
        for r in &self.0 {
            let last = r.last_promotion.as_ref().map_or("-".to_owned(), |e| {
                format!(
                    "{} {} {} by {}",
                    e.at,
                    e.action.as_str(),
                    opt(e.version),
                    e.user
                )
            });
            writeln!(
                f,
                "{:<24} {:>15} {:>15} {:>8}  {last}",
                r.name,
                opt(r.production),
                opt(r.candidate),
                r.versions
            )?;
        }
        Ok(())
    }
}

/// The served version's metadata as a few lines of text (`--json` prints all of it): what it
/// predicts, from what, and where it came from.
fn write_summary(f: &mut fmt::Formatter<'_>, m: &serde_json::Value) -> fmt::Result {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_owned();
    let num = |v: &serde_json::Value| v.as_f64().map_or("?".to_owned(), |x| format!("{x:.4}"));
    let classes: Vec<String> = m["classes"]
        .as_array()
        .map(|c| c.iter().map(text).collect())
        .unwrap_or_default();
    let others = |positive: &str| {
        classes
            .iter()
            .filter(|c| *c != positive)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let predicts = match (m["positive_class"].as_str(), m["threshold"].as_f64()) {
        (Some(positive), Some(t)) => format!("{positive} (P ≥ {t}) against {}", others(positive)),
        (Some(positive), None) => format!("{positive} against {}", others(positive)),
        (None, _) => format!("one of {}", classes.join(", ")),
    };
    writeln!(
        f,
        "version     {} ({}, trained {})",
        m["version"],
        text(&m["kind"]),
        text(&m["created_at"])
    )?;
    writeln!(
        f,
        "predicts    {predicts} (label column {})",
        text(&m["label_column"])
    )?;
    let features = m["features"].as_array().map_or(&[][..], Vec::as_slice);
    writeln!(
        f,
        "features    {:<20} {:>10} {:>10} {:>10} {:>10}",
        "", "min", "max", "mean", "std"
    )?;
    let prep = m["preprocessing"].as_array();
    for (i, feature) in features.iter().enumerate() {
        let column = prep.and_then(|c| c.get(i));
        match column.filter(|c| c["type"] == "categorical") {
            // A category's statistics are of its index: its categories say more.
            Some(c) => {
                let names: Vec<String> = c["categories"]
                    .as_array()
                    .map(|n| n.iter().map(text).collect())
                    .unwrap_or_default();
                let shown = if names.len() > 8 {
                    format!("{}, … ({} in all)", names[..8].join(", "), names.len())
                } else {
                    names.join(", ")
                };
                let other = c["other"].as_array().map_or(0, Vec::len);
                let other = if other > 0 {
                    format!("; {other} rare ones as one \"other\"")
                } else {
                    String::new()
                };
                let missing = if c["missing"] == true {
                    "; missing: its own indicator"
                } else {
                    "; missing: as unseen"
                };
                writeln!(
                    f,
                    "  {:<30} categories: {shown}{other}{missing}",
                    text(&feature["name"])
                )?;
            }
            None => {
                let impute = column
                    .and_then(|c| c["impute"].as_f64())
                    .map_or(String::new(), |v| format!("   missing → {v:.4}"));
                writeln!(
                    f,
                    "  {:<30} {:>10} {:>10} {:>10} {:>10}{impute}",
                    text(&feature["name"]),
                    num(&feature["min"]),
                    num(&feature["max"]),
                    num(&feature["mean"]),
                    num(&feature["std"])
                )?;
            }
        }
    }
    let p = &m["provenance"];
    let holdout = match p["holdout"]["rows"].as_u64() {
        Some(rows) => format!(
            ", {rows} held out: {}, share {}",
            p["holdout"]["method"].as_str().unwrap_or("?"),
            p["holdout"]["share"]
        ),
        None => ", none held out".to_owned(),
    };
    writeln!(
        f,
        "trained on  {} ({} rows{holdout}) by {}",
        text(&p["data_path"]),
        p["rows"],
        text(&p["trainer"])
    )
}

impl fmt::Display for ModelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model       {}", self.name)?;
        writeln!(f, "production  {}", opt(self.production))?;
        writeln!(f, "candidate   {}", opt(self.candidate))?;
        writeln!(f, "versions    {}", joined(&self.versions))?;
        if let Some(m) = &self.model {
            write_summary(f, m)?;
        }
        if let Some(metrics) = &self.metrics {
            writeln!(f, "metrics")?;
            write!(f, "{metrics}")?;
        }
        if let Some(e) = &self.model_error {
            writeln!(f, "error       {e}")?;
        }
        if self.earlier_history {
            writeln!(
                f,
                "history     (the last {}; history.jsonl holds the earlier ones)",
                self.history.len()
            )?;
        } else {
            writeln!(f, "history")?;
        }
        for e in &self.history {
            writeln!(
                f,
                "  {} {} {} (was {}) by {}@{}: {}",
                e.at,
                e.action.as_str(),
                opt(e.version),
                opt(e.previous),
                e.user,
                e.host,
                e.command
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for GcReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        writeln!(
            f,
            "{}: {verb} {} version(s): {}",
            self.name,
            self.deleted.len(),
            joined(&self.deleted)
        )?;
        for (v, why) in &self.kept {
            writeln!(f, "  kept {v}: {}", why.join(", "))?;
        }
        for t in &self.temporaries {
            writeln!(f, "  {verb} leftover {}", t.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iris() -> ModelName {
        "iris".parse().unwrap()
    }

    fn publish(catalog: &Catalog) -> VersionId {
        crate::catalog::tests::publish(catalog, &iris())
    }

    fn production(catalog: &Catalog) -> Option<VersionId> {
        catalog.pointer(&iris(), Pointer::Production).unwrap()
    }

    #[test]
    fn promote_and_rollback_walk_the_history_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let (v1, v2, v3) = (publish(&catalog), publish(&catalog), publish(&catalog));
        let refused = rollback(&catalog, &iris(), SwitchOptions::default()).unwrap_err();
        assert!(
            refused.to_string().contains("no production version"),
            "{refused}"
        );

        for v in [v1, v2, v3] {
            let change = promote(&catalog, &iris(), v, SwitchOptions::default()).unwrap();
            assert!(change.switched.change.changed);
        }
        let same = promote(&catalog, &iris(), v3, SwitchOptions::default()).unwrap();
        assert!(!same.switched.change.changed);
        assert!(same.to_string().contains("already is production"), "{same}");

        let back = rollback(&catalog, &iris(), SwitchOptions::default()).unwrap();
        assert_eq!(
            (back.switched.change.from, back.switched.change.to),
            (Some(v3), v2)
        );
        assert!(back.to_string().starts_with("rolled back iris"), "{back}");
        rollback(&catalog, &iris(), SwitchOptions::default()).unwrap();
        assert_eq!(production(&catalog), Some(v1));
        let first = rollback(&catalog, &iris(), SwitchOptions::default()).unwrap_err();
        assert!(first.to_string().contains("nothing earlier"), "{first}");

        // A pointer moved by hand: rollback refuses rather than guess.
        std::fs::write(dir.path().join("iris/production"), format!("{v3}\n")).unwrap();
        let refused = rollback(&catalog, &iris(), SwitchOptions::default()).unwrap_err();
        assert!(
            refused.to_string().contains("changed outside limen"),
            "{refused}"
        );
        assert_eq!(production(&catalog), Some(v3));
    }

    #[test]
    fn promote_refuses_a_version_that_is_missing_corrupt_or_fails_its_probes() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let good = publish(&catalog);
        promote(&catalog, &iris(), good, SwitchOptions::default()).unwrap();
        let missing = VersionId::try_from(good.get() + 1000).unwrap();
        assert!(matches!(
            promote(&catalog, &iris(), missing, SwitchOptions::default()),
            Err(OpsError::Unusable { .. })
        ));
        let bad = publish(&catalog);
        std::fs::write(dir.path().join(format!("iris/{bad}/model.json")), b"{}").unwrap();
        assert!(matches!(
            promote(&catalog, &iris(), bad, SwitchOptions::default()),
            Err(OpsError::Unusable { .. })
        ));
        let overflowing = catalog
            .publish_candidate(&iris(), |v| {
                let mut a = crate::model::tests::multinomial_artifact();
                a.name = "iris".into();
                a.version = v.get();
                a.coefficients = vec![vec![1e300], vec![0.0], vec![0.0]];
                a.intercepts = vec![0.0; 3];
                a.to_json_bytes()
            })
            .unwrap();
        assert!(matches!(
            promote(&catalog, &iris(), overflowing, SwitchOptions::default()),
            Err(OpsError::Refused(_))
        ));
        assert_eq!(production(&catalog), Some(good));
    }

    #[test]
    fn a_rollback_still_works_after_gc_keeps_one() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let versions: Vec<VersionId> = (0..3).map(|_| publish(&catalog)).collect();
        for &v in &versions {
            promote(&catalog, &iris(), v, SwitchOptions::default()).unwrap();
        }
        let done = gc(&catalog, &iris(), 1, Duration::ZERO, false).unwrap();
        assert_eq!(done.deleted, vec![versions[0]]);
        let back = rollback(&catalog, &iris(), SwitchOptions::default()).unwrap();
        assert_eq!(back.switched.change.to, versions[1]);
    }

    #[test]
    fn gc_keeps_what_is_named_and_records_what_it_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let versions: Vec<VersionId> = (0..5).map(|_| publish(&catalog)).collect();
        promote(&catalog, &iris(), versions[1], SwitchOptions::default()).unwrap();
        promote(&catalog, &iris(), versions[2], SwitchOptions::default()).unwrap();
        std::fs::create_dir(dir.path().join("iris/.publish-dead")).unwrap();

        let dry = gc(&catalog, &iris(), 1, Duration::ZERO, true).unwrap();
        // --keep 1 names only production's own move; what a rollback needs stays all the same.
        assert_eq!(dry.deleted, vec![versions[0], versions[3]]);
        assert_eq!(dry.kept[&versions[1]], vec!["rollback target"]);
        assert_eq!(dry.temporaries.len(), 1);
        assert!(
            dry.to_string().contains("would delete 2 version(s)"),
            "{dry}"
        );
        assert_eq!(
            catalog.versions(&iris()).unwrap().len(),
            5,
            "a dry run deletes nothing"
        );

        let done = gc(&catalog, &iris(), 2, Duration::ZERO, false).unwrap();
        assert_eq!(done.deleted, vec![versions[0], versions[3]]);
        assert_eq!(
            done.kept[&versions[2]],
            vec!["production", "in recent history"]
        );
        assert_eq!(done.kept[&versions[4]], vec!["candidate"]);
        assert_eq!(
            catalog.versions(&iris()).unwrap(),
            vec![versions[1], versions[2], versions[4]]
        );
        assert!(!dir.path().join("iris/.publish-dead").exists());
        let history = catalog.history(&iris()).unwrap().entries;
        let line = history.last().unwrap();
        assert_eq!(line.action, Action::Gc);
        assert_eq!(
            line.details["deleted"],
            serde_json::json!([versions[0], versions[3]])
        );
        assert_eq!(line.details["keep"], 2);
    }

    #[test]
    fn list_and_show_report_pointers_versions_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let v1 = publish(&catalog);
        promote(&catalog, &iris(), v1, SwitchOptions::default()).unwrap();
        let v2 = publish(&catalog);
        let rows = list(&catalog).unwrap();
        assert_eq!(rows.0.len(), 1);
        assert_eq!(
            (rows.0[0].production, rows.0[0].candidate),
            (Some(v1), Some(v2))
        );
        assert_eq!(rows.0[0].versions, 2);
        let text = rows.to_string();
        assert!(
            text.starts_with("MODEL") && text.contains(&v1.to_string()),
            "{text}"
        );
        let json = serde_json::to_value(&rows).unwrap();
        assert!(
            json.is_array(),
            "--json prints the rows as an array: {json}"
        );

        let report = show(&catalog, &iris()).unwrap();
        assert_eq!(report.versions, vec![v1, v2]);
        assert_eq!(report.model.as_ref().unwrap()["kind"], "binary_logistic");
        assert_eq!(report.history.len(), 1);
        let text = report.to_string();
        assert!(
            text.contains("production  ")
                && text.contains(" promote ")
                && text
                    .contains("predicts    virginica against not_virginica (label column species)")
                && !text.contains('{'),
            "{text}"
        );
        assert!(matches!(
            show(&catalog, &"nosuch".parse().unwrap()),
            Err(OpsError::Store(StoreError::UnknownModel { .. }))
        ));
    }
}
