// The dashboard page: candles from WS /ws/stream, EMA/RSI/StochRSI computed in the browser by the WASM module
// (/static/wasm/indicators.js; the server's /api/indicators/compute when WebAssembly is unavailable), signal
// markers, and a report of what is shown (see the comment in index.html).

import { drawOscillator, drawPrice } from '/static/chart.js';

const MAX_BARS = 5000;
const EMA_PERIOD = 12;
const RSI_PERIOD = 14;
const STOCH = [14, 14, 3, 3];
const PING_MS = 25000;

const root = document.documentElement;
const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);

const state = {
  symbol: null,
  timeframe: query.get('timeframe') || '1m',
  bars: [],
  signals: new Map(),
  values: { ema: new Float64Array(0), rsi: new Float64Array(0), k: new Float64Array(0), d: new Float64Array(0) },
  path: null,
  status: 'loading',
  updates: 0,
  drawn: { first: 0, count: 0 },
  generation: 0,
  attempts: 0,
  error: null,
};
let indicators = null;

function setStatus(status, text) {
  state.status = status;
  root.dataset.status = status;
  $('status').textContent = text || status;
}

function showError(message) {
  state.error = message;
  const box = $('error');
  box.textContent = message || '';
  box.hidden = !message;
}

function upsert(bar) {
  const bars = state.bars;
  const t = bar.start_us;
  if (!bars.length || bars[bars.length - 1].start_us < t) {
    bars.push(bar);
  } else {
    let lo = 0;
    let hi = bars.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (bars[mid].start_us < t) lo = mid + 1; else hi = mid;
    }
    if (lo < bars.length && bars[lo].start_us === t) bars[lo] = bar; else bars.splice(lo, 0, bar);
  }
  if (bars.length > MAX_BARS) bars.splice(0, bars.length - MAX_BARS);
}

function addSignal(signal) {
  if (signal && signal.symbol === state.symbol) state.signals.set(signal.signal_id, signal);
}

// ---- indicators: recomputed over every bar held, at most one computation at a time ------------------------

let computing = null;
let dirty = false;

function refresh() {
  dirty = true;
  if (!computing) computing = compute().finally(() => { computing = null; });
}

async function compute() {
  while (dirty) {
    dirty = false;
    const close = Float64Array.from(state.bars, (b) => b.close);
    try {
      if (!close.length) throw new RangeError('no bars yet');
      const [ema, rsi, stoch] = await Promise.all([
        indicators.ema(close, EMA_PERIOD),
        indicators.rsi(close, RSI_PERIOD),
        indicators.stochrsi(close, ...STOCH),
      ]);
      state.values = { ema, rsi, k: stoch.k, d: stoch.d };
      state.path = [ema.path, rsi.path, stoch.path].includes('server') ? 'server' : 'wasm';
      if (state.status === 'live') showError(null);
    } catch (err) {
      const n = close.length;
      state.values = { ema: new Float64Array(n).fill(NaN), rsi: new Float64Array(n).fill(NaN),
                       k: new Float64Array(n).fill(NaN), d: new Float64Array(n).fill(NaN) };
      if (n) showError(`indicators: ${err.message}`);
    }
    state.updates += 1;
    draw();
  }
}

// ---- drawing and the page report ---------------------------------------------------------------------------

function fmt(v, digits = 2) {
  return Number.isFinite(v) ? v.toFixed(digits) : '—';
}

function draw() {
  const { bars, values } = state;
  const signals = [...state.signals.values()];
  state.drawn = drawPrice($('price'), bars, values.ema, signals);
  drawOscillator($('osc'), values.rsi, values.k, values.d);
  const n = bars.length;
  const last = bars[n - 1];
  $('last-close').textContent = last ? `${state.symbol} ${last.close}` : state.symbol || '—';
  $('last-ema').textContent = fmt(values.ema[n - 1]);
  $('last-rsi').textContent = fmt(values.rsi[n - 1]);
  $('last-k').textContent = fmt(values.k[n - 1]);
  $('last-d').textContent = fmt(values.d[n - 1]);
  const newest = signals.sort((a, b) => a.start_us - b.start_us)[signals.length - 1];
  const sig = $('last-signal');
  sig.className = `signal ${newest ? newest.action : ''}`;
  sig.textContent = newest ? `${newest.action} @ ${newest.price} (score ${fmt(newest.score, 3)})` : 'no signal yet';
  $('path').textContent = `indicators: ${state.path || '…'}`;
  Object.assign(root.dataset, {
    symbol: state.symbol || '',
    timeframe: state.timeframe,
    bars: String(n),
    updates: String(state.updates),
    indicatorPath: state.path || '',
    lastStartUs: last ? String(last.start_us) : '',
    signals: String(state.signals.size),
  });
}

// ---- the stream ---------------------------------------------------------------------------------------------

function handle(msg) {
  if (msg.type === 'snapshot') {
    const entry = msg.symbols[state.symbol] || { bars: [] };
    entry.bars.forEach(upsert);
    addSignal(entry.signal);
    state.attempts = 0;
    setStatus('live', `live · ${entry.source || 'no bars yet'}`);
    showError(entry.error || null);
  } else if (msg.type === 'bar') {
    if (msg.bar.symbol !== state.symbol || msg.bar.timeframe !== state.timeframe) return;
    upsert(msg.bar);
  } else if (msg.type === 'signal') {
    addSignal(msg.signal);
  } else if (msg.type === 'error') {
    setStatus('error');
    showError(msg.error);
    return;
  } else {
    return;
  }
  refresh();
}

function connect() {
  const generation = ++state.generation;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const url = `${scheme}://${location.host}/ws/stream?symbols=${encodeURIComponent(state.symbol)}`
    + `&timeframe=${encodeURIComponent(state.timeframe)}`;
  setStatus(state.attempts ? 'reconnecting' : 'connecting');
  const ws = new WebSocket(url);
  const ping = setInterval(() => { if (ws.readyState === 1) ws.send('{"type":"ping"}'); }, PING_MS);
  ws.onmessage = (event) => { if (generation === state.generation) handle(JSON.parse(event.data)); };
  ws.onclose = (event) => {
    clearInterval(ping);
    if (generation !== state.generation) return;
    if (event.code === 1008) { setStatus('error'); return; }
    state.attempts += 1;
    setStatus('reconnecting', `reconnecting (${state.attempts})`);
    setTimeout(() => { if (generation === state.generation) connect(); }, Math.min(10000, 500 * 2 ** state.attempts));
  };
  state.close = () => ws.close();
}

function choose(symbol, timeframe) {
  if (state.close) { state.generation += 1; state.close(); }
  Object.assign(state, { symbol, timeframe, bars: [], signals: new Map(), attempts: 0 });
  const q = new URLSearchParams(location.search);
  q.set('symbol', symbol);
  q.set('timeframe', timeframe);
  history.replaceState(null, '', `?${q}`);
  showError(null);
  refresh();
  connect();
}

function fill(select, options, chosen) {
  select.replaceChildren(...options.map((o) => new Option(o, o, false, o === chosen)));
}

async function main() {
  if (query.get('wasm') === 'off') delete globalThis.WebAssembly;
  const mod = await import('/static/wasm/indicators.js');
  indicators = await mod.load();
  state.path = indicators.path;
  let listed = { symbols: [], timeframes: [state.timeframe] };
  try {
    const resp = await fetch('/api/symbols');
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.error || `HTTP ${resp.status}`);
    listed = body;
  } catch (err) {
    showError(`GET /api/symbols failed: ${err.message}`);
  }
  const symbol = query.get('symbol') || listed.symbols[0];
  if (!symbol) {
    setStatus('error', 'no symbols');
    showError('no symbol has data yet: start the pipeline (stockpulse demo) or pass ?symbol=...');
    return;
  }
  const symbols = listed.symbols.includes(symbol) ? listed.symbols : [symbol, ...listed.symbols];
  fill($('symbol'), symbols, symbol);
  fill($('timeframe'), listed.timeframes, state.timeframe);
  $('symbol').onchange = (e) => choose(e.target.value, state.timeframe);
  $('timeframe').onchange = (e) => choose(state.symbol, e.target.value);
  new ResizeObserver(() => draw()).observe($('price'));
  choose(symbol, state.timeframe);
}

const list = (a) => Array.from(a, (v) => (Number.isFinite(v) ? v : null));

/** What the page shows, for tests and for the console. */
window.stockpulseDashboard = {
  snapshot() {
    const { bars, values } = state;
    return {
      symbol: state.symbol, timeframe: state.timeframe, status: state.status, path: state.path,
      updates: state.updates, error: state.error, drawn: state.drawn, count: bars.length,
      start_us: bars.map((b) => b.start_us), close: bars.map((b) => b.close),
      ema: list(values.ema), rsi: list(values.rsi), k: list(values.k), d: list(values.d),
      signals: [...state.signals.values()],
      legend: ['last-ema', 'last-rsi', 'last-k', 'last-d'].map((id) => $(id).textContent),
    };
  },
  /** Pixels of the price canvas in the candle and EMA colours (a drawn chart has many). */
  paintedPixels() {
    const c = $('price');
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const near = (i, r, g, b) => Math.abs(px[i] - r) + Math.abs(px[i + 1] - g) + Math.abs(px[i + 2] - b) < 30;
    const out = { up: 0, down: 0, ema: 0 };
    for (let i = 0; i < px.length; i += 4) {
      if (near(i, 38, 166, 154)) out.up += 1;
      else if (near(i, 239, 83, 80)) out.down += 1;
      else if (near(i, 255, 179, 0)) out.ema += 1;
    }
    return out;
  },
};

main().catch((err) => {
  setStatus('error');
  showError(`dashboard failed to start: ${err.message}`);
});
