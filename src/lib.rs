//! limen: a small, fast, safe model server with an embedded trainer.
//!
//! Data flows one way: [`data`] (CSV) → [`train`] (linfa) → [`model`] (the `model.json`
//! artifact) → [`store`] (atomic, versioned, on a shared filesystem) → [`validate`] (the gate that
//! promotes a candidate to production) → [`watch`] (notices changes) → [`registry`] (loads,
//! verifies, warms up and swaps models) → [`serve`] (answers HTTP). [`api`] is the `/predict` wire
//! format; [`cli`] and [`app`] turn command lines into calls of the above.

pub mod api;
pub mod app;
pub mod catalog;
pub mod cli;
pub mod data;
pub mod input;
pub mod model;
pub mod oip;
pub mod ops;
pub mod registry;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod train;
pub mod validate;
pub mod watch;
