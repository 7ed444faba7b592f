//! The promotion gate: a candidate becomes production only after it proves itself.
//!
//! Checks, in order: integrity (checksum, schema, identity), convergence (the fit met its
//! gradient tolerance, unless `--allow-unconverged`), probes (finite probabilities that sum to 1
//! on edge inputs), accuracy on the evaluation data, the optional per-class recall and ROC AUC
//! floors, and champion/challenger against the current production version. The whole gate runs under the model's lock (a
//! [`crate::catalog::ModelGuard`]), so concurrent validators promote one at a time and each
//! compares against the production it replaces.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::catalog::{Catalog, LoadError, Move};
use crate::evaluate;
use crate::evidence::{self, Evidence};
use crate::holdout::{self, GateData, GateRows, RowsError};
use crate::model::{ClassReport, Model, ModelError};
use crate::store::{ModelName, Pointer, StoreError, VersionId};
use crate::switch::SwitchError;

/// Checked settings of one gate run.
#[derive(Debug, Clone)]
pub struct GateConfig {
    pub model: ModelName,
    /// Evaluation data; `None` means the rows the candidate held out of its training data.
    pub data: Option<PathBuf>,
    /// Ground truth when `data` is an inference log.
    pub labels: Option<PathBuf>,
    /// Gate on rows the candidate was fitted on (no hold-out, no `data`) instead of refusing.
    pub allow_training_rows: bool,
    /// The candidate's accuracy must be at least this.
    pub min_accuracy: f64,
    /// The candidate may trail production's accuracy by at most this.
    pub tolerance: f64,
    /// Promote even if the fit did not converge (recorded in the history line).
    pub allow_unconverged: bool,
    /// Per class, the least recall allowed on the evaluation data.
    pub min_recall: Vec<(String, f64)>,
    /// The least ROC AUC allowed on the evaluation data (binary models).
    pub min_auc: Option<f64>,
    /// Where servers wrote their shadow evidence; `None`: shadow evidence is not consulted.
    pub evidence: Option<PathBuf>,
    /// The least shadow samples (instances scored by both versions) required; 0: not required.
    pub min_shadow_samples: u64,
    /// The least label agreement with production, when there are samples.
    pub min_shadow_agreement: f64,
    /// The most shadowed rows the candidate may have failed to score.
    pub max_candidate_errors: u64,
    /// With evidence and a production version: how long to wait for `min_shadow_samples`.
    pub shadow_wait: std::time::Duration,
    /// How the promotion treats the fleet (waits for every live server to load the candidate).
    pub switch: crate::switch::SwitchOptions,
}

impl GateConfig {
    /// Default minimum accuracy on the evaluation data.
    pub const DEFAULT_MIN_ACCURACY: f64 = 0.9;
    /// Default accuracy the candidate may lose against production.
    pub const DEFAULT_TOLERANCE: f64 = 0.01;
    /// Default least label agreement with production in shadow.
    pub const DEFAULT_MIN_SHADOW_AGREEMENT: f64 = 0.95;
    /// Default least shadow samples with `--evidence`: one, so that no evidence is a refusal.
    pub const DEFAULT_MIN_SHADOW_SAMPLES: u64 = 1;

    /// The default gate for `model`: its own training data, the default thresholds.
    pub fn new(model: ModelName) -> Self {
        Self {
            model,
            data: None,
            labels: None,
            allow_training_rows: false,
            min_accuracy: Self::DEFAULT_MIN_ACCURACY,
            tolerance: Self::DEFAULT_TOLERANCE,
            allow_unconverged: false,
            min_recall: Vec::new(),
            min_auc: None,
            evidence: None,
            min_shadow_samples: Self::DEFAULT_MIN_SHADOW_SAMPLES,
            min_shadow_agreement: Self::DEFAULT_MIN_SHADOW_AGREEMENT,
            max_candidate_errors: 0,
            shadow_wait: std::time::Duration::ZERO,
            switch: crate::switch::SwitchOptions::default(),
        }
    }
}

/// A problem that stops the gate from running at all (exit code 2), as opposed to a failed check.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("model {0:?} has no candidate: run `limen train --model {0}` first")]
    NoCandidate(String),
    #[error("candidate {name}/{version} is corrupt: {source}")]
    CorruptCandidate {
        name: String,
        version: VersionId,
        #[source]
        source: ModelError,
    },
    #[error(transparent)]
    Rows(#[from] RowsError),
}

/// One gate check and its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// What the gate decided and why.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    pub model: String,
    pub candidate: VersionId,
    pub production_before: Option<VersionId>,
    /// The rows both were scored on, in words.
    pub evaluated_on: Option<String>,
    /// The candidate's decision threshold, which its labels (so its precision and recall) use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    pub candidate_accuracy: Option<f64>,
    pub production_accuracy: Option<f64>,
    /// Per-class quality of the candidate on the evaluation data.
    pub candidate_report: Option<ClassReport>,
    /// The same for the production version it would replace.
    pub production_report: Option<ClassReport>,
    /// What servers saw in shadow, summed over instances (with `--evidence`).
    pub shadow: Option<Evidence>,
    pub checks: Vec<Check>,
    pub outcome: Outcome,
}

/// The gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every check passed and `production` now names the candidate.
    Promoted,
    /// The candidate already is production; nothing changed.
    AlreadyProduction,
    /// A check failed; production is untouched.
    Rejected,
}

impl GateReport {
    pub fn failed_checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

impl fmt::Display for GateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "candidate {}/{}", self.model, self.candidate)?;
        for c in &self.checks {
            let mark = if c.passed { "ok  " } else { "FAIL" };
            writeln!(f, "  {mark} {:<14} {}", c.name, c.detail)?;
        }
        if let Some(candidate) = &self.candidate_report {
            self.write_side_by_side(f, candidate)?;
        }
        match self.outcome {
            Outcome::Promoted => match self.production_before {
                Some(prev) => write!(
                    f,
                    "promoted {}/{} to production (was {prev})",
                    self.model, self.candidate
                ),
                None => write!(
                    f,
                    "promoted {}/{} to production (first production version)",
                    self.model, self.candidate
                ),
            },
            Outcome::AlreadyProduction => write!(
                f,
                "{}/{} is already production; nothing to do",
                self.model, self.candidate
            ),
            Outcome::Rejected => {
                let failed: Vec<&str> = self.failed_checks().map(|c| c.name).collect();
                write!(
                    f,
                    "rejected {}/{}: failed {}; production stays {}",
                    self.model,
                    self.candidate,
                    failed.join(", "),
                    self.production_before
                        .map_or("unset".to_owned(), |v| v.to_string())
                )
            }
        }
    }
}

impl GateReport {
    /// The candidate's and production's quality on the evaluation data, side by side.
    fn write_side_by_side(
        &self,
        f: &mut fmt::Formatter<'_>,
        candidate: &ClassReport,
    ) -> fmt::Result {
        let rows = self
            .evaluated_on
            .as_deref()
            .unwrap_or("the evaluation data");
        let candidate_version = self.candidate;
        let candidate_accuracy = self.candidate_accuracy;
        let production_version = self.production_before;
        let production = self.production_report.as_ref();
        let production_accuracy = self.production_accuracy;
        let num = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
        let prf = |r: Option<&ClassReport>, class: &str| {
            r.and_then(|r| r.class(class)).map_or("-".to_owned(), |s| {
                format!("{:.3}/{:.3}/{:.3}", s.precision, s.recall, s.f1)
            })
        };
        let production_title = production_version.map_or("production -".to_owned(), |v| {
            if production.is_some() {
                format!("production {v}")
            } else {
                format!("production {v} (not evaluated)")
            }
        });
        let at = self.threshold.map_or(String::new(), |t| {
            format!(" (the candidate's labels at its threshold {t})")
        });
        writeln!(f, "  on {rows}{at}:")?;
        writeln!(
            f,
            "    {:<22} {:<24} {production_title}",
            "",
            format!("candidate {candidate_version}")
        )?;
        writeln!(
            f,
            "    {:<22} {:<24} {}",
            "accuracy",
            num(candidate_accuracy),
            num(production_accuracy)
        )?;
        if candidate.roc_auc.is_some() {
            writeln!(
                f,
                "    {:<22} {:<24} {}",
                "ROC AUC",
                num(candidate.roc_auc),
                num(production.and_then(|p| p.roc_auc))
            )?;
        }
        for scores in &candidate.classes {
            writeln!(
                f,
                "    {:<22} {:<24} {}",
                format!("{} P/R/F1", scores.class),
                prf(Some(candidate), &scores.class),
                prf(production, &scores.class)
            )?;
        }
        Ok(())
    }
}

/// Runs the gate on the candidate of `cfg.model` and promotes it if every check passes.
pub fn run(catalog: &Catalog, cfg: &GateConfig) -> Result<GateReport, ValidateError> {
    let name = &cfg.model;
    catalog.require_model(name)?;
    let guard = catalog.lock(name)?;
    let candidate_version = guard
        .pointer(Pointer::Candidate)?
        .ok_or_else(|| ValidateError::NoCandidate(name.to_string()))?;
    let production_before = guard.pointer(Pointer::Production)?;
    let candidate = catalog
        .load_verified(name, candidate_version)
        .map_err(|e| match e {
            LoadError::Store(e) => ValidateError::Store(e),
            LoadError::Model(source) => ValidateError::CorruptCandidate {
                name: name.to_string(),
                version: candidate_version,
                source,
            },
        })?;

    let mut report = GateReport {
        model: name.to_string(),
        candidate: candidate_version,
        production_before,
        evaluated_on: None,
        threshold: candidate.artifact().threshold,
        candidate_accuracy: None,
        production_accuracy: None,
        candidate_report: None,
        production_report: None,
        shadow: None,
        checks: vec![Check {
            name: "integrity",
            passed: true,
            detail: "checksum, schema and identity verified".to_owned(),
        }],
        outcome: Outcome::Rejected,
    };
    if production_before == Some(candidate_version) {
        report.outcome = Outcome::AlreadyProduction;
        return Ok(report);
    }

    let unconverged = candidate.artifact().metrics.converged == Some(false);
    report
        .checks
        .push(convergence_check(&candidate, cfg.allow_unconverged));
    report.checks.push(probe_check(&candidate));

    let given = GateData {
        data: cfg.data.as_deref(),
        labels: cfg.labels.as_deref(),
        allow_training_rows: cfg.allow_training_rows,
    };
    let (rows, data) = holdout::gate_rows(candidate.artifact(), &given)?;
    let evaluation = match evaluate::evaluate(&candidate, &data) {
        Ok(eval) => eval,
        Err(e) => {
            // Say why the data could not be scored, rather than report an accuracy of zero.
            report.checks.push(Check {
                name: "accuracy",
                passed: false,
                detail: format!("cannot score {}: {e}", rows.description),
            });
            return Ok(report);
        }
    };
    let accuracy = evaluation.accuracy;
    report.candidate_accuracy = Some(accuracy);
    report.evaluated_on = Some(rows.description.clone());
    report.checks.push(Check {
        name: "accuracy",
        passed: accuracy >= cfg.min_accuracy,
        detail: format!(
            "{accuracy:.4} on {}; minimum {:.4}",
            rows.description, cfg.min_accuracy
        ),
    });
    report.checks.extend(floor_checks(&evaluation.report, cfg));
    report.candidate_report = Some(evaluation.report);
    if let Some(root) = &cfg.evidence {
        // Live traffic can only have scored the candidate beside a production version, and
        // waiting on a candidate that failed already would only delay its refusal.
        let wait = production_before.is_some() && report.checks.iter().all(|c| c.passed);
        let evidence = if wait && !cfg.shadow_wait.is_zero() {
            wait_for_evidence(root, name, candidate_version, cfg)?
        } else {
            evidence::read(root, name, candidate_version)?
        };
        report
            .checks
            .push(shadow_check(&evidence, production_before, cfg));
        report.shadow = Some(evidence);
    }

    if let Some(prod_version) = production_before {
        let check = champion_check(
            catalog,
            name,
            prod_version,
            &rows,
            accuracy,
            cfg.tolerance,
            &mut report,
        );
        report.checks.push(check);
    }

    if report.failed_checks().next().is_some() {
        return Ok(report);
    }
    let mut details = serde_json::json!({
        "gate": "limen validate",
        "accuracy": report.candidate_accuracy,
        "production_accuracy": report.production_accuracy,
        "min_accuracy": cfg.min_accuracy,
        "tolerance": cfg.tolerance,
        "data": rows.description,
    });
    if let Some(evidence) = &report.shadow {
        // The live-traffic evidence that decided the promotion, where operators look.
        let t = &evidence.totals;
        details["shadow"] = serde_json::json!({
            "evidence": cfg.evidence.as_ref().map(|p| p.display().to_string()),
            "instances": evidence.instances,
            "samples": t.samples,
            "label_agreement": t.label_agreement(),
            "mean_abs_diff": t.mean_abs_diff(),
            "max_abs_diff": t.max_abs_diff,
            "candidate_errors": t.candidate_errors,
            "first_at": t.first_at,
            "last_at": t.last_at,
            "min_shadow_samples": cfg.min_shadow_samples,
            "min_shadow_agreement": cfg.min_shadow_agreement,
            "max_candidate_errors": cfg.max_candidate_errors,
        });
    }
    if unconverged {
        // A promotion that overrode the convergence check says so where operators look.
        details["allow_unconverged"] = serde_json::Value::Bool(true);
    }
    match crate::switch::move_production(
        &guard,
        Move::Promote,
        candidate_version,
        details,
        cfg.switch,
    ) {
        Ok(switched) => {
            if !switched.replicas.is_empty() {
                report.checks.push(Check {
                    name: "fleet",
                    passed: true,
                    detail: format!(
                        "{} live server(s) loaded it in {} ms and switched together",
                        switched.replicas.len(),
                        switched.waited_ms
                    ),
                });
            }
            report.outcome = Outcome::Promoted;
        }
        Err(SwitchError::Store(e)) => return Err(e.into()),
        Err(refused @ SwitchError::FleetNotReady { .. }) => {
            report.checks.push(Check {
                name: "fleet",
                passed: false,
                detail: refused.to_string(),
            });
        }
    }
    Ok(report)
}

/// The fit met its gradient tolerance; an unconverged fit fails unless the operator allows it.
/// A model trained before limen recorded convergence passes, saying so; a tree ensemble has no
/// convergence criterion (it is built tree by tree) and passes, saying where it came from.
fn convergence_check(model: &Model, allow_unconverged: bool) -> Check {
    let m = &model.artifact().metrics;
    if model.artifact().kind == crate::model::ModelKind::TreeEnsemble {
        let provenance = &model.artifact().provenance;
        let origin = match (&provenance.imported, &provenance.forest) {
            (Some(i), _) => format!("imported from {} {}", i.library, i.library_version),
            (None, Some(f)) => format!(
                "a random forest of {} trees, trained by {}",
                f.trees, provenance.trainer
            ),
            (None, None) => format!("trained by {}", provenance.trainer),
        };
        return Check {
            name: "convergence",
            passed: true,
            detail: format!("not applicable to a tree ensemble ({origin})"),
        };
    }
    let tolerance = model
        .artifact()
        .provenance
        .hyperparameters
        .as_ref()
        .map_or(f64::NAN, |h| h.gradient_tolerance);
    let (passed, detail) = match (m.converged, m.iterations, m.gradient_norm) {
        (None, ..) => (
            true,
            "not recorded (trained by a limen that did not record convergence)".to_owned(),
        ),
        (Some(true), iterations, norm) => (
            true,
            format!(
                "converged in {} iterations (gradient norm {:.3e} ≤ {tolerance:e})",
                iterations.map_or("?".to_owned(), |i| i.to_string()),
                norm.unwrap_or(f64::NAN)
            ),
        ),
        (Some(false), iterations, norm) => {
            let what = format!(
                "did not converge: stopped after {} iterations with gradient norm {:.3e} > {tolerance:e}",
                iterations.map_or("?".to_owned(), |i| i.to_string()),
                norm.unwrap_or(f64::NAN)
            );
            if allow_unconverged {
                (true, format!("{what}; allowed by --allow-unconverged"))
            } else {
                (
                    false,
                    format!("{what}; retrain with --standardize or a larger --max-iter, or pass --allow-unconverged"),
                )
            }
        }
    };
    Check {
        name: "convergence",
        passed,
        detail,
    }
}

/// The optional floors: per-class recall (`--min-recall CLASS=VALUE`) and ROC AUC (`--min-auc`).
fn floor_checks(report: &ClassReport, cfg: &GateConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    for (class, min) in &cfg.min_recall {
        let (passed, detail) = match report.class(class) {
            Some(scores) => (
                scores.recall >= *min,
                format!(
                    "recall of {class} {:.4} ({} rows); minimum {min:.4}",
                    scores.recall, scores.support
                ),
            ),
            None => (
                false,
                format!(
                    "{class:?} is not a class of this model ({})",
                    report
                        .classes
                        .iter()
                        .map(|c| c.class.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        };
        checks.push(Check {
            name: "recall",
            passed,
            detail,
        });
    }
    if let Some(min) = cfg.min_auc {
        let (passed, detail) = match report.roc_auc {
            Some(auc) => (auc >= min, format!("ROC AUC {auc:.4}; minimum {min:.4}")),
            None => (
                false,
                "no ROC AUC: --min-auc needs a binary model and both classes in the data"
                    .to_owned(),
            ),
        };
        checks.push(Check {
            name: "roc auc",
            passed,
            detail,
        });
    }
    checks
}

/// How often [`wait_for_evidence`] reads the evidence again.
const EVIDENCE_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// The candidate's evidence once it holds `min_shadow_samples` samples, or holds a file that
/// cannot be trusted, or `shadow_wait` has passed (then as it is, for the check to judge).
fn wait_for_evidence(
    root: &std::path::Path,
    name: &ModelName,
    candidate: VersionId,
    cfg: &GateConfig,
) -> Result<Evidence, StoreError> {
    let deadline = std::time::Instant::now() + cfg.shadow_wait;
    loop {
        let evidence = evidence::read(root, name, candidate)?;
        let now = std::time::Instant::now();
        if !evidence.is_whole()
            || evidence.totals.samples >= cfg.min_shadow_samples
            || now >= deadline
        {
            return Ok(evidence);
        }
        tracing::info!(
            model = %name,
            candidate = candidate.get(),
            samples = evidence.totals.samples,
            needed = cfg.min_shadow_samples,
            left_s = (deadline - now).as_secs(),
            "waiting for live traffic to shadow-score the candidate"
        );
        std::thread::sleep(EVIDENCE_POLL.min(deadline - now));
    }
}

/// What live traffic said about the candidate. Fails closed: a refused or uncounted evidence
/// file, rows the candidate could not score beyond `--max-candidate-errors`, fewer samples than
/// `--min-shadow-samples`, or agreement below `--min-shadow-agreement` each refuse it. Without a
/// production version there is nothing to shadow against, and no evidence can exist: the check
/// passes, saying so, unless evidence that does exist says otherwise.
fn shadow_check(evidence: &Evidence, production: Option<VersionId>, cfg: &GateConfig) -> Check {
    let t = &evidence.totals;
    let fail = |detail: String| Check {
        name: "shadow",
        passed: false,
        detail,
    };
    if evidence.too_many {
        return fail(format!(
            "more than {} evidence files for this candidate: none was trusted; remove the files \
             of instances that never ran, then validate again",
            evidence::MAX_INSTANCES
        ));
    }
    if evidence.refused > 0 {
        return fail(format!(
            "{} evidence file(s) refused ({}); each server writes only <instance>.json with its \
             own totals: remove or fix them, then validate again",
            evidence.refused,
            evidence.refusals.join("; ")
        ));
    }
    let seen = match t.label_agreement() {
        Some(agreement) => format!(
            "{} samples from {} instance(s): label agreement {agreement:.4}, mean |Δp| {:.4}, max |Δp| {:.4}, {} candidate error(s)",
            t.samples,
            evidence.instances,
            t.mean_abs_diff().unwrap_or(0.0),
            t.max_abs_diff,
            t.candidate_errors,
        ),
        None => format!(
            "no shadow samples ({} instance file(s), {} candidate error(s))",
            evidence.instances, t.candidate_errors
        ),
    };
    let scored = t.samples.saturating_add(t.candidate_errors);
    let (passed, detail) = if production.is_none() && scored == 0 {
        (
            true,
            "no production version to shadow against (first production version); no evidence \
             can exist"
                .to_owned(),
        )
    } else if t.candidate_errors > cfg.max_candidate_errors {
        (
            false,
            format!(
                "{seen}; the candidate failed to score {} of {scored} shadowed rows, at most {} \
                 allowed (--max-candidate-errors): it would fail those requests in production",
                t.candidate_errors, cfg.max_candidate_errors
            ),
        )
    } else if t.samples < cfg.min_shadow_samples {
        (
            false,
            format!(
                "{seen}; at least {} required (--min-shadow-samples): let the servers see more traffic, then validate again",
                cfg.min_shadow_samples
            ),
        )
    } else if t
        .label_agreement()
        .is_some_and(|a| a < cfg.min_shadow_agreement)
    {
        (
            false,
            format!(
                "{seen}; minimum agreement {:.4} (--min-shadow-agreement)",
                cfg.min_shadow_agreement
            ),
        )
    } else {
        (true, seen)
    };
    Check {
        name: "shadow",
        passed,
        detail,
    }
}

fn probe_check(model: &Model) -> Check {
    let (passed, detail) = match model.self_test() {
        Ok(n) => (
            true,
            format!("{n} probe inputs (0, ±1, ±1e6, ±1e12, training min/mean/max) gave finite probabilities summing to 1"),
        ),
        Err(why) => (false, why),
    };
    Check {
        name: "probes",
        passed,
        detail,
    }
}

/// The candidate may not trail the current production version by more than `tolerance`.
///
/// A production version that cannot be loaded or scored does not block the candidate (replacing
/// a broken production is exactly what a pipeline may need); the check says so.
fn champion_check(
    catalog: &Catalog,
    name: &ModelName,
    prod_version: VersionId,
    rows: &GateRows,
    candidate_accuracy: f64,
    tolerance: f64,
    report: &mut GateReport,
) -> Check {
    let mut fitted = false;
    let evaluated = catalog
        .load_verified(name, prod_version)
        .map_err(|e| e.to_string())
        .and_then(|prod| {
            fitted = rows.fitted_by(prod.artifact());
            let data = rows.load(prod.artifact()).map_err(|e| e.to_string())?;
            evaluate::evaluate(&prod, &data).map_err(|e| e.to_string())
        });
    match evaluated {
        Ok(eval) => {
            report.production_accuracy = Some(eval.accuracy);
            report.production_report = Some(eval.report.clone());
            let passed = candidate_accuracy >= eval.accuracy - tolerance;
            // Scored on rows it learned, production looks better than it is: the gate is the
            // stricter for it, and the report says so.
            let flattered = if fitted {
                "; production was fitted on some of these rows"
            } else {
                ""
            };
            Check {
                name: "vs production",
                passed,
                detail: format!(
                    "{candidate_accuracy:.4} vs production {prod_version} at {:.4}; tolerance {tolerance:.4}{flattered}",
                    eval.accuracy
                ),
            }
        }
        Err(why) => {
            tracing::warn!(model = %name, version = prod_version.get(), error = %why, "production cannot be evaluated; not comparing");
            Check {
                name: "vs production",
                passed: true,
                detail: format!(
                    "production {prod_version} could not be evaluated ({why}); not compared"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Move;
    use crate::model::tests::binary_artifact;
    use crate::model::ModelArtifact;
    use std::path::Path;

    fn iris_csv() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/iris.csv")
    }

    fn gate(min_accuracy: f64) -> GateConfig {
        GateConfig {
            data: Some(iris_csv()),
            min_accuracy,
            ..GateConfig::new("iris".parse().unwrap())
        }
    }

    /// Publishes an Iris candidate, with `tweak` applied to scikit-learn's weights.
    fn candidate(catalog: &Catalog, tweak: impl Fn(&mut ModelArtifact)) -> VersionId {
        catalog
            .publish_candidate(&"iris".parse().unwrap(), |v| {
                let mut a = binary_artifact();
                a.version = v.get();
                tweak(&mut a);
                a.to_json_bytes()
            })
            .unwrap()
    }

    fn production(catalog: &Catalog) -> Option<VersionId> {
        catalog
            .pointer(&"iris".parse().unwrap(), Pointer::Production)
            .unwrap()
    }

    #[test]
    fn a_good_candidate_is_promoted_with_its_evidence_in_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let v = candidate(&catalog, |_| {});
        let report = run(&catalog, &gate(0.9)).unwrap();
        assert_eq!(report.outcome, Outcome::Promoted, "{report}");
        assert_eq!(report.candidate_accuracy, Some(0.96));
        assert_eq!(production(&catalog), Some(v));
        let history = catalog.history(&"iris".parse().unwrap()).unwrap();
        let line = history.last_move().unwrap();
        assert_eq!(line.details["gate"], "limen validate");
        assert_eq!(line.details["accuracy"], 0.96);
        assert!(report.to_string().contains("first production version"));

        let again = run(&catalog, &gate(0.9)).unwrap();
        assert_eq!(again.outcome, Outcome::AlreadyProduction);
        assert_eq!(
            catalog
                .history(&"iris".parse().unwrap())
                .unwrap()
                .entries
                .len(),
            1
        );
    }

    #[test]
    fn a_candidate_below_the_bar_is_rejected_and_production_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let first = candidate(&catalog, |_| {});
        run(&catalog, &gate(0.9)).unwrap();
        candidate(&catalog, |_| {});
        let report = run(&catalog, &gate(0.99)).unwrap();
        assert_eq!(report.outcome, Outcome::Rejected);
        assert_eq!(report.failed_checks().next().unwrap().name, "accuracy");
        assert!(report
            .to_string()
            .contains(&format!("production stays {first}")));
        assert_eq!(production(&catalog), Some(first));
    }

    #[test]
    fn a_candidate_worse_than_production_beyond_the_tolerance_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let champion = candidate(&catalog, |_| {});
        run(&catalog, &gate(0.5)).unwrap();
        // Moves the boundary from 1.66 cm to 1.5 cm: still above 0.5, but worse than 0.96.
        candidate(&catalog, |a| a.intercepts = vec![-4.332519744450365 * 1.5]);
        let report = run(&catalog, &gate(0.5)).unwrap();
        assert_eq!(report.outcome, Outcome::Rejected, "{report}");
        let failed: Vec<_> = report.failed_checks().map(|c| c.name).collect();
        assert_eq!(failed, vec!["vs production"]);
        assert_eq!(report.production_accuracy, Some(0.96));
        assert_eq!(production(&catalog), Some(champion));
    }

    #[test]
    fn a_candidate_that_fails_its_probes_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        // Softmax over logits of 1e300 × a probe value overflows: not a distribution.
        candidate(&catalog, |a| {
            let huge = crate::model::tests::multinomial_artifact();
            a.kind = huge.kind;
            a.classes = huge.classes;
            a.positive_class = None;
            a.coefficients = vec![vec![1e300], vec![0.0], vec![0.0]];
            a.intercepts = vec![0.0; 3];
        });
        let report = run(&catalog, &gate(0.0)).unwrap();
        assert_eq!(report.outcome, Outcome::Rejected);
        assert!(
            report.failed_checks().any(|c| c.name == "probes"),
            "{report}"
        );
        assert_eq!(production(&catalog), None);
    }

    #[test]
    fn a_missing_or_corrupt_candidate_stops_the_gate_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        std::fs::create_dir(dir.path().join("iris")).unwrap();
        let err = run(&catalog, &gate(0.9)).unwrap_err();
        assert!(matches!(err, ValidateError::NoCandidate(_)), "{err}");
        assert!(err.to_string().contains("limen train --model iris"));

        let v = candidate(&catalog, |_| {});
        let file = dir.path().join(format!("iris/{v}/model.json"));
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replacen("4.33", "5.33", 1)).unwrap();
        let err = run(&catalog, &gate(0.9)).unwrap_err();
        assert!(
            matches!(err, ValidateError::CorruptCandidate { .. }),
            "{err}"
        );
        assert_eq!(production(&catalog), None);
    }

    /// Shadow evidence from one instance for `catalog`'s candidate.
    fn shadow_evidence(
        root: &Path,
        version: VersionId,
        samples: u64,
        agreements: u64,
        errors: u64,
    ) {
        let totals = crate::evidence::ShadowTotals {
            model: "iris".into(),
            candidate: version.get(),
            instance: "pod-a".into(),
            samples,
            label_agreements: agreements,
            sum_abs_diff: 0.0,
            max_abs_diff: 0.0,
            candidate_errors: errors,
            first_at: Some("2026-12-01T10:00:00Z".into()),
            last_at: Some("2026-12-01T10:15:00Z".into()),
        };
        crate::evidence::write(root, &"iris".parse().unwrap(), version, "pod-a", &totals).unwrap();
    }

    #[test]
    fn the_shadow_check_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let evidence = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        // A first production version: nothing to shadow against, so no evidence is needed.
        candidate(&catalog, |_| {});
        let with_evidence = GateConfig {
            evidence: Some(evidence.path().to_owned()),
            ..gate(0.9)
        };
        let first = run(&catalog, &with_evidence).unwrap();
        assert_eq!(first.outcome, Outcome::Promoted, "{first}");
        assert!(first
            .to_string()
            .contains("no production version to shadow against"));
        let champion = production(&catalog);

        let v = candidate(&catalog, |_| {});
        let rejected = |cfg: &GateConfig, why: &str| {
            let report = run(&catalog, cfg).unwrap();
            assert_eq!(report.outcome, Outcome::Rejected, "{why}: {report}");
            let failed: Vec<_> = report.failed_checks().map(|c| c.name).collect();
            assert_eq!(failed, vec!["shadow"], "{why}: {report}");
            assert_eq!(production(&catalog), champion, "{why}");
            report.to_string()
        };
        // No evidence at all: refused (the default asks for one sample).
        let text = rejected(&with_evidence, "no evidence");
        assert!(text.contains("--min-shadow-samples"), "{text}");
        // A candidate that errored on every shadowed row: 0 samples, 327 errors.
        shadow_evidence(evidence.path(), v, 0, 0, 327);
        let text = rejected(&with_evidence, "all errors");
        assert!(text.contains("failed to score 327 of 327"), "{text}");
        // Errors beside good samples are still refused by default, and allowed when asked.
        shadow_evidence(evidence.path(), v, 500, 500, 3);
        rejected(&with_evidence, "some errors");
        let lenient = GateConfig {
            max_candidate_errors: 3,
            ..with_evidence.clone()
        };
        // A planted file of another instance's totals fails the check, even beside good ones.
        let folder = crate::evidence::candidate_dir(evidence.path(), &"iris".parse().unwrap(), v);
        std::fs::copy(folder.join("pod-a.json"), folder.join("pod-b.json")).unwrap();
        let text = rejected(&lenient, "copied file");
        assert!(text.contains("pod-b.json"), "{text}");
        std::fs::remove_file(folder.join("pod-b.json")).unwrap();

        let promoted = run(&catalog, &lenient).unwrap();
        assert_eq!(promoted.outcome, Outcome::Promoted, "{promoted}");
        let history = catalog.history(&"iris".parse().unwrap()).unwrap();
        let shadow = &history.last_move().unwrap().details["shadow"];
        assert_eq!(shadow["samples"], 500);
        assert_eq!(shadow["candidate_errors"], 3);
        assert_eq!(shadow["label_agreement"], 1.0);
    }

    #[test]
    fn a_production_that_cannot_be_evaluated_does_not_block_its_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path());
        let broken = candidate(&catalog, |_| {});
        catalog
            .lock(&"iris".parse().unwrap())
            .unwrap()
            .move_production(Move::Promote, broken, serde_json::Value::Null)
            .unwrap();
        std::fs::write(dir.path().join(format!("iris/{broken}/model.json")), b"{").unwrap();
        let fixed = candidate(&catalog, |_| {});
        let report = run(&catalog, &gate(0.9)).unwrap();
        assert_eq!(report.outcome, Outcome::Promoted, "{report}");
        assert!(report.to_string().contains("not compared"));
        assert_eq!(production(&catalog), Some(fixed));
    }
}
