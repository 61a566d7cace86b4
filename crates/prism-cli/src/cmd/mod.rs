//! One module per `prism` subcommand: its arguments (clap) and its `run` function.

pub mod analyze;
pub mod demo;
pub mod explain;
pub mod heatmap;
pub mod inspect;
pub mod predict;
