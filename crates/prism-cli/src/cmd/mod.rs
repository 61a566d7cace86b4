//! One module per `prism` subcommand: its arguments (clap) and its `run` function.

pub mod analyze;
pub mod attribute;
pub mod concepts;
pub mod dataset;
pub mod demo;
pub mod evaluate;
pub mod explain;
pub mod heatmap;
pub mod inputs;
pub mod inspect;
pub mod merge;
pub mod method;
pub mod predict;
pub mod project;
pub mod serve;
pub mod tcav;
