//! Prism's file formats: the HDF5 attribution and analysis files that ViRelAy reads and writes.
//!
//! This crate knows layouts, not algorithms. It reads ViRelAy attribution files
//! (`attribution`, `prediction`, `label`, optional `index`) row block by row block, so a
//! dataset never has to fit in memory; it writes attribution files (for `prism attribute`) and
//! analysis files (one group per category with `index`, `embedding/<name>`, `cluster/<name>`;
//! attribution files may also carry the relevance recorded at hidden nodes in `/record`),
//! each under a temporary name that is renamed into place only when complete ([`atomic`], the
//! crash-safe write every Prism output goes through); it reads concepts files (`prism concepts`:
//! per-layer channel relevance, reference samples, conditional heatmaps; [`concepts`]). Prism's own
//! metadata (parameters, versions, eigengap) goes into HDF5 attributes, which ViRelAy ignores.
//! It does not compute anything (see `prism-analysis`) nor serve files (see the viewer).
//!
//! Where ViRelAy's documentation and its code disagree, the code is the contract; see
//! `docs/formats.md`. Errors name the file and dataset and say what to do.
//!
//! HDF5 is the bundled C library (hdf5-metno's `static` feature), so no system HDF5 is needed;
//! building it needs CMake ≥ 3.26 (`pip install cmake`).

pub mod analysis;
pub mod atomic;
pub mod attribution;
pub mod concepts;
pub mod concepts_run;
pub mod dataset;
pub mod error;
mod h5util;
pub mod label_map;
pub mod npy;
pub mod project;
pub mod provenance;
pub mod record;
pub mod run;
pub mod tokens;
mod workdir;

pub use analysis::{
    AnalysisFile, AnalysisWriter, Category, CategoryReader, Clustering, Embedding, EmbeddingInfo,
};
pub use atomic::{write_atomic, write_bytes_atomic, StagedFile, WriteError};
pub use attribution::{
    AttributionFile, AttributionLayout, AttributionWriter, BatchLabels, LabelLayout, Labels,
    RecordLayout, RecordNodeLayout, RecordRows,
};
pub use concepts::{
    ChannelQuantity, ConceptHeatmaps, ConceptLayer, ConceptsFile, CropBox, Reference,
    ReferenceKind, ReferenceTable,
};
pub use concepts_run::{
    merge_concepts, ConceptRun, ConceptRunSpec, ConceptSettings, LayerInfo, LayerMaxima, Maxima,
};
pub use dataset::{
    Batch, Batches, DataLayout, Dataset, DatasetError, DatasetKind, DatasetOptions,
    DatasetOptionsText, DatasetWriter, DisplayDataset, DisplayError, Normalize, OptionTextError,
    Preprocess, Resize, RgbImage, SampleType, TokenDataset,
};
pub use error::{Result, StoreError};
pub use h5util::{row_runs, AttrValue, MAX_READ_ELEMENTS};
pub use label_map::{read_label_map, LabelEntry};
pub use npy::{NpyArray, NpyError};
pub use project::Project;
pub use provenance::{
    AnalysisProvenance, LabelSource, Provenance, RecordSettings, RunSettings, Shard,
    ShardParseError, TargetSpec,
};
pub use run::{
    merge_shards, AttributionRun, MergeError, PartRecord, PendingBatch, Prepared, RunError, RunSpec,
};
pub use tokens::{read_tokens, TokenFileError};

/// Version of the files Prism writes; stored as the root attribute `prism_format_version`.
pub const FORMAT_VERSION: i64 = 1;
