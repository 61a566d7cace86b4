// @ts-check
// The eigenvalue bar chart with the eigengap marked.

/**
 * The number of clusters the eigengap suggests: eigenvalues sorted ascending λ₁ ≤ λ₂ ≤ …, the k
 * with the largest gap λ_{k+1} − λ_k (k ≥ 1, within the first half of the spectrum).
 * @param {number[]} ascending
 */
export function eigengapK(ascending) {
  let best = 1, gap = -Infinity;
  const limit = Math.max(2, Math.ceil(ascending.length / 2));
  for (let k = 1; k < Math.min(ascending.length, limit + 1); k++) {
    const g = ascending[k] - ascending[k - 1];
    if (g > gap) { gap = g; best = k; }
  }
  return best;
}

/**
 * Draws eigenvalues (as stored: descending, ViRelAy's order) ascending as bars, with a dashed
 * line after bar k where the eigengap lies.
 * @param {HTMLCanvasElement} canvas
 * @param {number[] | null} eigenvalues
 * @param {number | null} suggestedK Prism's stored suggestion, if any
 */
export function drawEigenvalues(canvas, eigenvalues, suggestedK) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 240, h = canvas.clientHeight || 150;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const style = getComputedStyle(canvas);
  const fg = style.color || '#333';
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = fg;
  if (!eigenvalues || !eigenvalues.length) {
    ctx.fillText('no eigenvalues for this embedding', 8, h / 2);
    canvas.dataset.k = '';
    return null;
  }
  const asc = [...eigenvalues].sort((a, b) => a - b);
  const k = suggestedK && suggestedK >= 1 && suggestedK < asc.length ? suggestedK : eigengapK(asc);
  canvas.dataset.k = String(k);
  const pad = { l: 30, r: 6, t: 16, b: 18 };
  const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
  const max = Math.max(...asc, 1e-12), min = Math.min(0, ...asc);
  const y = (v) => pad.t + ph - ((v - min) / (max - min)) * ph;
  const bw = pw / asc.length;
  for (let i = 0; i < asc.length; i++) {
    ctx.fillStyle = i < k ? '#7a5cff' : '#9aa3b5';
    const top = y(asc[i]);
    ctx.fillRect(pad.l + i * bw + 1, top, Math.max(1, bw - 2), y(min) - top);
  }
  // Eigengap marker.
  const gx = pad.l + k * bw;
  ctx.strokeStyle = '#e0457b';
  ctx.setLineDash([4, 3]);
  ctx.beginPath();
  ctx.moveTo(gx, pad.t - 4);
  ctx.lineTo(gx, pad.t + ph);
  ctx.stroke();
  ctx.setLineDash([]);
  ctx.fillStyle = '#e0457b';
  ctx.fillText(`eigengap: k = ${k}`, Math.min(gx + 4, w - 80), pad.t - 4);
  // Axes.
  ctx.fillStyle = fg;
  ctx.fillText(max.toFixed(2), 0, pad.t + 8);
  ctx.fillText(min.toFixed(2), 0, pad.t + ph);
  ctx.fillText('λ (ascending) →', pad.l, h - 4);
  return k;
}
