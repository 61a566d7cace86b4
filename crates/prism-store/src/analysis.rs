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

use crate::atomic::StagedFile;
use crate::error::{Result, StoreError};
use crate::h5util::{self, AttrValue};

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
    target: StagedFile,
    file: hdf5::File,
}

impl AnalysisWriter {
    /// Creates the file under a temporary name next to `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let target = StagedFile::new(path.as_ref());
        let file = hdf5::File::create(target.temp_path()).map_err(|source| StoreError::Create {
            path: target.final_path().to_path_buf(),
            source,
        })?;
        Ok(AnalysisWriter { target, file })
    }

    fn path(&self) -> PathBuf {
        self.target.final_path().to_path_buf()
    }

    /// Sets a root attribute (Prism version, format version, parameters as JSON, …).
    pub fn set_attr(&mut self, name: &str, value: &AttrValue) -> Result<()> {
        h5util::write_attr(&self.file, self.target.final_path(), "/", name, value)
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
            path: target.final_path().to_path_buf(),
            dataset: "/".into(),
            source,
        })?;
        target.commit()?;
        Ok(())
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
        let index_ds = group
            .dataset(INDEX)
            .map_err(rerr(format!("{name}/{INDEX}")))?;
        h5util::check_declared(&index_ds, path, &format!("{name}/{INDEX}"), true)?;
        let index = index_ds
            .read_raw::<u32>()
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
            h5util::check_declared(&ds, path, &dname, true)?;
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
            h5util::check_declared(&ds, path, &dname, true)?;
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

/// Name, width and eigenvalues of one embedding, read without its values.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingInfo {
    pub name: String,
    /// Number of dimensions (columns).
    pub dim: usize,
    /// The `eigenvalue` attribute (spectral embeddings), if present and numeric.
    pub eigenvalue: Option<Vec<f32>>,
}

/// One category of an analysis file, opened for reading its arrays one at a time.
///
/// The viewer serves categories of 10⁵–10⁶ members; it asks for one embedding's two columns or
/// one clustering at a time, so nothing here reads more than the array asked for. Values are
/// converted by HDF5 (ViRelAy's `meta_analysis.py` writes int64 indices and labels and may write
/// float64 embeddings).
#[derive(Debug)]
pub struct CategoryReader {
    path: PathBuf,
    name: String,
    group: hdf5::Group,
}

impl AnalysisFile {
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The categories ViRelAy lists: root groups that hold `index` and `embedding`, in HDF5 name
    /// order.
    pub fn listed_categories(&self) -> Result<Vec<String>> {
        let names = self
            .file
            .member_names()
            .map_err(|source| StoreError::Read {
                path: self.path.clone(),
                dataset: "/".into(),
                source,
            })?;
        Ok(names
            .into_iter()
            .filter(|name| {
                self.file
                    .group(name)
                    .map(|g| g.link_exists(INDEX) && g.link_exists(EMBEDDING))
                    .unwrap_or(false)
            })
            .collect())
    }

    /// Opens category `name` for lazy reading; `None` if the file has no such group.
    pub fn category_reader(&self, name: &str) -> Option<CategoryReader> {
        let group = self.file.group(name).ok()?;
        Some(CategoryReader {
            path: self.path.clone(),
            name: name.to_string(),
            group,
        })
    }
}

impl CategoryReader {
    /// [`h5util::check_declared`] for a dataset of this category read whole.
    fn check_declared(&self, ds: &hdf5::Dataset, dataset: &str) -> Result<()> {
        h5util::check_declared(ds, &self.path, &format!("{}/{dataset}", self.name), true)
    }

    fn read_err(&self, dataset: String) -> impl FnOnce(hdf5::Error) -> StoreError {
        let path = self.path.clone();
        let dataset = format!("{}/{dataset}", self.name);
        move |source| StoreError::Read {
            path,
            dataset,
            source,
        }
    }

    /// The category's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of members (rows of `index`).
    pub fn len(&self) -> Result<usize> {
        let ds = self
            .group
            .dataset(INDEX)
            .map_err(self.read_err(INDEX.into()))?;
        Ok(ds.shape().first().copied().unwrap_or(0))
    }

    /// Whether the category has no members.
    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// The sample numbers of the members, as stored (any integer type, read as i64).
    pub fn index(&self) -> Result<Vec<i64>> {
        let ds = self
            .group
            .dataset(INDEX)
            .map_err(self.read_err(INDEX.into()))?;
        self.check_declared(&ds, INDEX)?;
        ds.read_raw::<i64>().map_err(self.read_err(INDEX.into()))
    }

    /// The embeddings of shape `len × d` (d > 0), in HDF5 name order; other datasets under
    /// `embedding/` are not embeddings of this category and are left out.
    pub fn embeddings(&self) -> Result<Vec<EmbeddingInfo>> {
        let n = self.len()?;
        let Ok(eg) = self.group.group(EMBEDDING) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for name in eg.member_names().map_err(self.read_err(EMBEDDING.into()))? {
            let Ok(ds) = eg.dataset(&name) else { continue };
            let shape = ds.shape();
            if shape.len() != 2 || shape[0] != n || shape[1] == 0 {
                continue;
            }
            // A non-numeric `eigenvalue` is not ViRelAy's attribute; it is shown as absent.
            let eigenvalue = ds
                .attr(EIGENVALUE)
                .ok()
                .and_then(|a| a.read_raw::<f32>().ok());
            out.push(EmbeddingInfo {
                name,
                dim: shape[1],
                eigenvalue,
            });
        }
        Ok(out)
    }

    /// The clusterings with one entry per member, in HDF5 name order.
    pub fn clusterings(&self) -> Result<Vec<String>> {
        let n = self.len()?;
        let Ok(cg) = self.group.group(CLUSTER) else {
            return Ok(Vec::new());
        };
        let names = cg.member_names().map_err(self.read_err(CLUSTER.into()))?;
        Ok(names
            .into_iter()
            .filter(|name| cg.dataset(name).map(|d| d.shape() == [n]).unwrap_or(false))
            .collect())
    }

    /// A scalar integer attribute of the category (e.g. `eigengap_suggested_k`).
    pub fn int_attr(&self, name: &str) -> Result<Option<i64>> {
        match h5util::read_attr(&self.group, &self.path, &self.name, name)? {
            Some(AttrValue::Int(v)) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    fn embedding_dataset(&self, embedding: &str) -> Option<hdf5::Dataset> {
        self.group.dataset(&format!("{EMBEDDING}/{embedding}")).ok()
    }

    /// Two columns of an embedding, interleaved `x0 y0 x1 y1 …` (only those columns are read);
    /// `None` if the embedding does not exist, is not 2-D or has no such columns.
    pub fn embedding_columns(
        &self,
        embedding: &str,
        cols: (usize, usize),
    ) -> Result<Option<Vec<f32>>> {
        let Some(ds) = self.embedding_dataset(embedding) else {
            return Ok(None);
        };
        let [n, d] = ds.shape()[..] else {
            return Ok(None);
        };
        if cols.0 >= d || cols.1 >= d {
            return Ok(None);
        }
        if n > h5util::MAX_READ_ELEMENTS {
            return Err(StoreError::Shape {
                path: self.path.clone(),
                dataset: format!("{}/{EMBEDDING}/{embedding}", self.name),
                found: ds.shape(),
                expected: format!(
                    "it declares more than the {} rows Prism reads (is the file corrupt?)",
                    h5util::MAX_READ_ELEMENTS
                ),
            });
        }
        let err = || self.read_err(format!("{EMBEDDING}/{embedding}"));
        let x = ds
            .read_slice_1d::<f32, _>(ndarray::s![.., cols.0])
            .map_err(err())?;
        let y = ds
            .read_slice_1d::<f32, _>(ndarray::s![.., cols.1])
            .map_err(err())?;
        let mut out = Vec::with_capacity(2 * n);
        for (a, b) in x.iter().zip(y.iter()) {
            out.push(*a);
            out.push(*b);
        }
        Ok(Some(out))
    }

    /// All columns of an embedding: its width (at least 1) and its values, row-major; `None` if
    /// it does not exist.
    pub fn embedding(&self, embedding: &str) -> Result<Option<(usize, Vec<f32>)>> {
        let Some(ds) = self.embedding_dataset(embedding) else {
            return Ok(None);
        };
        let d = ds.shape().get(1).copied().unwrap_or(1).max(1);
        self.check_declared(&ds, &format!("{EMBEDDING}/{embedding}"))?;
        let values = ds
            .read_raw::<f32>()
            .map_err(self.read_err(format!("{EMBEDDING}/{embedding}")))?;
        Ok(Some((d, values)))
    }

    /// A clustering's labels as stored (−1 = noise); `None` if it does not exist.
    pub fn clustering(&self, clustering: &str) -> Result<Option<Vec<i64>>> {
        let Ok(ds) = self.group.dataset(&format!("{CLUSTER}/{clustering}")) else {
            return Ok(None);
        };
        self.check_declared(&ds, &format!("{CLUSTER}/{clustering}"))?;
        ds.read_raw::<i64>()
            .map(Some)
            .map_err(self.read_err(format!("{CLUSTER}/{clustering}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_one(path: &Path) {
        let mut w = AnalysisWriter::create(path).unwrap();
        w.write_category(&Category {
            name: "00000003".into(),
            index: vec![4, 9, 12],
            embeddings: vec![
                Embedding {
                    name: "spectral".into(),
                    dim: 3,
                    values: (0..9).map(|v| v as f32).collect(),
                    eigenvalue: Some(vec![1.0, 0.5, 0.0]),
                    attrs: vec![],
                },
                Embedding {
                    name: "tsne".into(),
                    dim: 2,
                    values: vec![0.5, -0.5, 1.5, -1.5, 2.5, -2.5],
                    eigenvalue: None,
                    attrs: vec![],
                },
            ],
            clusterings: vec![Clustering {
                name: "kmeans-02".into(),
                labels: vec![1, -1, 0],
                attrs: vec![],
            }],
            attrs: vec![("eigengap_suggested_k".into(), AttrValue::Int(2))],
        })
        .unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn category_reader_reads_each_array_alone_with_the_values_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.h5");
        write_one(&path);
        let f = AnalysisFile::open(&path).unwrap();
        assert_eq!(f.listed_categories().unwrap(), ["00000003"]);
        let c = f.category_reader("00000003").unwrap();
        assert_eq!(c.len().unwrap(), 3);
        assert_eq!(c.index().unwrap(), [4, 9, 12]);
        let infos = c.embeddings().unwrap();
        assert_eq!(
            infos
                .iter()
                .map(|e| (e.name.as_str(), e.dim))
                .collect::<Vec<_>>(),
            [("spectral", 3), ("tsne", 2)]
        );
        assert_eq!(
            infos[0].eigenvalue.as_deref(),
            Some(&[1.0f32, 0.5, 0.0][..])
        );
        assert_eq!(infos[1].eigenvalue, None);
        assert_eq!(c.clusterings().unwrap(), ["kmeans-02"]);
        assert_eq!(c.int_attr("eigengap_suggested_k").unwrap(), Some(2));
        // Columns 2 and 0 of the 3×3 embedding 0..9, interleaved.
        assert_eq!(
            c.embedding_columns("spectral", (2, 0)).unwrap().unwrap(),
            [2.0, 0.0, 5.0, 3.0, 8.0, 6.0]
        );
        assert_eq!(
            c.embedding("tsne").unwrap().unwrap(),
            (2, vec![0.5, -0.5, 1.5, -1.5, 2.5, -2.5])
        );
        assert_eq!(c.clustering("kmeans-02").unwrap().unwrap(), [1, -1, 0]);
    }

    #[test]
    fn category_reader_answers_none_for_what_the_file_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.h5");
        write_one(&path);
        let f = AnalysisFile::open(&path).unwrap();
        assert!(f.category_reader("00000004").is_none());
        let c = f.category_reader("00000003").unwrap();
        assert_eq!(c.embedding_columns("umap", (0, 1)).unwrap(), None);
        assert_eq!(c.embedding_columns("tsne", (0, 2)).unwrap(), None);
        assert_eq!(c.embedding("umap").unwrap(), None);
        assert_eq!(c.clustering("dbscan").unwrap(), None);
        assert_eq!(c.int_attr("no_such_attribute").unwrap(), None);
    }
}
