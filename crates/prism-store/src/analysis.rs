//! ViRelAy analysis files: one group per category, each with
//!
//! ```text
//! /<category>/index              uint32 (n)     sample numbers of the category's members
//! /<category>/embedding/<name>   float32 (n, d) attr `eigenvalue` float32 (d) for spectral ones
//! /<category>/cluster/<name>     int32 (n)      cluster of each member (-1 = noise)
//! ```
//!
//! This is the layout ViRelAy's code reads (not the one its docs describe). Prism adds
//! attributes (parameters, eigengap, versions), which ViRelAy ignores.

use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::h5util::{self, AttrValue, TempTarget};

/// Group and dataset names inside a category.
pub const INDEX: &str = "index";
pub const EMBEDDING: &str = "embedding";
pub const CLUSTER: &str = "cluster";
/// The one embedding attribute ViRelAy reads.
pub const EIGENVALUE: &str = "eigenvalue";

/// A 2-D or d-dimensional embedding of a category's members.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub name: String,
    /// Number of dimensions (columns).
    pub dim: usize,
    /// Row-major `n × dim`.
    pub values: Vec<f32>,
    /// Eigenvalues (ViRelAy shows them as a bar chart), for spectral embeddings.
    pub eigenvalue: Option<Vec<f32>>,
    /// Further attributes (e.g. `embedding` = what it was computed from, parameters).
    pub attrs: Vec<(String, AttrValue)>,
}

/// A clustering of a category's members.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    pub name: String,
    /// Cluster of each member; -1 marks noise (DBSCAN, HDBSCAN).
    pub labels: Vec<i32>,
    pub attrs: Vec<(String, AttrValue)>,
}

/// One category (usually one class) of an analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    /// Group name: a WordNet id, or the class number as `{:08}` (ViRelAy's convention).
    pub name: String,
    /// Sample number of each member (the attribution file's `index` value, or its row).
    pub index: Vec<u32>,
    pub embeddings: Vec<Embedding>,
    pub clusterings: Vec<Clustering>,
    pub attrs: Vec<(String, AttrValue)>,
}

/// Writes an analysis file category by category, under a temporary name until
/// [`AnalysisWriter::finish`] renames it into place.
pub struct AnalysisWriter {
    target: TempTarget,
    file: hdf5::File,
}

impl AnalysisWriter {
    /// Creates the file under a temporary name next to `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let target = TempTarget::new(path.as_ref());
        let file = hdf5::File::create(&target.temp_path).map_err(|source| StoreError::Create {
            path: target.final_path.clone(),
            source,
        })?;
        Ok(AnalysisWriter { target, file })
    }

    fn path(&self) -> PathBuf {
        self.target.final_path.clone()
    }

    /// Sets a root attribute (Prism version, format version, parameters as JSON, …).
    pub fn set_attr(&mut self, name: &str, value: &AttrValue) -> Result<()> {
        h5util::write_attr(&self.file, &self.target.final_path, "/", name, value)
    }

    /// Writes one category. Every embedding and clustering must have one row per member.
    pub fn write_category(&mut self, cat: &Category) -> Result<()> {
        let path = self.path();
        let n = cat.index.len();
        let usage = |message: String| StoreError::Usage {
            path: path.clone(),
            message,
        };
        if cat.name.is_empty() || cat.name.contains('/') || cat.name == "." {
            return Err(usage(format!(
                "`{}` is not a valid category name",
                cat.name
            )));
        }
        if self.file.link_exists(&cat.name) {
            return Err(usage(format!("category `{}` was written twice", cat.name)));
        }
        let werr = |name: String| {
            let path = path.clone();
            move |source| StoreError::Write {
                path,
                dataset: name,
                source,
            }
        };
        let group = self
            .file
            .create_group(&cat.name)
            .map_err(werr(cat.name.clone()))?;
        let gname = &cat.name;
        group
            .new_dataset_builder()
            .with_data(cat.index.as_slice())
            .create(INDEX)
            .map_err(werr(format!("{gname}/{INDEX}")))?;
        for (k, v) in &cat.attrs {
            h5util::write_attr(&group, &path, gname, k, v)?;
        }
        let emb_group = group
            .create_group(EMBEDDING)
            .map_err(werr(format!("{gname}/{EMBEDDING}")))?;
        for e in &cat.embeddings {
            let dname = format!("{gname}/{EMBEDDING}/{}", e.name);
            if e.dim == 0 || e.values.len() != n * e.dim {
                return Err(usage(format!(
                    "{dname}: {} values do not make {n} rows of {} columns",
                    e.values.len(),
                    e.dim
                )));
            }
            let arr = ndarray::ArrayView2::from_shape((n, e.dim), &e.values)
                .map_err(|err| usage(format!("{dname}: {err}")))?;
            let ds = emb_group
                .new_dataset_builder()
                .with_data(&arr)
                .create(e.name.as_str())
                .map_err(werr(dname.clone()))?;
            if let Some(ev) = &e.eigenvalue {
                h5util::write_attr(
                    &ds,
                    &path,
                    &dname,
                    EIGENVALUE,
                    &AttrValue::FloatArray(ev.clone()),
                )?;
            }
            for (k, v) in &e.attrs {
                h5util::write_attr(&ds, &path, &dname, k, v)?;
            }
        }
        let cl_group = group
            .create_group(CLUSTER)
            .map_err(werr(format!("{gname}/{CLUSTER}")))?;
        for c in &cat.clusterings {
            let dname = format!("{gname}/{CLUSTER}/{}", c.name);
            if c.labels.len() != n {
                return Err(usage(format!(
                    "{dname}: {} labels for {n} members",
                    c.labels.len()
                )));
            }
            let ds = cl_group
                .new_dataset_builder()
                .with_data(c.labels.as_slice())
                .create(c.name.as_str())
                .map_err(werr(dname.clone()))?;
            for (k, v) in &c.attrs {
                h5util::write_attr(&ds, &path, &dname, k, v)?;
            }
        }
        Ok(())
    }

    /// Closes the file and renames it into place.
    pub fn finish(self) -> Result<()> {
        let AnalysisWriter { target, file } = self;
        file.close().map_err(|source| StoreError::Write {
            path: target.final_path.clone(),
            dataset: "/".into(),
            source,
        })?;
        target.commit()
    }
}

/// An open analysis file (ViRelAy's layout; read by tests, tools and the viewer).
pub struct AnalysisFile {
    path: PathBuf,
    file: hdf5::File,
}

impl AnalysisFile {
    /// Opens an analysis file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = h5util::open_file(&path)?;
        Ok(AnalysisFile { path, file })
    }

    /// Names of the categories (groups at the root), in HDF5 name order.
    pub fn categories(&self) -> Result<Vec<String>> {
        let err = |source| StoreError::Read {
            path: self.path.clone(),
            dataset: "/".into(),
            source,
        };
        let names = self.file.member_names().map_err(err)?;
        Ok(names
            .into_iter()
            .filter(|n| self.file.group(n).is_ok())
            .collect())
    }

    /// Reads a root attribute.
    pub fn attr(&self, name: &str) -> Result<Option<AttrValue>> {
        h5util::read_attr(&self.file, &self.path, "/", name)
    }

    /// Reads one category completely.
    pub fn category(&self, name: &str) -> Result<Category> {
        let path = &self.path;
        let rerr = |dataset: String| {
            let path = path.clone();
            move |source| StoreError::Read {
                path,
                dataset,
                source,
            }
        };
        let missing = |dataset: String| StoreError::MissingDataset {
            path: path.clone(),
            dataset,
            hint: "an analysis category needs `index`, `embedding/` and `cluster/`".into(),
        };
        if !self.file.link_exists(name) {
            return Err(missing(name.to_string()));
        }
        let group = self.file.group(name).map_err(rerr(name.to_string()))?;
        for part in [INDEX, EMBEDDING, CLUSTER] {
            if !group.link_exists(part) {
                return Err(missing(format!("{name}/{part}")));
            }
        }
        let index = group
            .dataset(INDEX)
            .and_then(|d| d.read_raw::<u32>())
            .map_err(rerr(format!("{name}/{INDEX}")))?;
        let n = index.len();
        let mut attrs = Vec::new();
        for a in group.attr_names().map_err(rerr(name.to_string()))? {
            if let Some(v) = h5util::read_attr(&group, path, name, &a)? {
                attrs.push((a, v));
            }
        }
        let eg = group
            .group(EMBEDDING)
            .map_err(rerr(format!("{name}/{EMBEDDING}")))?;
        let mut embeddings = Vec::new();
        for en in eg
            .member_names()
            .map_err(rerr(format!("{name}/{EMBEDDING}")))?
        {
            let dname = format!("{name}/{EMBEDDING}/{en}");
            let ds = eg.dataset(&en).map_err(rerr(dname.clone()))?;
            let shape = ds.shape();
            if shape.len() != 2 || shape[0] != n {
                return Err(StoreError::Shape {
                    path: path.clone(),
                    dataset: dname,
                    found: shape,
                    expected: format!("an embedding must be {n}×d (one row per member)"),
                });
            }
            let values = ds.read_raw::<f32>().map_err(rerr(dname.clone()))?;
            let mut eigenvalue = None;
            let mut eattrs = Vec::new();
            for a in ds.attr_names().map_err(rerr(dname.clone()))? {
                match h5util::read_attr(&ds, path, &dname, &a)? {
                    Some(AttrValue::FloatArray(v)) if a == EIGENVALUE => eigenvalue = Some(v),
                    Some(v) => eattrs.push((a, v)),
                    None => {}
                }
            }
            embeddings.push(Embedding {
                name: en,
                dim: shape[1],
                values,
                eigenvalue,
                attrs: eattrs,
            });
        }
        let cg = group
            .group(CLUSTER)
            .map_err(rerr(format!("{name}/{CLUSTER}")))?;
        let mut clusterings = Vec::new();
        for cn in cg
            .member_names()
            .map_err(rerr(format!("{name}/{CLUSTER}")))?
        {
            let dname = format!("{name}/{CLUSTER}/{cn}");
            let ds = cg.dataset(&cn).map_err(rerr(dname.clone()))?;
            if ds.shape() != [n] {
                return Err(StoreError::Shape {
                    path: path.clone(),
                    dataset: dname,
                    found: ds.shape(),
                    expected: format!("a clustering must have {n} entries (one per member)"),
                });
            }
            let labels = ds.read_raw::<i32>().map_err(rerr(dname.clone()))?;
            let mut cattrs = Vec::new();
            for a in ds.attr_names().map_err(rerr(dname.clone()))? {
                if let Some(v) = h5util::read_attr(&ds, path, &dname, &a)? {
                    cattrs.push((a, v));
                }
            }
            clusterings.push(Clustering {
                name: cn,
                labels,
                attrs: cattrs,
            });
        }
        Ok(Category {
            name: name.to_string(),
            index,
            embeddings,
            clusterings,
            attrs,
        })
    }
}
