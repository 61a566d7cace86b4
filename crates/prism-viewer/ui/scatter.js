// @ts-check
// A WebGL scatter plot for up to millions of points: one draw call, positions and colours in
// GPU buffers, the view (pan/zoom) as a uniform, so panning costs one redraw and no uploads.
// Rectangle and lasso selection, hover picking through a uniform grid index.
//
// Level of detail: above LOD_MIN points the GPU buffers hold the points in a fixed random order,
// so the first m of them are a uniform sample. While the view moves, only as many are drawn as
// keep frames under ~40 ms (adapted from the measured frame interval); 250 ms after the last
// move the full set is drawn again. Without this, software WebGL needs seconds per frame for 10⁶
// points.

const LOD_MIN = 200000;

const VERT = `
attribute vec2 a_pos;
attribute vec4 a_color;
uniform vec2 u_center;
uniform vec2 u_scale;
uniform float u_size;
varying vec4 v_color;
void main() {
  gl_Position = vec4((a_pos - u_center) * u_scale, 0.0, 1.0);
  gl_PointSize = u_size;
  v_color = a_color;
}`;

const FRAG = `
precision mediump float;
varying vec4 v_color;
uniform float u_round;
void main() {
  if (u_round > 0.5) {
    vec2 d = gl_PointCoord - vec2(0.5);
    if (dot(d, d) > 0.25) discard;
  }
  gl_FragColor = vec4(v_color.rgb * v_color.a, v_color.a);
}`;

/** HSL (0..1) → RGB bytes. */
export function hsl(h, s, l) {
  const f = (n) => {
    const k = (n + h * 12) % 12;
    const a = s * Math.min(l, 1 - l);
    return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

/** Colour of cluster `c` of `n` (noise, −1, is grey), ViRelAy's hue wheel. */
export function clusterColor(c, n) {
  if (c < 0) return [150, 150, 150];
  return hsl((c % Math.max(n, 1)) / Math.max(n, 1), 0.75, 0.5);
}

export class Scatter {
  /**
   * @param {HTMLCanvasElement} canvas WebGL canvas
   * @param {HTMLCanvasElement} overlay 2-D canvas on top (selection shapes)
   */
  constructor(canvas, overlay) {
    this.canvas = canvas;
    this.overlay = overlay;
    const gl = canvas.getContext('webgl', { antialias: false, preserveDrawingBuffer: true, premultipliedAlpha: true });
    if (!gl) throw new Error('WebGL is not available in this browser');
    this.gl = gl;
    this.ctx = /** @type {CanvasRenderingContext2D} */ (overlay.getContext('2d'));
    this.program = this.#program(VERT, FRAG);
    this.posBuf = gl.createBuffer();
    this.colBuf = gl.createBuffer();
    this.n = 0;
    this.xy = new Float32Array(0);
    this.clusters = new Int32Array(0);
    this.nClusters = 1;
    this.selection = new Uint8Array(0);
    this.center = [0, 0];
    this.zoom = 1; // pixels per data unit
    this.tool = 'lasso'; // 'pan' | 'rect' | 'lasso'
    this.onSelect = (_mask, _op) => {};
    this.onHover = (_i, _x, _y) => {};
    this.onView = () => {};
    this.frameTimes = [];
    this.dirty = false;
    this.order = null; // GPU position → point, when shuffled
    this.lodCount = 0;
    this.interacting = false;
    this.idleTimer = 0;
    this.lastMoveDraw = 0;
    this.#bindEvents();
    new ResizeObserver(() => this.resize()).observe(canvas.parentElement || canvas);
    this.resize();
  }

  #program(vs, fs) {
    const gl = this.gl;
    const compile = (type, src) => {
      const s = /** @type {WebGLShader} */ (gl.createShader(type));
      gl.shaderSource(s, src);
      gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s) || 'shader');
      return s;
    };
    const p = /** @type {WebGLProgram} */ (gl.createProgram());
    gl.attachShader(p, compile(gl.VERTEX_SHADER, vs));
    gl.attachShader(p, compile(gl.FRAGMENT_SHADER, fs));
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p) || 'link');
    return p;
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const rect = this.canvas.getBoundingClientRect();
    const w = Math.max(1, Math.round(rect.width * dpr));
    const h = Math.max(1, Math.round(rect.height * dpr));
    for (const c of [this.canvas, this.overlay]) {
      if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    }
    this.cssW = rect.width || 1;
    this.cssH = rect.height || 1;
    this.requestDraw();
  }

  /**
   * @param {Float32Array} xy interleaved x, y
   * @param {Int32Array} clusters one label per point
   * @param {boolean} keepView keep the current pan/zoom
   */
  setData(xy, clusters, keepView = false) {
    const gl = this.gl;
    this.n = xy.length / 2;
    this.xy = xy;
    this.setClusters(clusters, false);
    if (this.selection.length !== this.n) this.selection = new Uint8Array(this.n);
    this.order = null;
    let gpuXY = xy;
    if (this.n > LOD_MIN) {
      // A fixed pseudo-random permutation (xorshift), so every prefix is a uniform sample.
      const order = new Uint32Array(this.n);
      for (let i = 0; i < this.n; i++) order[i] = i;
      let r = 0x9e3779b9;
      for (let i = this.n - 1; i > 0; i--) {
        r ^= r << 13; r ^= r >>> 17; r ^= r << 5;
        const j = (r >>> 0) % (i + 1);
        const t = order[i]; order[i] = order[j]; order[j] = t;
      }
      this.order = order;
      gpuXY = new Float32Array(2 * this.n);
      for (let k = 0; k < this.n; k++) { gpuXY[2 * k] = xy[2 * order[k]]; gpuXY[2 * k + 1] = xy[2 * order[k] + 1]; }
    }
    this.lodCount = Math.min(this.n, 250000);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.posBuf);
    gl.bufferData(gl.ARRAY_BUFFER, gpuXY, gl.STATIC_DRAW);
    this.#buildIndex();
    if (!keepView) this.fit();
    this.#uploadColors();
  }

  setClusters(clusters, upload = true) {
    this.clusters = clusters;
    let max = -1;
    for (let i = 0; i < clusters.length; i++) if (clusters[i] > max) max = clusters[i];
    this.nClusters = max + 1;
    if (upload) this.#uploadColors();
  }

  /** @param {Uint8Array} mask 1 = selected */
  setSelection(mask) {
    this.selection = mask;
    this.#uploadColors();
  }

  #uploadColors() {
    const n = this.n, gl = this.gl;
    const palette = [];
    for (let c = 0; c < this.nClusters; c++) palette.push(clusterColor(c, this.nClusters));
    const noise = clusterColor(-1, 1);
    let any = false;
    for (let i = 0; i < n; i++) if (this.selection[i]) { any = true; break; }
    const rgba = new Uint8Array(n * 4);
    const order = this.order;
    for (let k = 0; k < n; k++) {
      const i = order ? order[k] : k;
      const c = this.clusters[i];
      const col = c >= 0 && c < palette.length ? palette[c] : noise;
      const sel = !any || this.selection[i];
      const o = k * 4;
      if (sel) {
        rgba[o] = col[0]; rgba[o + 1] = col[1]; rgba[o + 2] = col[2]; rgba[o + 3] = 255;
      } else {
        // Unselected points fade towards grey.
        const g = (col[0] + col[1] + col[2]) / 3;
        rgba[o] = (col[0] + 2 * g) / 3; rgba[o + 1] = (col[1] + 2 * g) / 3; rgba[o + 2] = (col[2] + 2 * g) / 3; rgba[o + 3] = 70;
      }
    }
    gl.bindBuffer(gl.ARRAY_BUFFER, this.colBuf);
    gl.bufferData(gl.ARRAY_BUFFER, rgba, gl.DYNAMIC_DRAW);
    this.requestDraw();
  }

  /** Bounding box of the data: [minX, minY, maxX, maxY]. */
  bounds() {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    const xy = this.xy;
    for (let i = 0; i < xy.length; i += 2) {
      const x = xy[i], y = xy[i + 1];
      if (!(x === x && y === y)) continue; // NaN
      if (x < x0) x0 = x; if (x > x1) x1 = x;
      if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    if (!(x0 <= x1)) return [-1, -1, 1, 1];
    return [x0, y0, x1, y1];
  }

  fit() {
    const [x0, y0, x1, y1] = this.bounds();
    this.center = [(x0 + x1) / 2, (y0 + y1) / 2];
    const w = Math.max(x1 - x0, 1e-9), h = Math.max(y1 - y0, 1e-9);
    this.zoom = 0.95 * Math.min(this.cssW / w, this.cssH / h);
    this.requestDraw();
    this.onView();
  }

  /** CSS pixel position of a data point. */
  dataToScreen(x, y) {
    return [this.cssW / 2 + (x - this.center[0]) * this.zoom, this.cssH / 2 - (y - this.center[1]) * this.zoom];
  }

  screenToData(sx, sy) {
    return [this.center[0] + (sx - this.cssW / 2) / this.zoom, this.center[1] - (sy - this.cssH / 2) / this.zoom];
  }

  pointSize() {
    const dpr = window.devicePixelRatio || 1;
    const base = this.n > 300000 ? 2 : this.n > 30000 ? 3 : this.n > 3000 ? 5 : 8;
    return base * dpr;
  }

  requestDraw() {
    if (this.dirty) return;
    this.dirty = true;
    requestAnimationFrame(() => { this.dirty = false; this.draw(); });
  }

  /** Marks the view as moving: draw a sample until 250 ms after the last move. */
  markInteraction() {
    if (this.n <= LOD_MIN) return;
    this.interacting = true;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => { this.interacting = false; this.lastMoveDraw = 0; this.requestDraw(); }, 250);
  }

  /** Points drawn in this frame: all, or while moving an adaptive sample. */
  drawCount() {
    if (!this.interacting || this.n <= LOD_MIN) return this.n;
    const now = performance.now();
    if (this.lastMoveDraw) {
      const dt = now - this.lastMoveDraw;
      if (dt > 45) this.lodCount = Math.max(20000, Math.round(this.lodCount * 0.6));
      else if (dt < 25) this.lodCount = Math.min(this.n, Math.round(this.lodCount * 1.25));
    }
    this.lastMoveDraw = now;
    return this.lodCount;
  }

  draw() {
    const t0 = performance.now();
    const gl = this.gl, p = this.program;
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (this.n > 0) {
      gl.useProgram(p);
      gl.enable(gl.BLEND);
      gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
      const aPos = gl.getAttribLocation(p, 'a_pos');
      gl.bindBuffer(gl.ARRAY_BUFFER, this.posBuf);
      gl.enableVertexAttribArray(aPos);
      gl.vertexAttribPointer(aPos, 2, gl.FLOAT, false, 0, 0);
      const aCol = gl.getAttribLocation(p, 'a_color');
      gl.bindBuffer(gl.ARRAY_BUFFER, this.colBuf);
      gl.enableVertexAttribArray(aCol);
      gl.vertexAttribPointer(aCol, 4, gl.UNSIGNED_BYTE, true, 0, 0);
      gl.uniform2f(gl.getUniformLocation(p, 'u_center'), this.center[0], this.center[1]);
      gl.uniform2f(gl.getUniformLocation(p, 'u_scale'), (2 * this.zoom) / this.cssW, (2 * this.zoom) / this.cssH);
      const size = this.pointSize();
      gl.uniform1f(gl.getUniformLocation(p, 'u_size'), size);
      gl.uniform1f(gl.getUniformLocation(p, 'u_round'), size >= 4 ? 1 : 0);
      this.drawn = this.drawCount();
      gl.drawArrays(gl.POINTS, 0, this.drawn);
    }
    this.frameTimes.push(performance.now() - t0);
    if (this.frameTimes.length > 240) this.frameTimes.shift();
  }

  /** Pans by (dx, dy) CSS pixels. */
  panBy(dx, dy) {
    this.markInteraction();
    this.center = [this.center[0] - dx / this.zoom, this.center[1] + dy / this.zoom];
    this.requestDraw();
    this.onView();
  }

  /** Zooms by `factor` about the CSS point (sx, sy). */
  zoomAt(factor, sx, sy) {
    this.markInteraction();
    const [x, y] = this.screenToData(sx, sy);
    this.zoom = Math.min(Math.max(this.zoom * factor, 1e-6), 1e9);
    const [x2, y2] = this.screenToData(sx, sy);
    this.center = [this.center[0] + x - x2, this.center[1] + y - y2];
    this.requestDraw();
    this.onView();
  }

  /**
   * Pans for `frames` animation frames, drawing each, and reports frame intervals and draw
   * times in ms (a pixel read-back makes the draw time include the GPU's work).
   */
  async benchmarkPan(frames = 120, lod = true) {
    const intervals = [], draws = [], counts = [];
    let last = performance.now();
    for (let f = 0; f < frames; f++) {
      await new Promise((r) => requestAnimationFrame(r));
      const now = performance.now();
      intervals.push(now - last);
      last = now;
      const t0 = performance.now();
      this.center = [this.center[0] + Math.cos(f / 10) * 3 / this.zoom, this.center[1] + Math.sin(f / 10) * 3 / this.zoom];
      if (lod) this.markInteraction();
      else this.interacting = false;
      this.draw();
      counts.push(this.drawn);
      // Reading a pixel back waits until the GPU (or SwiftShader) has drawn the frame.
      this.gl.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, new Uint8Array(4));
      draws.push(performance.now() - t0);
    }
    const stat = (a) => {
      const s = [...a].sort((x, y) => x - y);
      return { mean: a.reduce((x, y) => x + y, 0) / a.length, p50: s[Math.floor(s.length / 2)], p95: s[Math.floor(s.length * 0.95)] };
    };
    // After the level of detail has settled: the second half of the frames.
    const half = (a) => a.slice(Math.floor(a.length / 2));
    return { points: this.n, frames, lod, pointsDrawn: stat(half(counts)), frameInterval: stat(half(intervals)), draw: stat(half(draws)) };
  }

  // ------------------------------------------------------------ picking

  #buildIndex() {
    const [x0, y0, x1, y1] = this.bounds();
    const g = Math.max(1, Math.min(1024, Math.round(Math.sqrt(this.n / 4))));
    this.grid = { g, x0, y0, sx: g / Math.max(x1 - x0, 1e-12), sy: g / Math.max(y1 - y0, 1e-12) };
    const counts = new Uint32Array(g * g + 1);
    const cell = new Uint32Array(this.n);
    for (let i = 0; i < this.n; i++) {
      const cx = Math.min(g - 1, Math.max(0, Math.floor((this.xy[2 * i] - x0) * this.grid.sx)));
      const cy = Math.min(g - 1, Math.max(0, Math.floor((this.xy[2 * i + 1] - y0) * this.grid.sy)));
      cell[i] = cy * g + cx;
      counts[cell[i] + 1]++;
    }
    for (let c = 0; c < g * g; c++) counts[c + 1] += counts[c];
    const order = new Uint32Array(this.n);
    const fill = counts.slice(0, g * g);
    for (let i = 0; i < this.n; i++) order[fill[cell[i]]++] = i;
    this.gridStart = counts;
    this.gridOrder = order;
  }

  /** The point nearest to CSS position (sx, sy) within `radius` pixels, or −1. */
  pick(sx, sy, radius = 8) {
    if (!this.n || !this.grid) return -1;
    const [x, y] = this.screenToData(sx, sy);
    const r = radius / this.zoom;
    const { g, x0, y0 } = this.grid;
    const cx0 = Math.max(0, Math.floor((x - r - x0) * this.grid.sx)), cx1 = Math.min(g - 1, Math.floor((x + r - x0) * this.grid.sx));
    const cy0 = Math.max(0, Math.floor((y - r - y0) * this.grid.sy)), cy1 = Math.min(g - 1, Math.floor((y + r - y0) * this.grid.sy));
    let best = -1, bestD = r * r;
    if ((cx1 - cx0 + 1) * (cy1 - cy0 + 1) > 4096) return -1; // zoomed far out: too coarse to hover
    for (let cy = cy0; cy <= cy1; cy++) {
      for (let cx = cx0; cx <= cx1; cx++) {
        const c = cy * g + cx;
        for (let k = this.gridStart[c]; k < this.gridStart[c + 1]; k++) {
          const i = this.gridOrder[k];
          const dx = this.xy[2 * i] - x, dy = this.xy[2 * i + 1] - y;
          const d = dx * dx + dy * dy;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  /** Mask of the points inside a polygon given in CSS pixels. */
  selectPolygon(poly) {
    const mask = new Uint8Array(this.n);
    if (poly.length < 3) return mask;
    const pts = poly.map(([sx, sy]) => this.screenToData(sx, sy));
    let bx0 = Infinity, by0 = Infinity, bx1 = -Infinity, by1 = -Infinity;
    for (const [x, y] of pts) { bx0 = Math.min(bx0, x); bx1 = Math.max(bx1, x); by0 = Math.min(by0, y); by1 = Math.max(by1, y); }
    const m = pts.length;
    const px = new Float64Array(m), py = new Float64Array(m);
    pts.forEach(([x, y], k) => { px[k] = x; py[k] = y; });
    for (let i = 0; i < this.n; i++) {
      const x = this.xy[2 * i], y = this.xy[2 * i + 1];
      if (x < bx0 || x > bx1 || y < by0 || y > by1) continue;
      let inside = false;
      for (let a = 0, b = m - 1; a < m; b = a++) {
        if ((py[a] > y) !== (py[b] > y) && x < ((px[b] - px[a]) * (y - py[a])) / (py[b] - py[a]) + px[a]) inside = !inside;
      }
      if (inside) mask[i] = 1;
    }
    return mask;
  }

  selectRect(sx0, sy0, sx1, sy1) {
    const [x0, y0] = this.screenToData(Math.min(sx0, sx1), Math.max(sy0, sy1));
    const [x1, y1] = this.screenToData(Math.max(sx0, sx1), Math.min(sy0, sy1));
    const mask = new Uint8Array(this.n);
    for (let i = 0; i < this.n; i++) {
      const x = this.xy[2 * i], y = this.xy[2 * i + 1];
      if (x >= x0 && x <= x1 && y >= y0 && y <= y1) mask[i] = 1;
    }
    return mask;
  }

  // ------------------------------------------------------------ events

  #bindEvents() {
    const el = this.overlay;
    let drag = null;
    const pos = (e) => {
      const r = el.getBoundingClientRect();
      return [e.clientX - r.left, e.clientY - r.top];
    };
    const op = (e) => (e.shiftKey ? 'add' : e.altKey || e.ctrlKey || e.metaKey ? 'remove' : 'replace');
    el.addEventListener('contextmenu', (e) => e.preventDefault());
    el.addEventListener('pointerdown', (e) => {
      el.setPointerCapture(e.pointerId);
      const [x, y] = pos(e);
      const pan = this.tool === 'pan' || e.button === 1 || e.button === 2;
      drag = { kind: pan ? 'pan' : this.tool, start: [x, y], last: [x, y], path: [[x, y]], op: op(e), moved: false };
      this.onHover(-1, 0, 0);
    });
    el.addEventListener('pointermove', (e) => {
      const [x, y] = pos(e);
      if (!drag) {
        if (this.hoverPending) return;
        this.hoverPending = true;
        requestAnimationFrame(() => {
          this.hoverPending = false;
          this.onHover(this.pick(x, y), x, y);
        });
        return;
      }
      if (Math.abs(x - drag.start[0]) + Math.abs(y - drag.start[1]) > 3) drag.moved = true;
      if (drag.kind === 'pan') {
        this.panBy(x - drag.last[0], y - drag.last[1]);
      } else if (drag.kind === 'lasso') {
        const [lx, ly] = drag.path[drag.path.length - 1];
        if (Math.hypot(x - lx, y - ly) >= 2) drag.path.push([x, y]);
        this.#drawShape(drag);
      } else {
        drag.path = [drag.start, [x, y]];
        this.#drawShape(drag);
      }
      drag.last = [x, y];
    });
    const end = (e) => {
      if (!drag) return;
      const d = drag;
      drag = null;
      this.ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
      if (d.kind === 'pan' || !d.moved) {
        if (!d.moved && d.kind !== 'pan' && d.op === 'replace') this.onSelect(new Uint8Array(this.n), 'replace');
        return;
      }
      const [x, y] = pos(e);
      const mask = d.kind === 'lasso' ? this.selectPolygon([...d.path, [x, y]]) : this.selectRect(d.start[0], d.start[1], x, y);
      this.onSelect(mask, d.op);
    };
    el.addEventListener('pointerup', end);
    el.addEventListener('pointercancel', () => { drag = null; this.ctx.clearRect(0, 0, this.overlay.width, this.overlay.height); });
    el.addEventListener('pointerleave', () => { if (!drag) this.onHover(-1, 0, 0); });
    el.addEventListener('wheel', (e) => {
      e.preventDefault();
      const [x, y] = pos(e);
      this.zoomAt(Math.exp(-e.deltaY * 0.0015), x, y);
    }, { passive: false });
  }

  #drawShape(d) {
    const ctx = this.ctx, dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.cssW, this.cssH);
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = d.op === 'remove' ? '#d33' : '#2a6';
    ctx.fillStyle = d.op === 'remove' ? 'rgba(220,50,50,0.08)' : 'rgba(40,160,100,0.08)';
    ctx.setLineDash([5, 4]);
    ctx.beginPath();
    if (d.kind === 'lasso') {
      d.path.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath();
    } else {
      const [[x0, y0], [x1, y1]] = d.path;
      ctx.rect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    }
    ctx.fill();
    ctx.stroke();
  }
}
