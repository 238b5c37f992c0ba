// Canvas 2D drawing of the dashboard: candles with the EMA and signal markers, and the RSI/StochRSI panel.
//
//   drawPrice(canvas, bars, ema, signals)   bars oldest first ({start_us, open, high, low, close}), ema a
//                                           Float64Array aligned with bars, signals [{start_us, action}]
//   drawOscillator(canvas, rsi, k, d)       arrays aligned with the same bars, values in [0, 100] or NaN
//
// Both draw the newest bars that fit the width (at least MIN_STEP css pixels per bar) and scale to the
// device pixel ratio. They return what they drew ({first, count}) so the page can report it.

const MIN_STEP = 4;
const AXIS_W = 72;
const AXIS_H = 18;
const COLORS = {
  grid: '#1e293b', text: '#94a3b8', up: '#26a69a', down: '#ef5350', ema: '#ffb300',
  rsi: '#b388ff', k: '#4fc3f7', d: '#ff8a65', band: '#334155',
};

function setup(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const rect = canvas.getBoundingClientRect();
  const w = Math.max(1, rect.width);
  const h = Math.max(1, rect.height);
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
}

/** The visible window: the newest bars that fit, and the x of bar i (its center). */
function window_(n, plotW) {
  const count = Math.max(0, Math.min(n, Math.floor(plotW / MIN_STEP)));
  const step = count ? plotW / count : plotW;
  const first = n - count;
  return { first, count, step, x: (i) => (i - first + 0.5) * step };
}

function niceTicks(lo, hi, target) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) ticks.push(v);
  return ticks;
}

function fmtPrice(v) {
  const a = Math.abs(v);
  return v.toFixed(a >= 1000 ? 1 : a >= 10 ? 2 : a >= 1 ? 4 : 6);
}

function fmtTime(us) {
  const t = new Date(us / 1000);
  return `${String(t.getUTCHours()).padStart(2, '0')}:${String(t.getUTCMinutes()).padStart(2, '0')}`;
}

function line(ctx, values, win, y, color, width = 1.5) {
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.beginPath();
  let pen = false;
  for (let i = win.first; i < win.first + win.count; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) { pen = false; continue; }
    if (pen) ctx.lineTo(win.x(i), y(v)); else ctx.moveTo(win.x(i), y(v));
    pen = true;
  }
  ctx.stroke();
}

function timeAxis(ctx, bars, win, plotH, w) {
  ctx.fillStyle = COLORS.text;
  ctx.font = '11px system-ui, sans-serif';
  ctx.textAlign = 'center';
  const every = Math.max(1, Math.ceil(90 / win.step));
  for (let i = win.first; i < win.first + win.count; i += every) {
    const x = win.x(i);
    if (x > w - AXIS_W - 20) break;
    if (x < 20) continue;
    ctx.fillText(fmtTime(bars[i].start_us), x, plotH + 13);
  }
}

export function drawPrice(canvas, bars, ema, signals) {
  const { ctx, w, h } = setup(canvas);
  const plotW = w - AXIS_W;
  const plotH = h - AXIS_H;
  const win = window_(bars.length, plotW);
  if (!win.count) return { first: 0, count: 0 };
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = win.first; i < bars.length; i++) {
    lo = Math.min(lo, bars[i].low, Number.isFinite(ema[i]) ? ema[i] : Infinity);
    hi = Math.max(hi, bars[i].high, Number.isFinite(ema[i]) ? ema[i] : -Infinity);
  }
  const pad = (hi - lo || Math.abs(hi) * 0.001 || 1) * 0.08;
  lo -= pad;
  hi += pad;
  const y = (v) => plotH - ((v - lo) / (hi - lo)) * plotH;

  ctx.strokeStyle = COLORS.grid;
  ctx.fillStyle = COLORS.text;
  ctx.font = '11px system-ui, sans-serif';
  ctx.textAlign = 'left';
  ctx.lineWidth = 1;
  for (const v of niceTicks(lo, hi, 6)) {
    ctx.beginPath();
    ctx.moveTo(0, Math.round(y(v)) + 0.5);
    ctx.lineTo(plotW, Math.round(y(v)) + 0.5);
    ctx.stroke();
    ctx.fillText(fmtPrice(v), plotW + 6, y(v) + 4);
  }
  timeAxis(ctx, bars, win, plotH, w);

  const body = Math.max(1, Math.min(win.step * 0.7, 14));
  for (let i = win.first; i < bars.length; i++) {
    const b = bars[i];
    const x = win.x(i);
    const color = b.close >= b.open ? COLORS.up : COLORS.down;
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.beginPath();
    ctx.moveTo(Math.round(x) + 0.5, y(b.high));
    ctx.lineTo(Math.round(x) + 0.5, y(b.low));
    ctx.stroke();
    const top = y(Math.max(b.open, b.close));
    ctx.fillRect(x - body / 2, top, body, Math.max(1, y(Math.min(b.open, b.close)) - top));
  }
  line(ctx, ema, win, y, COLORS.ema, 1.6);

  const index = new Map();
  for (let i = win.first; i < bars.length; i++) index.set(bars[i].start_us, i);
  for (const s of signals) {
    const i = index.get(s.start_us);
    if (i === undefined || (s.action !== 'BUY' && s.action !== 'SELL')) continue;
    const buy = s.action === 'BUY';
    const x = win.x(i);
    const tip = buy ? y(bars[i].low) + 6 : y(bars[i].high) - 6;
    const base = buy ? tip + 10 : tip - 10;
    ctx.fillStyle = buy ? COLORS.up : COLORS.down;
    ctx.beginPath();
    ctx.moveTo(x, tip);
    ctx.lineTo(x - 6, base);
    ctx.lineTo(x + 6, base);
    ctx.closePath();
    ctx.fill();
  }
  const last = bars[bars.length - 1];
  ctx.fillStyle = last.close >= last.open ? COLORS.up : COLORS.down;
  ctx.fillRect(plotW + 1, y(last.close) - 8, AXIS_W - 2, 16);
  ctx.fillStyle = '#0f172a';
  ctx.textAlign = 'left';
  ctx.fillText(fmtPrice(last.close), plotW + 6, y(last.close) + 4);
  return { first: win.first, count: win.count };
}

export function drawOscillator(canvas, rsi, k, d) {
  const { ctx, w, h } = setup(canvas);
  const plotW = w - AXIS_W;
  const plotH = h - 4;
  const win = window_(rsi.length, plotW);
  const y = (v) => 2 + plotH - (v / 100) * plotH;
  ctx.fillStyle = COLORS.text;
  ctx.font = '11px system-ui, sans-serif';
  for (const v of [20, 30, 50, 70, 80]) {
    ctx.strokeStyle = v === 50 ? COLORS.grid : COLORS.band;
    ctx.setLineDash(v === 50 ? [] : [4, 4]);
    ctx.beginPath();
    ctx.moveTo(0, Math.round(y(v)) + 0.5);
    ctx.lineTo(plotW, Math.round(y(v)) + 0.5);
    ctx.stroke();
    ctx.fillText(String(v), plotW + 6, y(v) + 4);
  }
  ctx.setLineDash([]);
  if (!win.count) return { first: 0, count: 0 };
  line(ctx, rsi, win, y, COLORS.rsi, 1.5);
  line(ctx, k, win, y, COLORS.k, 1.2);
  line(ctx, d, win, y, COLORS.d, 1.2);
  return { first: win.first, count: win.count };
}
