//! limen: a small, fast, safe model server with an embedded trainer.
//!
//! # Layers
//!
//! Each module imports only from the layers below it: no circles, and nothing lower knows
//! anything higher (`tests/architecture.rs` checks this on every test run).
//!
//! ```text
//!  app            runs each subcommand, prints its result               (the binary's edge)
//!  cli            clap *Args → checked *Config
//!  serve          router, handlers, the one error → status table, shutdown
//!  registry       the served models: load → verify → warm up → swap; pinned cache
//!  watch          inotify + polling → "scan again"; ScanOutcome
//!  guardrails     `limen watch`: a new production version's live counters → keep or roll back
//!  validate ops   the promotion gate; operator actions (list, show, promote, rollback, gc)
//!  switch         a move of production: the fleet loads the version, then switches at one time
//!  fleet          every server's heartbeat in the store: what it serves, read as untrusted
//!  catalog        the store protocol: names, versions, load_verified, moves under a typed lock
//!  store          bytes on disk: atomic files and folders, the lock file, listing
//!  train api oip  fitting and cross-validation; the /predict and Open Inference Protocol wire formats
//!  columns        which columns a training run uses: flags checked against the table
//!  evaluate holdout  a model's quality on labelled rows; the rows a fit never sees
//!  preprocess     imputation and categories fitted on training rows; a table's codes → a model's
//!  forest logistic  random forests fitted with linfa-trees, as tree ensembles; the logistic
//!                 objective (sample weights) minimised by argmin's L-BFGS
//!  model          model.json: schema, checksum, prediction
//!  data input telemetry   CSV → features; what bad input is; logs and metrics
//!  columnar remote  Parquet tables as CSV rows; S3 locations staged as local files
//!  budget         the process's memory budget: reservations that give back on drop
//! ```
//!
//! Data flows up the picture: `data/iris.csv` → [`data`] → [`train`] (which scores with the same
//! [`model`] code the server runs, so it sits above it) → [`store`] → [`catalog`] → [`validate`]
//! promotes → [`watch`] notices → [`registry`] swaps → [`serve`] answers.

pub mod api;
pub mod app;
pub mod budget;
pub mod catalog;
pub mod cli;
pub mod columnar;
pub mod columns;
pub mod data;
pub mod drift;
pub mod evaluate;
pub mod evidence;
pub mod fleet;
pub mod forest;
pub mod guardrails;
pub mod holdout;
pub mod import;
pub mod inference_log;
pub mod input;
pub mod logistic;
pub mod model;
pub mod oip;
pub mod ops;
pub mod preprocess;
pub mod registry;
pub mod remote;
pub mod report;
pub mod serve;
pub mod shadow;
pub mod store;
pub mod switch;
pub mod telemetry;
pub mod train;
pub mod validate;
pub mod watch;
