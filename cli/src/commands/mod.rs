//! The `mlops` commands, one module per group: each owns its clap arguments and the code that
//! runs them, while `main.rs` holds the global options and the list of commands.

pub(crate) mod data;
pub(crate) mod deploy;
pub(crate) mod events;
pub(crate) mod features;
pub(crate) mod models;
pub(crate) mod monitor;
pub(crate) mod object_store;
pub(crate) mod pipeline;
pub(crate) mod platform;
pub(crate) mod predict;
pub(crate) mod predictions;
pub(crate) mod runs;
pub(crate) mod schema;
pub(crate) mod score;
pub(crate) mod staleness;
