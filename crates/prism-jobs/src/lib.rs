//! Every Prism job as one library call: attributing a dataset and running the demo.
//!
//! `prism-cli` parses arguments and draws progress bars; the work its commands do lives in
//! libraries, so that every front end (the `prism` binary, the coming Python package, a GPU
//! runner, a cluster job) runs the same code and writes the same bytes. The jobs that need
//! several layers of the flow live here, the crate above them all:
//!
//! - [`attribute_dataset`]: the loop of `prism attribute` (read a batch, attribute it with a
//!   [`Method`], write its part, report progress) over the resumable, sharded, locked run
//!   protocol of [`prism_store::run`]. A [`RunProgress`] callback sees each part and may stop
//!   the run, which is how a kill is tested without a process.
//! - [`concepts_dataset`]: `prism concepts`, relevance and activation maximisation over a
//!   dataset (zennit-crp's `FeatureVisualization`) on the same run protocol.
//! - [`tcav::tcav`]: `prism tcav`, testing with concept activation vectors (Captum's TCAV):
//!   CAVs at a layer, TCAV scores of a class, t-tests against random sets.
//! - [`demo::run_demo`]: `prism demo`'s steps (attribute → `prism_analysis::analyze_file` →
//!   `prism_store::project::write_project` → findings), with its bundled data.
//!
//! Jobs that one lower crate owns stay there and are called directly: analysing a file
//! (`prism_analysis::analyze_file`), writing a project (`prism_store::project::write_project`),
//! merging shards (`prism_store::run::merge_shards`) and evaluating (`prism_eval`). Why a crate
//! of its own rather than `prism-store`: the loop needs the model and the attribution crates,
//! and the demo needs the analysis, which itself depends on `prism-store`; dependencies point
//! one way (model → attribution → store → analysis → jobs → cli).
//!
//! This crate prints nothing and parses no command lines: errors are typed values in library
//! words, and progress goes to the caller's callback.
//!
//! ```no_run
//! use prism_jobs::{attribute_dataset, demo::demo_method, AttributeJob, NoProgress};
//!
//! let job = AttributeJob {
//!     model: "mnist-cnn.onnx".into(),
//!     dataset: "mnist.h5".into(),
//!     dataset_options: Default::default(),
//!     output: "attribution.h5".into(),
//!     target: "label".into(),
//!     batch_size: 64,
//!     shard: None,
//!     limit: None,
//!     compression: None,
//!     prefetch: 2,
//!     force: false,
//!     allow_nonfinite: false,
//!     record: None,
//! };
//! let outcome = attribute_dataset(&job, &demo_method()?, &mut NoProgress)?;
//! println!("{outcome:?}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod attribute;
pub mod concepts;
pub mod demo;
pub mod tcav;

pub use attribute::{
    attribute_dataset, AttributeJob, AttributeOutcome, JobError, Method, NoProgress, RunProgress,
    RunStarted,
};
pub use concepts::{concepts_dataset, ConceptsJob, ConceptsOutcome};
pub use demo::{run_demo, DemoError, DemoOptions, DemoProgress, DemoReport};
pub use tcav::{tcav, TcavError, TcavJob, TcavReport};
