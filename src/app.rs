//! Runs each subcommand: glues data, training, the store and the gate together and prints what
//! happened. Stdout carries results for scripts (for `train`, the version id is the last line);
//! logs go to stderr.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::api;
use crate::catalog::Catalog;
use crate::cli::{
    Cli, Command, ModelsAction, ModelsArgs, PredictConfig, QuickstartArgs, TrainConfig,
};
use crate::columns;
use crate::data::{self, Dataset};
use crate::holdout;
use crate::model::LogTraining;
use crate::ops::{self, OpsError};
use crate::serve::{self, ServeConfig};
use crate::store::{now_rfc3339, Pointer, VersionId};
use crate::train::{self, Objective};
use crate::validate::{self, GateConfig, Outcome};

/// Exit code of a command that ran and said no: a rejected candidate, a refused rollback.
pub const EXIT_REJECTED: u8 = 1;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let catalog = cli.catalog();
    match cli.command {
        Command::Train(args) => {
            let version = train_and_publish(&catalog, &TrainConfig::try_from(args)?)?;
            println!("{version}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(args) => validate_and_promote(&catalog, &GateConfig::try_from(args)?),
        Command::Predict(args) => {
            predict(&catalog, PredictConfig::try_from(args)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let cfg = args.common.config(args.addr)?;
            serve(catalog, cfg, |addr| println!("listening on http://{addr}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Quickstart(args) => quickstart(catalog, args),
        Command::Models(args) => models(&catalog, args),
        Command::Import(args) => {
            let (name, cfg) = args.into();
            let version = import_and_publish(&catalog, &name, &cfg)?;
            println!("{version}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(args) => {
            write_report(&catalog, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch(args) => {
            let json = args.json;
            let cfg = crate::guardrails::WatchConfig::try_from(args)?;
            let report = crate::guardrails::run(&catalog, &cfg)?;
            print!("{}", render(&report, json));
            use crate::guardrails::Verdict;
            Ok(match report.verdict {
                Verdict::Clean | Verdict::Superseded => ExitCode::SUCCESS,
                Verdict::Tripped | Verdict::Inconclusive => ExitCode::from(EXIT_REJECTED),
            })
        }
        Command::Drift(args) => {
            anyhow::ensure!(
                args.max_psi.is_none_or(|p| p.is_finite() && p >= 0.0),
                "--max-psi must be a number ≥ 0"
            );
            let cfg = crate::drift::DriftConfig {
                model: args.name,
                log: args.log,
                since: args.since,
                max_psi: args.max_psi,
                min_samples: args.min_samples,
            };
            let report = crate::drift::measure(&catalog, &cfg)?;
            print!("{}", render(&report, args.json));
            Ok(if report.exceeded.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REJECTED)
            })
        }
    }
}

/// `limen models …`: print the result as text or JSON; a refusal exits 1.
fn models(catalog: &Catalog, args: ModelsArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let printed = match args.action {
        ModelsAction::List => ops::list(catalog).map(|r| render(&r, json)),
        ModelsAction::Show { name } => ops::show(catalog, &name).map(|r| render(&r, json)),
        ModelsAction::Promote {
            name,
            version,
            switch,
        } => ops::promote(catalog, &name, version, switch.options()).map(|r| render(&r, json)),
        ModelsAction::Rollback { name, switch } => {
            ops::rollback(catalog, &name, switch.options()).map(|r| render(&r, json))
        }
        ModelsAction::Fleet { name } => return fleet(catalog, name.as_ref(), json),
        ModelsAction::Gc {
            name,
            keep,
            dry_run,
            temp_age,
        } => ops::gc(catalog, &name, keep, temp_age, dry_run).map(|r| render(&r, json)),
    };
    match printed {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(OpsError::Refused(why)) => {
            eprintln!("refused: {why}");
            Ok(ExitCode::from(EXIT_REJECTED))
        }
        Err(e) => Err(e.into()),
    }
}

/// `limen models fleet`: the heartbeats; a disagreement that outlasts the replicas' poll (and
/// heartbeat) interval exits 1.
fn fleet(
    catalog: &Catalog,
    name: Option<&crate::store::ModelName>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use crate::fleet::{self, FleetReport};
    let now = fleet::now_ms();
    let mut seen = fleet::read(catalog.root(), now)?;
    let mut report = FleetReport::new(&seen, name.map(|n| n.as_str()), now);
    if !report.disagreements.is_empty() {
        // Right after a promotion replicas switch within a poll interval: look again after it.
        let wait = FleetReport::settle_ms(&seen).min(60_000);
        std::thread::sleep(std::time::Duration::from_millis(wait));
        let now = fleet::now_ms();
        seen = fleet::read(catalog.root(), now)?;
        report = FleetReport::new(&seen, name.map(|n| n.as_str()), now);
    }
    print!("{}", render(&report, json));
    Ok(if report.disagreements.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REJECTED)
    })
}

/// `limen report`: the model's page (or chart) as a file.
fn write_report(catalog: &Catalog, args: &crate::cli::ReportArgs) -> anyhow::Result<()> {
    use crate::report::{self, ModelView};
    let name = &args.name;
    catalog.require_model(name)?;
    let production = catalog.pointer(name, Pointer::Production)?;
    let other = match args.version {
        Some(v) => Some(v),
        None => catalog.pointer(name, Pointer::Candidate)?,
    }
    .filter(|v| Some(*v) != production);
    anyhow::ensure!(
        production.is_some() || other.is_some(),
        "model {name:?} has neither a production version nor a candidate: train one first"
    );
    let load = |v: VersionId| {
        catalog
            .load_verified(name, v)
            .with_context(|| format!("cannot load {name}/{v}"))
    };
    let production_model = production.map(load).transpose()?;
    let other_model = other.map(load).transpose()?;
    // What the page shows of the history: its last lines, read from the end of the file.
    let history = catalog.history_tail(name, 20, |_| true)?.entries;
    let view = ModelView {
        name: name.as_str(),
        production: production.zip(production_model.as_ref()),
        candidate: other.zip(other_model.as_ref()),
        history: &history,
        live: None,
    };
    let text = match args.format {
        crate::cli::ReportFormat::Html => {
            let title = format!("limen · {name}");
            let generated = format!(
                "<h1>{}</h1><span class=\"muted\">written {} by limen {}</span>",
                report::esc(&title),
                now_rfc3339(),
                env!("CARGO_PKG_VERSION")
            );
            report::page(
                &title,
                &generated,
                &report::model_section(&view, "model"),
                None,
                None,
            )
        }
        crate::cli::ReportFormat::Svg => {
            let models: Vec<(&str, &crate::model::Model)> = [
                production_model.as_ref().map(|m| ("production", m)),
                other_model.as_ref().map(|m| ("candidate", m)),
            ]
            .into_iter()
            .flatten()
            .collect();
            report::chart_svg(&models)
        }
    };
    std::fs::write(&args.out, text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// A report as pretty JSON (`--json`) or its text form; both come from the same value, so they
/// never drift apart in content.
fn render(value: &(impl serde::Serialize + std::fmt::Display), json: bool) -> String {
    if json {
        serde_json::to_string_pretty(value)
            .expect("reports are strings, numbers and lists, which always serialize")
            + "\n"
    } else {
        value.to_string()
    }
}

/// Runs the server on a multi-threaded tokio runtime until it shuts down.
pub fn serve(
    catalog: Catalog,
    cfg: ServeConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let runtime = serve::http::runtime(cfg.workers).context("cannot start the async runtime")?;
    runtime.block_on(serve::run(catalog, cfg, |addr| {
        on_listening(addr);
        // Whoever reads our stdout (a test, a script) learns the port now, not at exit.
        let _ = std::io::stdout().flush();
    }))
}

/// `limen quickstart`: make sure the default store has a production Iris model, then serve it.
fn quickstart(catalog: Catalog, args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.common.config(args.addr)?;
    let name = &cfg.default_model;
    if catalog.pointer(name, Pointer::Production)?.is_none() {
        println!(
            "no production {name} model in {}: training and validating one",
            catalog.root().display()
        );
        train_and_publish(&catalog, &TrainConfig::reference(name.clone(), args.data)?)?;
        let code = validate_and_promote(&catalog, &GateConfig::new(name.clone()))?;
        if code != ExitCode::SUCCESS {
            anyhow::bail!("the freshly trained model did not pass validation; see above");
        }
    }
    serve(catalog, cfg, |addr| {
        let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        println!("limen is serving on http://{addr} (Ctrl-C to stop). Try:");
        println!("  curl {host}/healthcheck");
        println!("  curl -X POST -d '{{\"petal_width\": \"2.1\"}}' {host}/predict");
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `limen import`: convert, evaluate, publish a new version, point `candidate` at it. Nothing is
/// written unless the file converts, checks out and loads as a server would load it.
pub fn import_and_publish(
    catalog: &Catalog,
    name: &crate::store::ModelName,
    cfg: &crate::import::ImportConfig,
) -> anyhow::Result<VersionId> {
    let created_at = now_rfc3339();
    let provisional = crate::import::import(cfg, name.as_str(), u64::MAX, &created_at)?;
    catalog
        .check_publishable(&provisional.to_json_bytes())
        .context("nothing was published")?;
    let version = catalog.publish_candidate(name, |v| {
        let mut artifact = provisional.clone();
        artifact.version = v.get();
        artifact.to_json_bytes()
    })?;
    let m = &provisional.metrics;
    println!(
        "imported {} ({} trees) as {name}: accuracy {:.4} on {} rows of {}",
        cfg.file.display(),
        provisional.trees.as_ref().map_or(0, |t| t.trees.len()),
        m.train_accuracy,
        provisional.provenance.rows,
        provisional.provenance.data_path
    );
    Ok(version)
}

/// `limen train`: fit, publish a new version, point `candidate` at it. Nothing is written unless
/// the data loads and the fit succeeds.
pub fn train_and_publish(catalog: &Catalog, cfg: &TrainConfig) -> anyhow::Result<VersionId> {
    let columns = match &cfg.labels {
        None => columns::for_table(
            &cfg.data,
            &data::csv_header(&cfg.data)?,
            cfg.features.as_deref(),
            cfg.label_column.as_deref(),
        )?,
        Some(labels) => columns::for_log(
            labels,
            &data::log_feature_names(&cfg.data.to_string_lossy(), cfg.log_model.as_str())?,
            &data::csv_header(labels)?,
            cfg.features.as_deref(),
            cfg.label_column.as_deref(),
        )?,
    };
    // The Iris table with no label column named: the reference example, virginica against the
    // rest, unless the flags chose the classes.
    let params = match cfg.params.objective() {
        Objective::Auto if columns.iris => {
            cfg.params.clone().with_objective(Objective::OneVsRest {
                positive: columns::IRIS_TARGET.to_owned(),
            })
        }
        _ => cfg.params.clone(),
    };
    let params = &params;
    let (features, label_column) = (&columns.features, &columns.label_column);
    let (data, split, log) = match &cfg.labels {
        None => {
            let (data, order) = Dataset::load_ordered(
                &cfg.data,
                features,
                label_column,
                cfg.holdout.split_by(),
                &cfg.read,
            )?;
            train::check_labels(&data, params)?;
            let split = holdout::split_table(&cfg.holdout, &data, &order)?;
            (data, split, None)
        }
        Some(labels) => {
            let source = cfg.data.to_string_lossy();
            let (data, found) = Dataset::from_inference_log(
                &source,
                cfg.log_model.as_str(),
                labels,
                features,
                label_column,
                &cfg.read,
            )?;
            println!(
                "read {source} for model {} with labels from {}: {found}",
                cfg.log_model,
                labels.display()
            );
            if found.duplicate_keys > 0 {
                tracing::warn!(
                    keys = found.duplicate_keys,
                    lines = found.duplicate_lines,
                    "request ids used by more than one logged request: their labels cannot be told apart, so their lines were left out; give every request its own X-Request-Id"
                );
            }
            train::check_labels(&data, params)?;
            let split = holdout::split_log(&cfg.holdout, &found.request_keys)?;
            let log = LogTraining {
                labels: labels.display().to_string(),
                model: cfg.log_model.to_string(),
            };
            (data, split, Some(log))
        }
    };
    let started = std::time::Instant::now();
    // What the output names of the data, kept: training takes the table itself.
    let (rows, shown, feature_list) = (
        data.rows(),
        data.path.display().to_string(),
        data.feature_names.join(", "),
    );
    let mut trained = train::train_holding_out(data, params, split.as_ref())?;
    trained.set_log(log);
    let m = trained.metrics();
    let created_at = now_rfc3339();
    let name = &cfg.model;
    // Checked as a load will check it before anything is written: a model validate would call
    // corrupt, or a server could not load, is never published.
    let provisional = trained
        .artifact(name.as_str(), u64::MAX, &created_at)
        .to_json_bytes();
    catalog
        .check_publishable(&provisional)
        .context("nothing was published")?;
    let version = catalog.publish_candidate(name, |v| {
        trained
            .artifact(name.as_str(), v.get(), &created_at)
            .to_json_bytes()
    })?;
    tracing::info!(
        model = %name,
        version = version.get(),
        rows = rows,
        train_accuracy = m.train_accuracy,
        cv_accuracy = m.cv_accuracy,
        fit_ms = started.elapsed().as_millis() as u64,
        "published candidate"
    );
    if m.converged == Some(false) {
        tracing::warn!(
            model = %name,
            iterations = m.iterations,
            gradient_norm = m.gradient_norm,
            "the fit did not converge; retrain with --standardize or a larger --max-iter"
        );
    }
    match &split {
        Some(split) => println!(
            "trained {name} on {} of the {} rows of {}, holding out {} ({}) (features: {})",
            rows - split.held_out.len(),
            rows,
            shown,
            split.held_out.len(),
            split.record.describe(),
            feature_list
        ),
        None => println!(
            "trained {name} on every one of the {} rows of {}, holding out none (features: {})",
            rows, shown, feature_list
        ),
    }
    print!("{m}");
    let artifact = trained.artifact(name.as_str(), version.get(), &created_at);
    if let Some(columns) = &artifact.preprocessing {
        // Which columns were read as categories, and what a missing number becomes: a column of
        // numbers with one stray word is a category column, and should be seen to be.
        let parts: Vec<String> = artifact
            .features
            .iter()
            .map(|f| &f.name)
            .zip(columns)
            .map(|(feature, column)| match column {
                crate::model::Column::Numeric { impute } => {
                    format!("{feature} (missing → {impute})")
                }
                crate::model::Column::Categorical {
                    categories, other, ..
                } => format!(
                    "{feature} (text: {} categories{})",
                    categories.len(),
                    if other.is_empty() {
                        String::new()
                    } else {
                        format!(", {} rare as other", other.len())
                    }
                ),
            })
            .collect();
        println!("  preprocessing: {}", parts.join(", "));
    }
    println!(
        "published {name}/{version} as candidate in {}",
        catalog.root().display()
    );
    Ok(version)
}

/// `limen validate`: run the gate; exit 1 when it rejects the candidate.
pub fn validate_and_promote(catalog: &Catalog, cfg: &GateConfig) -> anyhow::Result<ExitCode> {
    let report = validate::run(catalog, cfg)?;
    match report.outcome {
        Outcome::Promoted | Outcome::AlreadyProduction => {
            println!("{report}");
            tracing::info!(model = %report.model, version = report.candidate.get(), outcome = ?report.outcome, "validation passed");
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Rejected => {
            // The verdict goes to stdout with the evidence, and the reason to stderr for logs.
            println!("{report}");
            for check in report.failed_checks() {
                eprintln!("validation failed: {}: {}", check.name, check.detail);
            }
            Ok(ExitCode::from(EXIT_REJECTED))
        }
    }
}

/// `limen predict`: print what the server's `/predict` (or, with `--explain`, `/explain`) would
/// answer.
pub fn predict(catalog: &Catalog, cfg: PredictConfig) -> anyhow::Result<()> {
    let name = &cfg.model;
    catalog.require_model(name)?;
    let version = match cfg.version {
        Some(v) => v,
        None => catalog.pointer(name, Pointer::Production)?.with_context(|| {
            format!("model {name:?} has no production version: run `limen validate --model {name}`, or pass --version")
        })?,
    };
    let model = catalog
        .load_verified(name, version)
        .with_context(|| format!("cannot load {name}/{version}"))?;
    let body = match cfg.body {
        Some(body) => body,
        None => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("cannot read the JSON request from stdin")?;
            body
        }
    };
    let template = api::Template::new(&model);
    let answer = if cfg.explain {
        api::explain(&model, &template, &body)?
    } else {
        api::answer(&model, &template, &body)?
    };
    println!("{}", String::from_utf8_lossy(&answer));
    Ok(())
}
