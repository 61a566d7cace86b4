// @ts-check
// Prism viewer: pickers, the scatter plot, clusters, eigenvalues, the sample panel, the concept
// panel, and import/export/share of the view. State lives here; the server is stateless and
// read-only.

import { Scatter, clusterColor } from './scatter.js';
import { drawEigenvalues } from './plots.js';

const $ = (id) => /** @type {any} */ (document.getElementById(id));

const state = {
  project: 0,
  analysis: '',
  category: '',
  clustering: '',
  embedding: '',
  dimX: 0,
  dimY: 1,
  colorMap: 'bwr',
  mode: 'overlay',
  sampling: 'auto',
};

/** Data of the shown category. */
const data = {
  projects: /** @type {any[]} */ ([]),
  projectInfo: /** @type {any} */ (null),
  colorMaps: /** @type {any[]} */ ([]),
  meta: /** @type {any} */ (null),
  index: new Uint32Array(0), // sample number of each point
  clusters: new Int32Array(0),
  selection: new Uint8Array(0),
  selectedRows: /** @type {number[]} */ ([]),
  sampleInfo: new Map(), // `${project}/${index}` → attribution JSON
};

let scatter = /** @type {Scatter} */ (/** @type {unknown} */ (null));
let loading = Promise.resolve();

// ------------------------------------------------------------------ fetching

async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).errorMessage || msg; } catch (_) { /* not JSON */ }
    throw new Error(`${url}: ${msg}`);
  }
  return r.json();
}

async function getBinary(url, Kind) {
  const r = await fetch(url);
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).errorMessage || msg; } catch (_) { /* not JSON */ }
    throw new Error(`${url}: ${msg}`);
  }
  return new Kind(await r.arrayBuffer());
}

const q = encodeURIComponent;
const api = () => `/api/projects/${state.project}`;
const analysisApi = () => `${api()}/analyses/${q(state.analysis)}`;

/** Whether the shown project's dataset is a token dataset (samples are text, not pictures). */
const isTokens = () => data.projectInfo?.datasetKind === 'tokens';

/** The tokens of a sample coloured by relevance: an HTML page (no scripts), shown in a frame. */
function tokensUrl(index, cmap = state.colorMap) {
  return `${api()}/attributions/${index}/tokens?colorMap=${q(cmap)}`;
}

/** A sandboxed frame (no scripts, an opaque origin) showing the tokens of a sample. */
function tokensFrame(index) {
  const f = document.createElement('iframe');
  f.className = 'tokens';
  f.title = `tokens of sample ${index}`;
  f.setAttribute('sandbox', '');
  f.setAttribute('referrerpolicy', 'no-referrer');
  f.src = tokensUrl(index);
  return f;
}

function imageUrl(index, mode = state.mode, cmap = state.colorMap) {
  return mode === 'input'
    ? `${api()}/attributions/${index}/image?mode=input`
    : `${api()}/attributions/${index}/image?mode=${mode}&colorMap=${q(cmap)}`;
}

function showMessage(text) {
  const m = $('message');
  m.textContent = text || '';
  m.hidden = !text;
}

// ------------------------------------------------------------------ pickers

function fillSelect(sel, items, value) {
  sel.replaceChildren(...items.map(([v, label]) => {
    const o = document.createElement('option');
    o.value = String(v);
    o.textContent = label;
    return o;
  }));
  if (value !== undefined && items.some(([v]) => String(v) === String(value))) sel.value = String(value);
}

function renderProjectTabs() {
  $('projects').replaceChildren(...data.projects.map((p) => {
    const b = document.createElement('button');
    b.textContent = p.name;
    b.title = `${p.model} on ${p.dataset}`;
    b.className = p.id === state.project ? 'active' : '';
    b.addEventListener('click', () => run(() => selectProject(p.id, {})));
    return b;
  }));
}

function currentMethod() {
  return data.projectInfo?.analysisMethods.find((m) => m.name === state.analysis);
}

function filterCategories() {
  const m = currentMethod();
  const text = $('categorySearch').value.trim().toLowerCase();
  const cats = (m?.categories || []).filter((c) => !text || c.humanReadableName.toLowerCase().includes(text) || c.name.toLowerCase().includes(text));
  fillSelect($('category'), cats.map((c) => [c.name, `${c.humanReadableName} (${c.name})`]), state.category);
  return cats;
}

/** Loads project `id`; `want` holds state to restore (from a share link or an import). */
async function selectProject(id, want) {
  state.project = id;
  data.projectInfo = await getJSON(api());
  data.sampleInfo.clear();
  renderProjectTabs();
  const p = data.projectInfo;
  // Token projects: text instead of pictures, so neither image mode nor sampling applies.
  $('imageMode').hidden = isTokens();
  $('sampling').hidden = isTokens();
  $('sampleSpacer').replaceChildren();
  $('sampleSpacer').classList.toggle('token-samples', isTokens());
  await loadConceptLayers();
  $('footer').textContent = `Project: ${p.name} · Dataset: ${p.dataset} (${p.datasetSize} samples) · Model: ${p.model} · Attribution: ${p.attributionMethod} (${p.attributionStrategy})`;
  const methods = p.analysisMethods;
  if (!methods.length) { showMessage('This project has no analyses.'); return; }
  state.analysis = methods.some((m) => m.name === want.analysis) ? want.analysis : methods[0].name;
  fillSelect($('analysis'), methods.map((m) => [m.name, m.name]), state.analysis);
  await selectAnalysis(want);
}

async function selectAnalysis(want) {
  const m = currentMethod();
  const cats = m.categories;
  if (!cats.length) { showMessage('This analysis has no categories.'); return; }
  state.category = cats.some((c) => c.name === want.category) ? want.category : cats[0].name;
  $('categorySearch').value = '';
  filterCategories();
  await selectCategory(want);
}

async function selectCategory(want) {
  showMessage('loading…');
  const meta = await getJSON(`${analysisApi()}/category?category=${q(state.category)}`);
  data.meta = meta;
  const embs = meta.embeddings;
  if (!embs.length) { showMessage('This category has no embedding.'); return; }
  // Defaults as ViRelAy intends: t-SNE if present; the clustering with k = 10, else the first.
  const emb = embs.find((e) => e.name === want.embedding) || embs.find((e) => e.name === 'tsne') || embs[0];
  state.embedding = emb.name;
  const cl = meta.clusterings;
  state.clustering = cl.includes(want.clustering) ? want.clustering : cl.find((c) => /(^|-)0*10$/.test(c)) || cl[0] || '';
  fillSelect($('embedding'), embs.map((e) => [e.name, `${e.name} (${e.dimensions}-D)`]), state.embedding);
  fillSelect($('clustering'), cl.map((c) => [c, c]), state.clustering);
  setDims(emb, want);
  const [index, clusters] = await Promise.all([
    getBinary(`${analysisApi()}/index.u32?category=${q(state.category)}`, Uint32Array),
    loadClusters(meta.size),
  ]);
  data.index = index;
  data.clusters = clusters;
  await loadEmbedding(false);
  drawEigen();
  renderLegend();
  applySelection(want.selection ? want.selection(index) : new Uint8Array(index.length), 'replace');
  showMessage('');
}

function setDims(emb, want) {
  const d = emb.dimensions;
  const dims = [...Array(d).keys()].map((i) => [i, String(i)]);
  state.dimX = want.dimX !== undefined && want.dimX < d ? want.dimX : 0;
  state.dimY = want.dimY !== undefined && want.dimY < d ? want.dimY : Math.min(1, d - 1);
  fillSelect($('dimX'), dims, state.dimX);
  fillSelect($('dimY'), dims, state.dimY);
  $('dims').hidden = d <= 2;
}

async function loadClusters(n) {
  if (!state.clustering) return new Int32Array(n);
  return getBinary(`${analysisApi()}/clustering.i32?category=${q(state.category)}&clustering=${q(state.clustering)}`, Int32Array);
}

async function loadEmbedding(keepView) {
  const xy = await getBinary(`${analysisApi()}/embedding.f32?category=${q(state.category)}&embedding=${q(state.embedding)}&dims=${state.dimX},${state.dimY}`, Float32Array);
  scatter.setData(xy, data.clusters, keepView);
  updateStatus();
}

function drawEigen() {
  const emb = data.meta?.embeddings.find((e) => e.name === state.embedding);
  // The eigenvalues belong to the spectral embedding; show them for any embedding of the category.
  const eig = emb?.eigenvalues || data.meta?.embeddings.find((e) => e.eigenvalues)?.eigenvalues || null;
  drawEigenvalues($('eigen'), eig, data.meta?.eigengapSuggestedK ?? null);
}

// ------------------------------------------------------------------ clusters and selection

function clusterSizes() {
  const sizes = new Map();
  for (const c of data.clusters) sizes.set(c, (sizes.get(c) || 0) + 1);
  return [...sizes.entries()].sort((a, b) => a[0] - b[0]);
}

function renderLegend() {
  const sizes = clusterSizes();
  const n = scatter.nClusters;
  $('legend').replaceChildren(...sizes.map(([c, size]) => {
    const li = document.createElement('li');
    li.dataset.cluster = String(c);
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = `rgb(${clusterColor(c, n).join(',')})`;
    const name = document.createElement('span');
    name.textContent = c < 0 ? 'Noise' : `Cluster ${c}`;
    const count = document.createElement('span');
    count.className = 'count';
    count.textContent = String(size);
    li.append(sw, name, count);
    li.addEventListener('click', (e) => {
      const mask = new Uint8Array(data.clusters.length);
      for (let i = 0; i < mask.length; i++) mask[i] = data.clusters[i] === c ? 1 : 0;
      applySelection(mask, e.shiftKey ? 'add' : e.altKey || e.ctrlKey || e.metaKey ? 'remove' : 'replace');
    });
    return li;
  }));
}

/** Combines `mask` with the selection ('replace', 'add', 'remove'). */
function applySelection(mask, op) {
  const sel = op === 'replace' || data.selection.length !== mask.length ? new Uint8Array(mask.length) : data.selection;
  for (let i = 0; i < mask.length; i++) {
    if (op === 'remove') { if (mask[i]) sel[i] = 0; } else if (mask[i]) sel[i] = 1;
  }
  data.selection = sel;
  const rows = [];
  for (let i = 0; i < sel.length; i++) if (sel[i]) rows.push(i);
  data.selectedRows = rows;
  scatter.setSelection(sel);
  markSelectedClusters();
  $('selCount').textContent = String(rows.length);
  updateStatus();
  renderSamples(true);
  selectionChangedForConcepts();
}

/** Marks the legend entries of clusters that are selected whole. */
function markSelectedClusters() {
  const all = new Map(), picked = new Map();
  for (let i = 0; i < data.clusters.length; i++) {
    const c = data.clusters[i];
    all.set(c, (all.get(c) || 0) + 1);
    if (data.selection[i]) picked.set(c, (picked.get(c) || 0) + 1);
  }
  for (const li of $('legend').children) {
    const c = Number(li.dataset.cluster);
    li.classList.toggle('selected', (picked.get(c) || 0) > 0 && picked.get(c) === all.get(c));
  }
}

function updateStatus() {
  const ft = scatter.frameTimes;
  const last = ft.length ? ft[ft.length - 1].toFixed(1) : '–';
  $('status').textContent = `${scatter.n.toLocaleString()} points · ${data.selectedRows.length.toLocaleString()} selected · draw ${last} ms`;
}

// ------------------------------------------------------------------ sample panel (virtualised)

const CELL_W = 140, CELL_H = 190;
/** Token projects: one sample per row, as wide as the panel. */
const TOKEN_CELL_H = 150;
const cellWidth = (box) => (isTokens() ? Math.max(CELL_W, box.clientWidth - 2) : CELL_W);
const cellHeight = () => (isTokens() ? TOKEN_CELL_H : CELL_H);
let fetchQueue = new Set();
let fetchTimer = 0;

function pixelated(img) {
  if (state.sampling === 'pixelated') return true;
  if (state.sampling === 'smooth') return false;
  const w = data.projectInfo?.width || 0, h = data.projectInfo?.height || 0;
  return Math.min(w, h) > 0 && Math.min(w, h) <= 150;
}

function renderSamples(reset = false) {
  const box = $('sampleScroll'), spacer = $('sampleSpacer');
  const cellW = cellWidth(box), cellH = cellHeight();
  const cols = Math.max(1, Math.floor(box.clientWidth / cellW));
  const rows = Math.ceil(data.selectedRows.length / cols);
  spacer.style.height = `${rows * cellH}px`;
  if (reset) { box.scrollTop = 0; spacer.replaceChildren(); }
  const first = Math.max(0, Math.floor(box.scrollTop / cellH) - 1);
  const last = Math.min(rows, Math.ceil((box.scrollTop + box.clientHeight) / cellH) + 1);
  const want = new Set();
  for (let r = first; r < last; r++) {
    for (let c = 0; c < cols; c++) {
      const k = r * cols + c;
      if (k < data.selectedRows.length) want.add(k);
    }
  }
  for (const el of [...spacer.children]) {
    const k = Number(el.dataset.k);
    if (!want.has(k) || el.dataset.row !== String(data.selectedRows[k]) || el.dataset.cols !== String(cols) || el.dataset.w !== String(cellW)) el.remove();
    else want.delete(k);
  }
  for (const k of want) spacer.append(sampleCell(k, cols, cellW, cellH));
  scheduleInfoFetch();
}

function sampleCell(k, cols, cellW, cellH) {
  const row = data.selectedRows[k];
  const index = data.index[row];
  const el = document.createElement('div');
  el.className = 'sample';
  el.dataset.k = String(k);
  el.dataset.row = String(row);
  el.dataset.cols = String(cols);
  el.dataset.w = String(cellW);
  el.dataset.index = String(index);
  el.style.left = `${(k % cols) * cellW}px`;
  el.style.top = `${Math.floor(k / cols) * cellH}px`;
  if (concepts.layers.length) {
    el.classList.toggle('focused', concepts.focus === index);
    el.title = 'click: this sample\'s concepts';
    el.addEventListener('click', () => focusSample(concepts.focus === index ? null : index));
  }
  let img;
  if (isTokens()) {
    el.style.width = `${cellW}px`;
    img = tokensFrame(index);
  } else {
    img = document.createElement('img');
    img.alt = `sample ${index}`;
    img.src = imageUrl(index);
    img.className = pixelated(img) ? 'pixelated' : '';
  }
  const cap = document.createElement('div');
  cap.className = 'caption';
  const c = data.clusters[row];
  // Built as elements: the Content-Security-Policy allows no inline style attribute.
  const dot = document.createElement('span');
  dot.className = 'dot';
  dot.style.background = `rgb(${clusterColor(c, scatter.nClusters).join(',')})`;
  cap.append(dot, `#${index} · ${c < 0 ? 'noise' : `cluster ${c}`}`);
  const lab = document.createElement('div');
  lab.className = 'caption labels';
  lab.textContent = '…';
  const pred = document.createElement('div');
  pred.className = 'caption pred';
  el.append(img, cap, lab, pred);
  fillInfo(el);
  return el;
}

function fillInfo(el) {
  const info = data.sampleInfo.get(`${state.project}/${el.dataset.index}`);
  const lab = el.querySelector('.labels');
  if (!info) { fetchQueue.add(Number(el.dataset.index)); return; }
  const labels = info.labels.map((l) => l.name).join(', ');
  const top = info.topPredictions[0];
  const right = top && info.labels.some((l) => l.index === top.index);
  lab.innerHTML = '';
  lab.title = `label: ${labels}\npredicted: ${info.topPredictions.map((p) => `${p.name} ${p.score.toFixed(2)}`).join(', ')}`;
  lab.textContent = `label: ${labels}`;
  const pred = el.querySelector('.pred');
  pred.className = `caption pred${right ? '' : ' wrong'}`;
  pred.textContent = top ? `pred: ${top.name} (${top.score.toFixed(2)})` : 'pred: –';
}

function scheduleInfoFetch() {
  clearTimeout(fetchTimer);
  fetchTimer = setTimeout(async () => {
    const todo = [...fetchQueue].filter((i) => !data.sampleInfo.has(`${state.project}/${i}`)).slice(0, 200);
    fetchQueue = new Set();
    if (!todo.length) return;
    const project = state.project;
    try {
      const list = await getJSON(`/api/projects/${project}/attributions?indices=${todo.join(',')}&imageMode=${state.mode}&colorMap=${q(state.colorMap)}`);
      for (const info of list) data.sampleInfo.set(`${project}/${info.index}`, info);
    } catch (e) {
      console.warn(e);
    }
    for (const el of $('sampleSpacer').children) fillInfo(el);
  }, 30);
}

function refreshImages() {
  for (const el of $('sampleSpacer').children) {
    const frame = el.querySelector('iframe.tokens');
    if (frame) { frame.src = tokensUrl(Number(el.dataset.index)); continue; }
    const img = el.querySelector('img');
    if (!img) continue;
    img.src = imageUrl(Number(el.dataset.index));
    img.className = pixelated(img) ? 'pixelated' : '';
  }
  const p = $('colorMapPreview');
  p.src = `/api/color-maps/${q(state.colorMap)}?width=160&height=12`;
  for (const img of document.querySelectorAll('#conceptList img.chm')) {
    const el = /** @type {HTMLImageElement} */ (img);
    el.src = conceptHeatmapUrl(Number(el.dataset.sample), Number(el.dataset.channel));
  }
}

// ------------------------------------------------------------------ concept panel

/** The concept panel's state: the project's concept layers, the shown layer, the reference
 * kind, the sample whose concepts are shown (a click on a sample; else the selection's), and
 * the concept whose references are shown whole. */
const concepts = {
  layers: /** @type {any[]} */ ([]),
  layer: 0,
  mode: 'relmax',
  focus: /** @type {number|null} */ (null),
  detail: /** @type {number|null} */ (null),
  generation: 0,
  timer: 0,
  refs: new Map(), // `${project}/${layer}/${channel}/${mode}` → references JSON
  /** Resolves when the panel shows what the state asks for (tests wait on it). */
  ready: Promise.resolve(),
  settle: () => {},
};
/** Concepts listed per sample or selection, and reference crops shown per concept. */
const CONCEPT_COUNT = 8, STRIP_REFS = 5;
/** Most samples of a selection the concepts route takes (the server's limit). */
const MAX_CONCEPT_SAMPLES = 1000;
const conceptApi = () => `${api()}/concepts/${concepts.layer}`;

async function loadConceptLayers() {
  concepts.refs.clear();
  concepts.focus = null;
  concepts.detail = null;
  concepts.layers = data.projectInfo?.conceptLayers ? (await getJSON(`${api()}/concepts`)).layers : [];
  const has = concepts.layers.length > 0;
  $('conceptPanel').hidden = !has;
  $('focusHint').hidden = !has;
  const main = /** @type {HTMLElement} */ (document.querySelector('main'));
  if (main.classList.contains('with-concepts') !== has) {
    main.classList.toggle('with-concepts', has);
    // The plot's width changed: size the canvas now (its observer reports it only later), so
    // the coming fit uses the new size.
    scatter.resize();
  }
  if (!has) return;
  if (!concepts.layers.some((l) => l.index === concepts.layer)) concepts.layer = concepts.layers[0].index;
  fillSelect($('conceptLayer'), concepts.layers.map((l) => [l.index, `${l.node} (${l.channels})`]), concepts.layer);
  scheduleConcepts();
}

function focusSample(index) {
  concepts.focus = index;
  concepts.detail = null;
  for (const el of $('sampleSpacer').children) el.classList.toggle('focused', index !== null && Number(el.dataset.index) === index);
  scheduleConcepts();
}

function selectionChangedForConcepts() {
  if (!concepts.layers.length) return;
  if (concepts.focus !== null && !data.selectedRows.some((r) => data.index[r] === concepts.focus)) concepts.focus = null;
  concepts.detail = null;
  scheduleConcepts();
}

/** The one cluster the selection is exactly, or null. */
function selectedCluster() {
  const rows = data.selectedRows;
  if (!rows.length) return null;
  const c = data.clusters[rows[0]];
  let size = 0;
  for (const x of data.clusters) if (x === c) size++;
  return size === rows.length && rows.every((r) => data.clusters[r] === c) ? c : null;
}

function scheduleConcepts() {
  if (!concepts.layers.length) return;
  clearTimeout(concepts.timer);
  concepts.settle(); // the previous wait ends: its work is superseded
  const gen = ++concepts.generation;
  concepts.ready = new Promise((resolve) => {
    concepts.settle = resolve;
    concepts.timer = setTimeout(() => renderConcepts(gen).catch((e) => {
      if (gen === concepts.generation) $('conceptSubject').textContent = String(e.message || e);
    }).finally(resolve), 80);
  });
}

function conceptHeatmapUrl(sample, channel) {
  const mode = state.mode === 'overlay' ? 'overlay' : 'attribution';
  return `${conceptApi()}/samples/${sample}/heatmaps/${channel}/image?colorMap=${q(state.colorMap)}&mode=${mode}`;
}

function referenceUrl(channel, ref, frame) {
  const f = ref.box ? frame : 'whole';
  return `${conceptApi()}/channels/${channel}/references/${ref.rank}/image?mode=${concepts.mode}&frame=${f}`;
}

async function references(channel) {
  const key = `${state.project}/${concepts.layer}/${channel}/${concepts.mode}`;
  if (!concepts.refs.has(key)) concepts.refs.set(key, await getJSON(`${conceptApi()}/channels/${channel}?mode=${concepts.mode}`));
  return concepts.refs.get(key);
}

/** Crops are small: drawn pixelated unless the sampling control says smooth. */
const pixelatedCrops = () => state.sampling !== 'smooth';

function refImage(channel, ref, frame) {
  const img = document.createElement('img');
  img.className = `ref${pixelatedCrops() ? ' pixelated' : ''}`;
  img.alt = `reference ${ref.rank} of concept ${channel}`;
  img.title = `sample #${ref.sample} · score ${ref.score.toFixed(3)}${ref.box ? '' : ' · no crop box'}`;
  img.src = referenceUrl(channel, ref, frame);
  return img;
}

function percent(x) {
  return `${(100 * x).toFixed(1)}%`;
}

async function renderConcepts(gen) {
  const stale = () => gen !== concepts.generation;
  const list = $('conceptList'), subject = $('conceptSubject');
  $('conceptDetail').hidden = concepts.detail === null;
  list.hidden = concepts.detail !== null;
  if (concepts.detail !== null) { await renderConceptDetail(gen); return; }
  let answer, sample = null;
  if (concepts.focus !== null) {
    sample = concepts.focus;
    answer = await getJSON(`${conceptApi()}/samples/${sample}?count=${CONCEPT_COUNT}`);
    if (stale()) return;
    subject.textContent = `Sample #${sample} · explains ${answer.target?.name ?? '–'} · share of Σ|R| at the layer`;
  } else if (data.selectedRows.length) {
    const cluster = selectedCluster();
    if (cluster !== null) {
      answer = await getJSON(`${conceptApi()}/cluster?analysis=${q(state.analysis)}&category=${q(state.category)}&clustering=${q(state.clustering)}&cluster=${cluster}&count=${CONCEPT_COUNT}`);
    } else if (data.selectedRows.length <= MAX_CONCEPT_SAMPLES) {
      answer = await getJSON(`${conceptApi()}/selection?samples=${data.selectedRows.map((r) => data.index[r]).join(',')}&count=${CONCEPT_COUNT}`);
    } else {
      subject.textContent = `Select at most ${MAX_CONCEPT_SAMPLES} samples or one whole cluster (or click a sample) to see their concepts.`;
      list.replaceChildren();
      return;
    }
    if (stale()) return;
    const what = cluster !== null ? `cluster ${cluster < 0 ? 'noise' : cluster}` : 'the selection';
    const missing = answer.missing ? ` (${answer.missing} not in the concepts run)` : '';
    subject.textContent = `${what}: ${answer.samples} samples${missing} · mean share of Σ|R|`;
  } else {
    subject.textContent = 'Select samples, or click one, to see their most relevant concepts.';
    list.replaceChildren();
    return;
  }
  const items = answer.concepts.map((c) => {
    const li = document.createElement('li');
    li.dataset.channel = String(c.channel);
    const head = document.createElement('div');
    head.className = 'concept-head';
    head.title = `concept ${c.channel}: relevance ${c.relevance.toFixed(4)}, share ${percent(c.share)}; click: all its references`;
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = `ch ${c.channel}`;
    const bar = document.createElement('span');
    bar.className = 'bar';
    const fill = document.createElement('span');
    fill.className = `fill${c.share < 0 ? ' negative' : ''}`;
    fill.style.width = `${Math.min(100, Math.abs(c.share) * 100)}%`;
    bar.append(fill);
    const value = document.createElement('span');
    value.className = 'value';
    value.textContent = percent(c.share);
    head.append(name, bar, value);
    head.addEventListener('click', () => { concepts.detail = c.channel; scheduleConcepts(); });
    const strip = document.createElement('div');
    strip.className = 'concept-strip';
    if (sample !== null && c.heatmap) {
      const hm = document.createElement('img');
      hm.className = 'chm';
      hm.dataset.sample = String(sample);
      hm.dataset.channel = String(c.channel);
      hm.alt = `conditional heatmap of concept ${c.channel} in sample ${sample}`;
      hm.title = `sample #${sample} conditioned on concept ${c.channel}`;
      hm.src = conceptHeatmapUrl(sample, c.channel);
      strip.append(hm);
    }
    li.append(head, strip);
    return li;
  });
  list.replaceChildren(...items);
  // Reference crops, one request per concept (cached).
  await Promise.all(answer.concepts.map(async (c, k) => {
    const refs = await references(c.channel);
    if (stale()) return;
    items[k].querySelector('.concept-strip').append(...refs.references.slice(0, STRIP_REFS).map((r) => refImage(c.channel, r, 'crop')));
  }));
}

async function renderConceptDetail(gen) {
  const channel = /** @type {number} */ (concepts.detail);
  const refs = await references(channel);
  if (gen !== concepts.generation) return;
  const layer = concepts.layers.find((l) => l.index === concepts.layer);
  $('conceptDetailTitle').textContent = `concept ${channel} of ${layer?.node ?? concepts.layer}: ${refs.references.length} ${concepts.mode === 'relmax' ? 'RelMax' : 'ActMax'} references`;
  const frame = $('conceptBoxes').checked ? 'box' : 'crop';
  $('conceptRefs').replaceChildren(...refs.references.map((r) => {
    const fig = document.createElement('figure');
    const cap = document.createElement('figcaption');
    cap.textContent = `#${r.sample} · ${r.score.toFixed(3)}`;
    fig.append(refImage(channel, r, frame), cap);
    return fig;
  }));
}

// ------------------------------------------------------------------ hover preview

let hoverTimer = 0;
function onHover(i, x, y) {
  const box = $('hover');
  clearTimeout(hoverTimer);
  if (i < 0) { box.hidden = true; return; }
  hoverTimer = setTimeout(async () => {
    const index = data.index[i];
    const c = data.clusters[i];
    box.innerHTML = '';
    box.classList.toggle('token-hover', isTokens());
    let img;
    if (isTokens()) {
      img = tokensFrame(index);
    } else {
      img = document.createElement('img');
      img.src = imageUrl(index);
      if (pixelated(img)) img.className = 'pixelated';
      img.style.imageRendering = pixelated(img) ? 'pixelated' : 'auto';
    }
    const cap = document.createElement('div');
    cap.textContent = `#${index} · ${c < 0 ? 'noise' : `cluster ${c}`}`;
    box.append(img, cap);
    const w = box.parentElement.clientWidth;
    box.style.left = `${Math.min(x + 14, w - (isTokens() ? 380 : 150))}px`;
    box.style.top = `${Math.max(4, y - 70)}px`;
    box.hidden = false;
    const key = `${state.project}/${index}`;
    if (!data.sampleInfo.has(key)) {
      try { data.sampleInfo.set(key, await getJSON(`${api()}/attributions/${index}`)); } catch (_) { return; }
    }
    const info = data.sampleInfo.get(key);
    cap.textContent += ` · ${info.labels.map((l) => l.name).join(', ')} → ${info.topPredictions[0]?.name ?? '–'}`;
  }, 60);
}

// ------------------------------------------------------------------ share, export, import

/** Selected rows as ranges `a-b.c.d-e`, or a deflated bitset `z…` if that is shorter. */
async function encodeSelection() {
  const rows = data.selectedRows;
  if (!rows.length) return '';
  const parts = [];
  for (let k = 0; k < rows.length;) {
    let j = k;
    while (j + 1 < rows.length && rows[j + 1] === rows[j] + 1) j++;
    parts.push(j > k ? `${rows[k]}-${rows[j]}` : `${rows[k]}`);
    k = j + 1;
  }
  const ranges = parts.join('.');
  if (ranges.length < 200 || typeof CompressionStream === 'undefined') return ranges;
  const bits = new Uint8Array(Math.ceil(data.selection.length / 8));
  for (const r of rows) bits[r >> 3] |= 1 << (r & 7);
  const stream = new Blob([bits]).stream().pipeThrough(new CompressionStream('deflate-raw'));
  const packed = new Uint8Array(await new Response(stream).arrayBuffer());
  let bin = '';
  for (const b of packed) bin += String.fromCharCode(b);
  const z = 'z' + btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return z.length < ranges.length ? z : ranges;
}

async function decodeSelection(text, n) {
  const mask = new Uint8Array(n);
  if (!text) return mask;
  if (text[0] === 'z') {
    const b64 = text.slice(1).replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(b64 + '==='.slice((b64.length + 3) % 4));
    const packed = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
    const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
    const bits = new Uint8Array(await new Response(stream).arrayBuffer());
    for (let i = 0; i < n; i++) mask[i] = (bits[i >> 3] >> (i & 7)) & 1;
    return mask;
  }
  for (const part of text.split('.')) {
    const [a, b] = part.split('-').map(Number);
    for (let i = a; i <= (Number.isFinite(b) ? b : a) && i < n; i++) if (i >= 0) mask[i] = 1;
  }
  return mask;
}

/** Mask from sample numbers (ViRelAy's `embeddingVectors`, exported files). */
function maskFromIndices(indices, index) {
  const want = new Set(indices.map(Number));
  const mask = new Uint8Array(index.length);
  for (let i = 0; i < index.length; i++) if (want.has(index[i])) mask[i] = 1;
  return mask;
}

async function shareLink() {
  const p = new URLSearchParams({
    project: String(state.project), analysis: state.analysis, category: state.category, clustering: state.clustering,
    embedding: state.embedding, x: String(state.dimX), y: String(state.dimY), colorMap: state.colorMap, mode: state.mode,
    sampling: state.sampling,
  });
  const sel = await encodeSelection();
  if (sel) p.set('sel', sel);
  return `${location.origin}/#${p.toString()}`;
}

async function wantFromHash() {
  const h = new URLSearchParams(location.hash.replace(/^#/, '') || location.search.replace(/^\?/, ''));
  const num = (k) => (h.has(k) ? Number(h.get(k)) : undefined);
  const sel = h.get('sel');
  const vectors = h.get('embeddingVectors'); // ViRelAy's share links
  return {
    project: num('project'),
    analysis: h.get('analysis') ?? h.get('analysisMethod') ?? undefined,
    category: h.get('category') ?? h.get('analysisCategory') ?? undefined,
    clustering: h.get('clustering') ?? undefined,
    embedding: h.get('embedding') ?? undefined,
    dimX: num('x') ?? num('firstEmbeddingDimension'),
    dimY: num('y') ?? num('secondEmbeddingDimension'),
    colorMap: h.get('colorMap') ?? undefined,
    mode: h.get('mode') ?? h.get('imageMode') ?? undefined,
    sampling: h.get('sampling') ?? undefined,
    cluster: num('cluster'),
    selectionText: sel,
    selection: sel ? null : vectors ? (index) => maskFromIndices(vectors.split(','), index) : null,
  };
}

function exportSelection() {
  const rows = data.selectedRows;
  const p = data.projects.find((x) => x.id === state.project) || {};
  const human = currentMethod()?.categories.find((c) => c.name === state.category)?.humanReadableName;
  const doc = {
    projectId: state.project, projectName: p.name, modelName: p.model, datasetName: p.dataset,
    selectedAnalysisMethod: state.analysis, selectedAnalysisCategory: state.category,
    selectedCategoryHumanReadableName: human, selectedEmbeddingName: state.embedding,
    selectedClustering: state.clustering, numberOfClusters: scatter.nClusters,
    selectedColorMap: state.colorMap, selectedImageMode: state.mode,
    firstEmbeddingDimension: state.dimX, secondEmbeddingDimension: state.dimY,
    selectedEmbeddingVectorsIndices: rows.map((r) => data.index[r]),
    selectedEmbeddingVectorsClusters: rows.map((r) => data.clusters[r]),
    allEmbeddingVectorsIndices: Array.from(data.index),
    allEmbeddingVectorsClusters: Array.from(data.clusters),
  };
  const d = new Date();
  const pad = (v) => String(v).padStart(2, '0');
  const name = `prism-selection-${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}.json`;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([JSON.stringify(doc)], { type: 'application/json' }));
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  return doc;
}

async function importSelection(doc) {
  const project = data.projects.find((p) => p.id === doc.projectId && p.name === doc.projectName)
    || data.projects.find((p) => p.name === doc.projectName) || data.projects.find((p) => p.id === doc.projectId);
  if (!project) throw new Error(`the imported selection belongs to an unknown project (${doc.projectName})`);
  if (doc.selectedColorMap) state.colorMap = doc.selectedColorMap;
  if (doc.selectedImageMode) state.mode = doc.selectedImageMode;
  syncControls();
  await selectProject(project.id, {
    analysis: doc.selectedAnalysisMethod, category: doc.selectedAnalysisCategory, clustering: doc.selectedClustering,
    embedding: doc.selectedEmbeddingName, dimX: doc.firstEmbeddingDimension, dimY: doc.secondEmbeddingDimension,
    selection: (index) => maskFromIndices(doc.selectedEmbeddingVectorsIndices || [], index),
  });
  refreshImages();
}

function syncControls() {
  if (!data.colorMaps.some((m) => m.name === state.colorMap)) state.colorMap = 'bwr';
  $('colorMap').value = state.colorMap;
  if (!['input', 'overlay', 'attribution'].includes(state.mode)) state.mode = 'overlay';
  if (!['auto', 'smooth', 'pixelated'].includes(state.sampling)) state.sampling = 'auto';
  for (const r of document.querySelectorAll('input[name=mode]')) /** @type {HTMLInputElement} */ (r).checked = /** @type {HTMLInputElement} */ (r).value === state.mode;
  for (const r of document.querySelectorAll('input[name=sampling]')) /** @type {HTMLInputElement} */ (r).checked = /** @type {HTMLInputElement} */ (r).value === state.sampling;
}

// ------------------------------------------------------------------ wiring

/** Runs UI work one step at a time and reports failures in the plot area. */
function run(fn) {
  loading = loading.then(fn).catch((e) => { console.error(e); showMessage(String(e.message || e)); });
  window.prism.ready = loading;
  return loading;
}

function setTool(tool) {
  scatter.tool = tool;
  for (const b of document.querySelectorAll('[data-tool]')) b.classList.toggle('active', /** @type {HTMLElement} */ (b).dataset.tool === tool);
}

async function main() {
  forgetToken();
  scatter = new Scatter($('gl'), $('shapes'));
  scatter.onSelect = (mask, op) => applySelection(mask, op);
  scatter.onHover = onHover;
  scatter.onView = () => updateStatus();
  const box = $('sampleScroll');
  box.addEventListener('scroll', () => requestAnimationFrame(() => renderSamples()));
  new ResizeObserver(() => renderSamples()).observe(box);

  $('analysis').addEventListener('change', (e) => run(() => { state.analysis = e.target.value; return selectAnalysis({}); }));
  $('categorySearch').addEventListener('input', () => {
    const cats = filterCategories();
    if (cats.length && !cats.some((c) => c.name === state.category)) run(() => { state.category = cats[0].name; $('category').value = state.category; return selectCategory(keepChoices()); });
  });
  $('category').addEventListener('change', (e) => run(() => { state.category = e.target.value; return selectCategory(keepChoices()); }));
  $('clustering').addEventListener('change', (e) => run(async () => {
    state.clustering = e.target.value;
    data.clusters = await loadClusters(data.index.length);
    scatter.setClusters(data.clusters);
    renderLegend();
    renderSamples(true);
  }));
  $('embedding').addEventListener('change', (e) => run(async () => {
    state.embedding = e.target.value;
    setDims(data.meta.embeddings.find((x) => x.name === state.embedding), {});
    await loadEmbedding(false);
    drawEigen();
  }));
  for (const id of ['dimX', 'dimY']) {
    $(id).addEventListener('change', () => run(async () => {
      state.dimX = Number($('dimX').value);
      state.dimY = Number($('dimY').value);
      await loadEmbedding(false);
    }));
  }
  $('colorMap').addEventListener('change', (e) => { state.colorMap = e.target.value; refreshImages(); });
  for (const r of document.querySelectorAll('input[name=mode]')) r.addEventListener('change', (e) => { state.mode = /** @type {any} */ (e.target).value; refreshImages(); });
  for (const r of document.querySelectorAll('input[name=sampling]')) r.addEventListener('change', (e) => { state.sampling = /** @type {any} */ (e.target).value; refreshImages(); });
  for (const b of document.querySelectorAll('[data-tool]')) b.addEventListener('click', () => setTool(/** @type {HTMLElement} */ (b).dataset.tool));
  $('fitButton').addEventListener('click', () => scatter.fit());
  $('clearButton').addEventListener('click', () => applySelection(new Uint8Array(data.index.length), 'replace'));
  $('exportButton').addEventListener('click', () => exportSelection());
  $('importButton').addEventListener('click', () => $('importFile').click());
  $('importFile').addEventListener('change', async (e) => {
    const f = e.target.files[0];
    if (!f) return;
    e.target.value = '';
    run(async () => importSelection(JSON.parse(await f.text())));
  });
  $('shareButton').addEventListener('click', async () => {
    $('shareLink').value = await shareLink();
    $('shareDialog').showModal();
    $('shareLink').select();
  });
  $('copyLink').addEventListener('click', () => navigator.clipboard?.writeText($('shareLink').value));
  window.addEventListener('hashchange', () => run(restoreFromHash));
  $('conceptLayer').addEventListener('change', (e) => { concepts.layer = Number(e.target.value); concepts.detail = null; scheduleConcepts(); });
  for (const r of document.querySelectorAll('input[name=refMode]')) r.addEventListener('change', (e) => { concepts.mode = /** @type {any} */ (e.target).value; scheduleConcepts(); });
  $('conceptBack').addEventListener('click', () => { concepts.detail = null; scheduleConcepts(); });
  $('conceptBoxes').addEventListener('change', () => scheduleConcepts());

  data.colorMaps = await getJSON('/api/color-maps');
  fillSelect($('colorMap'), data.colorMaps.map((m) => [m.name, m.name]), state.colorMap);
  data.projects = await getJSON('/api/projects');
  if (!data.projects.length) { showMessage('No projects.'); return; }
  await run(restoreFromHash);
}

/** The current choices, to keep them across a category change where they exist. */
function keepChoices() {
  return { clustering: state.clustering, embedding: state.embedding, dimX: state.dimX, dimY: state.dimY };
}

async function restoreFromHash() {
  const want = await wantFromHash();
  if (want.colorMap) state.colorMap = want.colorMap;
  if (want.mode) state.mode = want.mode === 'superimposed' ? 'overlay' : want.mode;
  if (want.sampling) state.sampling = want.sampling;
  syncControls();
  const id = want.project !== undefined && data.projects.some((p) => p.id === want.project) ? want.project : data.projects[0].id;
  if (want.selectionText) {
    // The selection is decoded once the category's size is known.
    await selectProject(id, { ...want, selection: null });
    applySelection(await decodeSelection(want.selectionText, data.index.length), 'replace');
  } else if (want.cluster !== undefined) {
    // `cluster=N`: the points of cluster N of the shown clustering (as stored; -1 noise).
    await selectProject(id, { ...want, selection: null });
    const c = want.cluster;
    if (!data.clusters.includes(c)) throw new Error(`clustering ${state.clustering} of ${state.category} has no cluster ${c}`);
    applySelection(Uint8Array.from(data.clusters, (x) => (x === c ? 1 : 0)), 'replace');
  } else {
    await selectProject(id, want);
  }
  refreshImages();
}

/** Takes a `token` query parameter out of the address bar (the server has set its cookie), so
 * that bookmarks, screenshots and share links do not carry it. */
function forgetToken() {
  const u = new URL(location.href);
  if (!u.searchParams.has('token')) return;
  u.searchParams.delete('token');
  history.replaceState(null, '', u.pathname + (u.searchParams.toString() ? `?${u.searchParams}` : '') + u.hash);
}

window.prism = {
  state, data, ready: loading,
  get scatter() { return scatter; },
  shareLink, exportSelection, importSelection, applySelection, encodeSelection, decodeSelection, isTokens,
  concepts, focusSample,
  selectedIndices: () => data.selectedRows.map((r) => data.index[r]),
};
main().catch((e) => { console.error(e); showMessage(String(e.message || e)); });
