// StockPulse indicators in the browser: wasm/indicators.wasm with a server fallback.
//
//   import { load, lastPath } from './indicators.js';
//   const ind = await load();                        // or load(wasmUrl, { fallbackBase: 'https://api.example' })
//   const e = await ind.ema(closes, 12);             // Float64Array, e.path === 'wasm' or 'server'
//   const { k, d } = await ind.stochrsi(closes, 14, 14, 3, 3);
//   const { macd, signal, hist } = await ind.macd(closes, 12, 26, 9);
//   const { upper, middle, lower } = await ind.bbands(closes, 20, 2);
//   const r = await ind.rsi(closes);                 // omitted parameters take Python's defaults (14; 14,14,3,3;
//                                                    // 12,26,9; 20,2); ema's period is required
//
// Values equal processors.indicators (Python) bit for bit on both paths: same length as the input, NaN during
// the warm-up. Every function returns a Promise (the server path is a fetch); `ind.path` is the path chosen at
// load time, each result carries `.path`, and the module export `lastPath` is the path of the latest call.
// Invalid arguments throw (TypeError/RangeError) with the same wording as the Python functions, on both paths.
//
// Loading: WebAssembly.instantiateStreaming(fetch(url)); when instantiateStreaming is missing or rejects the
// response (e.g. the server does not send `Content-Type: application/wasm`) the bytes are fetched again and
// passed to WebAssembly.instantiate. If `WebAssembly` is undefined, or fetching/compiling/instantiating fails,
// or a call later traps or runs out of memory, the functions use the server instead.
//
// Server fallback contract (the API service implements it):
//   POST {fallbackBase}/api/indicators/compute      Content-Type: application/json
//   request:  {"indicator": "ema", "values": [<finite numbers>], "params": {"period": 12}}
//     indicator  params (all required, integers except nbdev)
//     ema        {"period"}                            period in [1, 100000]
//     rsi        {"period"}                            period in [2, 100000]
//     stochrsi   {"period", "stoch_period", "k", "d"}  period in [2, 100000], the others in [1, 100000]
//     macd       {"fast", "slow", "signal"}            fast, slow in [2, 100000], fast < slow, signal >= 1
//     bbands     {"period", "nbdev"}                   period in [2, 100000], nbdev a finite number >= 0
//   200 response: {"ema": [...]} | {"rsi": [...]} | {"k": [...], "d": [...]} |
//                 {"macd": [...], "signal": [...], "hist": [...]} | {"upper": [...], "middle": [...], "lower": [...]}
//     each array as long as "values", numbers written with round-trip precision (Python's json does), NaN
//     (warm-up) and any other non-finite value as null (so -0.0 inputs arrive as 0: JSON.stringify drops the
//     sign of zero).
//   400 response: {"error": "<what was wrong and how to fix it>"} -- this module throws Error(error).
//   fallbackBase defaults to '' (same origin as the page). A future `GET /api/indicators/{symbol}?...` that
//   serves stored series is not used here.

const MAX_PERIOD = 100000;

// Error codes returned by the wasm exports (wasm/indicators.c).
const ERRORS = {
  '-1': 'ERR_PERIOD', '-2': 'ERR_STOCH_PERIOD', '-3': 'ERR_K', '-4': 'ERR_D', '-5': 'ERR_FAST',
  '-6': 'ERR_SLOW', '-7': 'ERR_SIGNAL', '-8': 'ERR_FAST_GE_SLOW', '-9': 'ERR_NBDEV', '-10': 'ERR_LENGTH',
  '-11': 'ERR_POINTER', '-12': 'ERR_OVERLAP', '-13': 'ERR_NONFINITE', '-14': 'ERR_NO_MEMORY',
};

// Parameters of each indicator: [name, minimum, default] (minimum null: a finite number >= 0), in call order,
// and the output names. Defaults are processors.indicators' (ema's period has none).
const SPEC = {
  ema: { params: [['period', 1, undefined]], outputs: ['ema'] },
  rsi: { params: [['period', 2, 14]], outputs: ['rsi'] },
  stochrsi: {
    params: [['period', 2, 14], ['stoch_period', 1, 14], ['k', 1, 3], ['d', 1, 3]], outputs: ['k', 'd'],
  },
  macd: { params: [['fast', 2, 12], ['slow', 2, 26], ['signal', 1, 9]], outputs: ['macd', 'signal', 'hist'] },
  bbands: { params: [['period', 2, 20], ['nbdev', null, 2]], outputs: ['upper', 'middle', 'lower'] },
};

/** Path of the latest indicator call: 'wasm', 'server', or null before the first call. */
export let lastPath = null;

function checkParams(name, args) {
  const out = {};
  SPEC[name].params.forEach(([pname, minimum, fallback], i) => {
    const v = args[i] === undefined ? fallback : args[i];
    if (minimum === null) {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
        throw new RangeError(`${pname} must be a finite number >= 0, got ${v}`);
      }
    } else if (!Number.isInteger(v) || v < minimum || v > MAX_PERIOD) {
      throw new RangeError(`${pname} must be an integer in [${minimum}, ${MAX_PERIOD}], got ${v}`);
    }
    out[pname] = v;
  });
  if (name === 'macd' && out.fast >= out.slow) {
    throw new RangeError(`fast must be smaller than slow, got fast=${out.fast}, slow=${out.slow}`);
  }
  return out;
}

function asFloat64(values) {
  if (values instanceof Float64Array) return values;
  if (Array.isArray(values) || ArrayBuffer.isView(values)) return Float64Array.from(values);
  throw new TypeError('close must be a Float64Array or an array of numbers');
}

function nonFiniteError(x) {
  const i = x.findIndex((v) => !Number.isFinite(v));
  return new RangeError(
    `close[${i}] is ${x[i]}: inputs must be finite numbers; drop or fill NaN/inf values before calling`);
}

function shape(name, arrays, path) {
  const names = SPEC[name].outputs;
  if (names.length === 1) {
    const out = arrays[0];
    out.path = path;
    return out;
  }
  const out = { path };
  names.forEach((n, i) => { out[n] = arrays[i]; });
  return out;
}

async function instantiate(url) {
  if (typeof WebAssembly === 'undefined') throw new Error('WebAssembly is not available in this environment');
  if (typeof WebAssembly.instantiateStreaming === 'function') {
    try {
      return (await WebAssembly.instantiateStreaming(fetch(url), {})).instance;
    } catch (err) {
      // Wrong MIME type (TypeError) or a streaming failure: retry from the bytes below.
      if (!(err instanceof TypeError)) throw err;
    }
  }
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`fetching ${url} failed: HTTP ${resp.status}`);
  return (await WebAssembly.instantiate(await resp.arrayBuffer(), {})).instance;
}

class WasmBackend {
  constructor(instance) {
    this.x = instance.exports;
  }

  // Runs export `name` on x with the checked params; returns the output arrays (copies) or throws.
  run(name, x, params) {
    const e = this.x;
    const n = x.length;
    const outs = SPEC[name].outputs.length;
    try {
      e.reset();
      const src = e.alloc(8 * n);
      const dst = [];
      for (let i = 0; i < outs; i++) dst.push(e.alloc(8 * n));
      if (src === 0 || dst.includes(0)) throw new WasmOutOfMemory(n);
      new Float64Array(e.memory.buffer, src, n).set(x);
      const code = e[name](src, n, ...Object.values(params), ...dst);
      if (code === -13) throw nonFiniteError(x);
      if (code === -14) throw new WasmOutOfMemory(n);
      if (code !== 0) throw new Error(`${name} failed with ${ERRORS[code] ?? 'unknown error'} (${code})`);
      // Views after the call: the memory may have grown (stochrsi scratch), detaching older views.
      return dst.map((p) => new Float64Array(e.memory.buffer, p, n).slice());
    } finally {
      e.reset();
    }
  }
}

class WasmOutOfMemory extends Error {
  constructor(n) {
    super(`the wasm memory cannot hold ${n} values`);
  }
}

async function serverCompute(base, name, x, params) {
  const resp = await fetch(`${base}/api/indicators/compute`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ indicator: name, values: Array.from(x), params }),
  });
  let body;
  try {
    body = await resp.json();
  } catch {
    throw new Error(`${base}/api/indicators/compute answered HTTP ${resp.status} without a JSON body`);
  }
  if (!resp.ok) throw new Error(body.error ?? `${base}/api/indicators/compute answered HTTP ${resp.status}`);
  return SPEC[name].outputs.map((key) => {
    const arr = body[key];
    if (!Array.isArray(arr) || arr.length !== x.length) {
      throw new Error(`${base}/api/indicators/compute: "${key}" missing or not ${x.length} values long`);
    }
    return Float64Array.from(arr, (v) => (v === null ? NaN : v));
  });
}

/**
 * Load the indicators. Never rejects because of WebAssembly: without it the functions use the server.
 * @param {string|URL} url  where indicators.wasm is (default: next to this module)
 * @param {{fallbackBase?: string}} options  base URL of the API service for the fallback (default: same origin)
 */
export async function load(url = new URL('./indicators.wasm', import.meta.url), { fallbackBase = '' } = {}) {
  let backend = null;
  let loadError = null;
  try {
    backend = new WasmBackend(await instantiate(url));
  } catch (err) {
    loadError = err;
  }
  const base = String(fallbackBase).replace(/\/+$/, '');
  const api = {
    path: backend ? 'wasm' : 'server',
    loadError,
  };
  for (const name of Object.keys(SPEC)) {
    api[name] = async (close, ...args) => {
      const x = asFloat64(close);
      const params = checkParams(name, args);
      if (backend) {
        try {
          const arrays = backend.run(name, x, params);
          lastPath = 'wasm';
          return shape(name, arrays, 'wasm');
        } catch (err) {
          // Argument errors are the caller's; traps and exhausted memory fall back to the server.
          if (!(err instanceof WasmOutOfMemory) && !(err instanceof WebAssembly.RuntimeError)) throw err;
        }
      } else if (x.some((v) => !Number.isFinite(v))) {
        throw nonFiniteError(x); // JSON would turn NaN/inf into null: name the value here
      }
      const arrays = await serverCompute(base, name, x, params);
      lastPath = 'server';
      return shape(name, arrays, 'server');
    };
  }
  return api;
}
