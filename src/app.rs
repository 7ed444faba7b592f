//! Runs each subcommand: glues data, training, the store and the gate together and prints what
//! happened. Stdout carries results for scripts (for `train`, the version id is the last line);
//! logs go to stderr.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

use crate::api;
use crate::cli::{
    Cli, Command, ModelsAction, ModelsArgs, PredictConfig, QuickstartArgs, TrainArgs, TrainConfig,
    ValidateArgs,
};
use crate::data::Dataset;
use crate::ops::{self, OpsError};
use crate::serve::{self, ServeConfig};
use crate::store::{now_rfc3339, Pointer, Store, VersionId};
use crate::train;
use crate::validate::{self, GateConfig, Outcome};

/// Exit code of a command that ran and said no: a rejected candidate, a refused rollback.
pub const EXIT_REJECTED: u8 = 1;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let store = cli.store();
    match cli.command {
        Command::Train(args) => {
            let version = train_and_publish(&store, &TrainConfig::try_from(args)?)?;
            println!("{version}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(args) => validate_and_promote(&store, &GateConfig::try_from(args)?),
        Command::Predict(args) => {
            predict(&store, PredictConfig::try_from(args)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let cfg = args.common.config(args.addr)?;
            serve(store, cfg, |addr| println!("listening on http://{addr}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Quickstart(args) => quickstart(store, args),
        Command::Models(args) => models(&store, args),
    }
}

/// `limen models …`: print the result as text or JSON; a refusal exits 1.
fn models(store: &Store, args: ModelsArgs) -> anyhow::Result<ExitCode> {
    let result = match args.action {
        ModelsAction::List => ops::list(store).map(|rows| {
            Printed::new(&rows, || {
                let mut out = format!(
                    "{:<24} {:>15} {:>15} {:>8}  LAST PROMOTION\n",
                    "MODEL", "PRODUCTION", "CANDIDATE", "VERSIONS"
                );
                for r in &rows {
                    let last = r.last_promotion.as_ref().map_or("-".to_owned(), |e| {
                        format!("{} {:?} {} by {}", e.at, e.action, opt(e.version), e.user)
                    });
                    out += &format!(
                        "{:<24} {:>15} {:>15} {:>8}  {last}\n",
                        r.name,
                        opt(r.production),
                        opt(r.candidate),
                        r.versions
                    );
                }
                out
            })
        }),
        ModelsAction::Show { name } => ops::show(store, &name.parse()?).map(|r| {
            Printed::new(&r, || {
                let mut out = format!(
                    "model       {}\nproduction  {}\ncandidate   {}\nversions    {}\n",
                    r.name,
                    opt(r.production),
                    opt(r.candidate),
                    r.versions
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if let Some(m) = &r.model {
                    out += &format!(
                        "metadata    {}\n",
                        serde_json::to_string_pretty(m).unwrap_or_default()
                    );
                }
                if let Some(e) = &r.model_error {
                    out += &format!("error       {e}\n");
                }
                out += "history\n";
                for e in &r.history {
                    out += &format!(
                        "  {} {:?} {} (was {}) by {}@{}: {}\n",
                        e.at,
                        e.action,
                        opt(e.version),
                        opt(e.previous),
                        e.user,
                        e.host,
                        e.command
                    );
                }
                out
            })
        }),
        ModelsAction::Promote { name, version } => {
            ops::promote(store, &name.parse()?, version.parse()?)
                .map(|c| pointer_change(&c, "promoted"))
        }
        ModelsAction::Rollback { name } => {
            ops::rollback(store, &name.parse()?).map(|c| pointer_change(&c, "rolled back"))
        }
        ModelsAction::Gc {
            name,
            keep,
            dry_run,
            temp_age,
        } => ops::gc(store, &name.parse()?, keep, temp_age, dry_run).map(|r| {
            Printed::new(&r, || {
                let verb = if r.dry_run { "would delete" } else { "deleted" };
                let mut out = format!(
                    "{}: {verb} {} version(s): {}\n",
                    r.name,
                    r.deleted.len(),
                    r.deleted
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                for (v, why) in &r.kept {
                    out += &format!("  kept {v}: {}\n", why.join(", "));
                }
                for t in &r.temporaries {
                    out += &format!("  {verb} leftover {}\n", t.display());
                }
                out
            })
        }),
    };
    match result {
        Ok(printed) => {
            print!(
                "{}",
                if args.json {
                    printed.json
                } else {
                    printed.text
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(OpsError::Refused(why)) => {
            eprintln!("refused: {why}");
            Ok(ExitCode::from(EXIT_REJECTED))
        }
        Err(e) => Err(e.into()),
    }
}

/// A result rendered both ways, so `--json` and text never drift apart in content.
struct Printed {
    text: String,
    json: String,
}

impl Printed {
    fn new(value: &impl serde::Serialize, text: impl FnOnce() -> String) -> Self {
        Self {
            text: text(),
            json: serde_json::to_string_pretty(value).unwrap_or_default() + "\n",
        }
    }
}

fn pointer_change(c: &ops::PointerChange, verb: &str) -> Printed {
    Printed::new(c, || {
        if c.changed {
            format!(
                "{verb} {}: production {} -> {}\n",
                c.name,
                opt(c.from),
                c.to
            )
        } else {
            format!(
                "{}/{} already is production; nothing changed\n",
                c.name, c.to
            )
        }
    })
}

fn opt(v: Option<VersionId>) -> String {
    v.map_or("-".to_owned(), |v| v.to_string())
}

/// Runs the server on a multi-threaded tokio runtime until it shuts down.
pub fn serve(
    store: Store,
    cfg: ServeConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cfg.workers > 0 {
        builder.worker_threads(cfg.workers);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve::run(store, cfg, |addr| {
        on_listening(addr);
        // Whoever reads our stdout (a test, a script) learns the port now, not at exit.
        let _ = std::io::stdout().flush();
    }))
}

/// `limen quickstart`: make sure the default store has a production Iris model, then serve it.
fn quickstart(store: Store, args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.common.config(args.addr)?;
    let name = &cfg.default_model;
    if store.read_pointer(name, Pointer::Production)?.is_none() {
        println!(
            "no production {name} model in {}: training and validating one",
            store.root().display()
        );
        let data = args.data.display().to_string();
        let train_args =
            TrainArgs::try_parse_from(["train", "--model", name.as_str(), "--data", &data])?;
        train_and_publish(&store, &TrainConfig::try_from(train_args)?)?;
        let gate_args = ValidateArgs::try_parse_from(["validate", "--model", name.as_str()])?;
        let code = validate_and_promote(&store, &GateConfig::try_from(gate_args)?)?;
        if code != ExitCode::SUCCESS {
            anyhow::bail!("the freshly trained model did not pass validation; see above");
        }
    }
    serve(store, cfg, |addr| {
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

/// `limen train`: fit, publish a new version, point `candidate` at it. Nothing is written unless
/// the data loads and the fit succeeds.
pub fn train_and_publish(store: &Store, cfg: &TrainConfig) -> anyhow::Result<VersionId> {
    let data = Dataset::load(&cfg.data, &cfg.features, &cfg.label_column)?;
    let started = std::time::Instant::now();
    let trained = train::train(&data, &cfg.params)?;
    let m = trained.metrics();
    let created_at = now_rfc3339();
    let name = &cfg.model;
    let version = store.publish(name, |v| {
        trained
            .artifact(name.as_str(), v.get(), &created_at)
            .to_json_bytes()
    })?;
    {
        let _lock = store.lock(name)?;
        store.write_pointer(name, Pointer::Candidate, version)?;
    }
    tracing::info!(
        model = %name,
        version = version.get(),
        rows = data.rows(),
        train_accuracy = m.train_accuracy,
        cv_accuracy = m.cv_accuracy,
        fit_ms = started.elapsed().as_millis() as u64,
        "published candidate"
    );
    let cv = m.cv_accuracy.map_or("off".to_owned(), |a| {
        format!("{a:.4} ({}-fold stratified)", m.cv_folds)
    });
    println!(
        "trained {name} on {} rows of {} (features: {})",
        data.rows(),
        data.path.display(),
        data.feature_names.join(", ")
    );
    println!(
        "  train accuracy {:.4}, log loss {:.4}, CV accuracy {cv}",
        m.train_accuracy, m.train_log_loss
    );
    println!(
        "published {name}/{version} as candidate in {}",
        store.root().display()
    );
    Ok(version)
}

/// `limen validate`: run the gate; exit 1 when it rejects the candidate.
pub fn validate_and_promote(store: &Store, cfg: &GateConfig) -> anyhow::Result<ExitCode> {
    let report = validate::run(store, cfg)?;
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

/// `limen predict`: print what the server's `/predict` would answer.
pub fn predict(store: &Store, cfg: PredictConfig) -> anyhow::Result<()> {
    let name = &cfg.model;
    store.require_model(name)?;
    let version = match cfg.version {
        Some(v) => v,
        None => store.read_pointer(name, Pointer::Production)?.with_context(|| {
            format!("model {name:?} has no production version: run `limen validate --model {name}`, or pass --version")
        })?,
    };
    let model = validate::load_verified(store, name, version)
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
    let answer = api::answer(&model, &api::Template::new(&model), &body, |_| {})?;
    println!("{}", String::from_utf8_lossy(&answer));
    Ok(())
}
