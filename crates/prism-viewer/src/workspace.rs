//! Loaded projects: their files opened once at start-up, their analyses read lazily.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prism_store::{
    AnalysisFile, AttributionFile, CategoryReader, ConceptLayer, ConceptsFile, LabelEntry, Project,
};

use crate::dataset::Dataset;
use crate::error::ViewerError;

/// Every project the server shows, in the order given (a project's id is its position).
pub struct Workspace {
    pub projects: Vec<LoadedProject>,
}

impl Workspace {
    /// Loads every project file; the first failure is returned with the file named.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Workspace, ViewerError> {
        let projects = paths
            .iter()
            .map(|p| LoadedProject::open(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Workspace { projects })
    }
}

/// Where one attribution sample lives.
#[derive(Debug, Clone, Copy)]
pub struct AttributionRow {
    pub file: usize,
    pub row: usize,
}

/// One analysis (a method with its files).
pub struct Analysis {
    pub method: String,
    files: Vec<AnalysisFile>,
    /// Category name → file number (first file wins on duplicates), in natural order of the names
    /// (`digit-2` before `digit-10`; see [`crate::natural`]).
    pub categories: Vec<(String, usize)>,
    meta: Mutex<HashMap<String, Arc<CategoryMeta>>>,
}

/// What the UI needs to know about one category before fetching its arrays.
#[derive(Debug, Clone)]
pub struct CategoryMeta {
    pub name: String,
    pub n: usize,
    /// Embedding names with their dimensions and eigenvalues (spectral embeddings).
    pub embeddings: Vec<(String, usize, Option<Vec<f32>>)>,
    /// Clustering names.
    pub clusterings: Vec<String>,
    /// Prism's suggested number of clusters from the eigengap, if the file has it.
    pub eigengap_suggested_k: Option<i64>,
}

/// An open project.
pub struct LoadedProject {
    pub yaml: PathBuf,
    pub dir: PathBuf,
    pub project: Project,
    pub label_map: Vec<LabelEntry>,
    pub dataset: Dataset,
    pub attributions: Vec<AttributionFile>,
    lookup: HashMap<u32, AttributionRow>,
    pub analyses: Vec<Analysis>,
    /// The concepts files (`concepts.sources`), in the order given.
    pub concepts: Vec<ConceptsFile>,
    /// Every layer of every concepts file, numbered as the API addresses them: (file, layer in
    /// that file).
    concept_layers: Vec<(usize, usize)>,
}

/// One layer of a project's concepts files, as the API addresses it.
#[derive(Clone, Copy)]
pub struct ConceptLayerRef<'a> {
    /// The layer's number in the project (across its concepts files).
    pub number: usize,
    /// Which concepts file holds it.
    pub file_number: usize,
    pub file: &'a ConceptsFile,
    /// The layer's number in that file.
    pub layer: usize,
    pub info: &'a ConceptLayer,
}

impl LoadedProject {
    /// Opens a project file and every file it names (all confined to its directory).
    pub fn open(yaml: &Path) -> Result<LoadedProject, ViewerError> {
        let project = Project::read(yaml)?;
        let dir = yaml
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .canonicalize()
            .map_err(|source| ViewerError::Io {
                path: yaml.to_path_buf(),
                source,
            })?;
        let confined = |p: &Path| -> Result<PathBuf, ViewerError> {
            Project::resolve_confined(&dir, p).map_err(|e| ViewerError::Project {
                path: yaml.to_path_buf(),
                message: prism_store::error::chain(&e),
            })
        };
        let label_map = prism_store::read_label_map(confined(&project.label_map)?)?;
        let dataset =
            Dataset::open(&project.dataset, &dir, &label_map).map_err(
                |e| match ViewerError::from(e) {
                    ViewerError::Store(s) => ViewerError::Project {
                        path: yaml.to_path_buf(),
                        message: prism_store::error::chain(&s),
                    },
                    other => other,
                },
            )?;
        let mut attributions = Vec::new();
        let mut lookup = HashMap::new();
        for (f, src) in project.attributions.sources.iter().enumerate() {
            let path = confined(src)?;
            let file = AttributionFile::open(&path)?;
            for row in 0..file.n_samples() {
                // As in ViRelAy, the first file that holds a sample wins.
                lookup
                    .entry(file.sample_number(row))
                    .or_insert(AttributionRow { file: f, row });
            }
            if let Some(t) = dataset.token_dataset() {
                // one relevance value per token position, as `prism attribute` writes it
                if file.sample_len() != t.positions() {
                    return Err(ViewerError::Project {
                        path: yaml.to_path_buf(),
                        message: format!(
                            "`{}` holds {} value(s) per sample, but the token dataset `{}` has \
                             {} token position(s)",
                            src.display(),
                            file.sample_len(),
                            project.dataset.path.display(),
                            t.positions()
                        ),
                    });
                }
            }
            attributions.push(file);
        }
        let mut analyses = Vec::new();
        for spec in &project.analyses {
            let mut files = Vec::new();
            let mut categories: Vec<(String, usize)> = Vec::new();
            for (f, src) in spec.sources.iter().enumerate() {
                let file = AnalysisFile::open(confined(src)?)?;
                for name in file.listed_categories()? {
                    if !categories.iter().any(|(c, _)| *c == name) {
                        categories.push((name, f));
                    }
                }
                files.push(file);
            }
            // Natural order (digit-2 before digit-10), whatever order the files store.
            categories.sort_by(|a, b| crate::natural::cmp(&a.0, &b.0));
            analyses.push(Analysis {
                method: spec.method.clone(),
                files,
                categories,
                meta: Mutex::new(HashMap::new()),
            });
        }
        let mut concepts = Vec::new();
        let mut concept_layers = Vec::new();
        let sources = project
            .concepts
            .as_ref()
            .map_or(&[][..], |c| &c.sources[..]);
        for (f, src) in sources.iter().enumerate() {
            let file = ConceptsFile::open(confined(src)?)?;
            if let Some(&last) = file.index().last() {
                if last as usize >= dataset.len() {
                    return Err(ViewerError::Project {
                        path: yaml.to_path_buf(),
                        message: format!(
                            "`{}` explains dataset sample {last}, but the dataset `{}` has {} \
                             samples; was it computed on this dataset?",
                            src.display(),
                            project.dataset.path.display(),
                            dataset.len()
                        ),
                    });
                }
            }
            concept_layers.extend((0..file.layers().len()).map(|l| (f, l)));
            concepts.push(file);
        }
        Ok(LoadedProject {
            yaml: yaml.to_path_buf(),
            dir,
            project,
            label_map,
            dataset,
            attributions,
            lookup,
            analyses,
            concepts,
            concept_layers,
        })
    }

    /// Number of concept layers (over all concepts files).
    pub fn concept_layer_count(&self) -> usize {
        self.concept_layers.len()
    }

    /// Concept layer `number` (over all concepts files, in order).
    pub fn concept_layer(&self, number: usize) -> Option<ConceptLayerRef<'_>> {
        let &(f, layer) = self.concept_layers.get(number)?;
        let file = self.concepts.get(f)?;
        Some(ConceptLayerRef {
            number,
            file_number: f,
            file,
            layer,
            info: file.layers().get(layer)?,
        })
    }

    /// Where the attribution of dataset sample `index` is stored.
    pub fn attribution_row(&self, index: u32) -> Option<AttributionRow> {
        self.lookup.get(&index).copied()
    }

    /// The model's outputs for an attribution row (all classes).
    pub fn prediction(&self, at: AttributionRow) -> Result<Vec<f32>, ViewerError> {
        let Some(file) = self.attributions.get(at.file) else {
            return Ok(Vec::new());
        };
        Ok(file.read_prediction_rows(at.row, at.row + 1)?)
    }

    /// The labels stored with an attribution row (the class(es) it explains).
    pub fn attribution_labels(&self, at: AttributionRow) -> Vec<u32> {
        match self.attributions[at.file].labels() {
            prism_store::Labels::Single(v) => v.get(at.row).map(|&c| vec![c]).unwrap_or_default(),
            prism_store::Labels::MultiHot { n_classes, bits } => bits
                .chunks(*n_classes)
                .nth(at.row)
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .filter(|(_, &b)| b)
                        .map(|(c, _)| c as u32)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The label-map entry of a class number.
    pub fn label(&self, class: u32) -> Option<&LabelEntry> {
        self.label_map.iter().find(|e| e.index == class)
    }

    /// ViRelAy's human-readable name of a category: the label-map name of a WordNet id or of a
    /// class number written as `{:08}`, else the name itself.
    pub fn category_display_name(&self, category: &str) -> String {
        if let Some(e) = self.label_map.iter().find(|e| e.word_net_id == category) {
            return e.name.clone();
        }
        if let Some(e) = category.parse::<u32>().ok().and_then(|c| self.label(c)) {
            return e.name.clone();
        }
        category.to_string()
    }

    /// The analysis with this method name.
    pub fn analysis(&self, method: &str) -> Option<&Analysis> {
        self.analyses.iter().find(|a| a.method == method)
    }
}

impl Analysis {
    fn reader(&self, category: &str) -> Option<CategoryReader> {
        let (_, f) = self.categories.iter().find(|(c, _)| c == category)?;
        self.files.get(*f)?.category_reader(category)
    }

    /// Whether the analysis has this category.
    pub fn has_category(&self, category: &str) -> bool {
        self.categories.iter().any(|(c, _)| c == category)
    }

    /// Names, dimensions and eigenvalues of a category's embeddings and clusterings (cached).
    pub fn category_meta(&self, category: &str) -> Result<Option<Arc<CategoryMeta>>, ViewerError> {
        if let Some(m) = self
            .meta
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(category)
        {
            return Ok(Some(m.clone()));
        }
        let Some(reader) = self.reader(category) else {
            return Ok(None);
        };
        let embeddings = reader
            .embeddings()?
            .into_iter()
            .map(|e| (e.name, e.dim, e.eigenvalue))
            .collect();
        // Family, then k: kmeans-02 before kmeans-10 (files store them in any order).
        let mut clusterings = reader.clusterings()?;
        crate::natural::sort(&mut clusterings);
        let meta = Arc::new(CategoryMeta {
            name: category.to_string(),
            n: reader.len()?,
            embeddings,
            clusterings,
            eigengap_suggested_k: reader.int_attr("eigengap_suggested_k")?,
        });
        self.meta
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(category.to_string(), meta.clone());
        Ok(Some(meta))
    }

    /// The sample numbers of a category's members.
    pub fn index(&self, category: &str) -> Result<Option<Vec<u32>>, ViewerError> {
        let Some(reader) = self.reader(category) else {
            return Ok(None);
        };
        Ok(Some(
            reader
                .index()?
                .into_iter()
                .map(|x| x.clamp(0, u32::MAX as i64) as u32)
                .collect(),
        ))
    }

    /// Two columns of an embedding, interleaved `x0 y0 x1 y1 …`; `None` if it does not exist.
    pub fn embedding_xy(
        &self,
        category: &str,
        embedding: &str,
        dims: (usize, usize),
    ) -> Result<Option<Vec<f32>>, ViewerError> {
        let Some(reader) = self.reader(category) else {
            return Ok(None);
        };
        Ok(reader.embedding_columns(embedding, dims)?)
    }

    /// All columns of an embedding (row-major n × d), for ViRelAy's JSON route.
    pub fn embedding_full(
        &self,
        category: &str,
        embedding: &str,
    ) -> Result<Option<(usize, Vec<f32>)>, ViewerError> {
        let Some(reader) = self.reader(category) else {
            return Ok(None);
        };
        Ok(reader.embedding(embedding)?)
    }

    /// A clustering's labels (−1 = noise); `None` if it does not exist.
    pub fn clustering(
        &self,
        category: &str,
        clustering: &str,
    ) -> Result<Option<Vec<i32>>, ViewerError> {
        let Some(reader) = self.reader(category) else {
            return Ok(None);
        };
        Ok(reader.clustering(clustering)?.map(|v| {
            v.into_iter()
                .map(|x| x.clamp(-1, i32::MAX as i64) as i32)
                .collect()
        }))
    }
}
