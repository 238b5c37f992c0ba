/*
 * StockPulse indicators for WebAssembly: a bit-for-bit port of processors/indicators/kernels.py.
 *
 * The numba kernels' docstrings are the arithmetic specification; every expression below performs the same
 * IEEE double operations in the same order ("(a * b) + c" is two roundings). Build rules (see build.py):
 * no FMA contraction (-ffp-contract=off), no fast-math, no libc, no imports. An integer period p used in
 * arithmetic is the exact conversion (double)p. sqrt is __builtin_sqrt, i.e. the correctly rounded
 * f64.sqrt instruction. Warm-up outputs are the quiet NaN 0x7ff8000000000000 (numpy's np.nan).
 *
 * ABI (all integers and pointers i32, nbdev f64, arrays are float64 in linear memory):
 *   memory                                  the exported linear memory
 *   alloc(nbytes) -> ptr                    bump allocation, 8-byte aligned; 0 when memory cannot grow
 *   reset()                                 frees every allocation (the memory itself never shrinks)
 *   ema(src, n, period, dst)
 *   rsi(src, n, period, dst)
 *   stochrsi(src, n, period, stoch_period, k, d, dst_k, dst_d)
 *   macd(src, n, fast, slow, signal, dst_macd, dst_signal, dst_hist)
 *   bbands(src, n, period, nbdev, dst_upper, dst_middle, dst_lower)
 * Each indicator writes n values to every dst array and returns 0, or one of the negative error codes
 * below. Parameter/pointer errors are detected before anything is written; on ERR_NONFINITE the outputs
 * are unspecified. Arrays must come from alloc() and must not overlap each other.
 * Growing the memory (alloc, or the scratch space stochrsi takes) detaches JS views of memory.buffer.
 */

typedef unsigned int u32;
typedef unsigned long long u64;
typedef int i32;

#define EXPORT(name) __attribute__((export_name(#name)))
#define QNAN __builtin_nan("") /* 0x7ff8000000000000 */
#define MAX_PERIOD 100000      /* processors.indicators.validation.MAX_PERIOD */
#define PAGE 65536u

/* Error codes (keep in sync with indicators.js, tests/support/wasm_runner.py and README.md). */
#define OK 0
#define ERR_PERIOD -1        /* period out of range: [1, 100000] for ema, [2, 100000] otherwise */
#define ERR_STOCH_PERIOD -2  /* stoch_period not in [1, 100000] */
#define ERR_K -3             /* k not in [1, 100000] */
#define ERR_D -4             /* d not in [1, 100000] */
#define ERR_FAST -5          /* fast not in [2, 100000] */
#define ERR_SLOW -6          /* slow not in [2, 100000] */
#define ERR_SIGNAL -7        /* signal not in [1, 100000] */
#define ERR_FAST_GE_SLOW -8  /* fast >= slow */
#define ERR_NBDEV -9         /* nbdev not a finite number >= 0 */
#define ERR_LENGTH -10       /* n < 0 */
#define ERR_POINTER -11      /* an array is not an 8-aligned alloc()ated block of n doubles inside memory */
#define ERR_OVERLAP -12      /* two of the arrays overlap */
#define ERR_NONFINITE -13    /* the input holds NaN or +-inf (outputs unspecified) */
#define ERR_NO_MEMORY -14    /* scratch space could not be allocated (memory.grow failed) */

/* ---------------------------------------------------------------------------------------------------- */
/* Bump allocator                                                                                        */

extern unsigned char __heap_base; /* first free byte after data and stack, provided by wasm-ld */
static u32 heap_top;              /* 0 until the first alloc/reset */

static u32 heap_start(void) { return ((u32)&__heap_base + 7u) & ~7u; }

static u64 memory_bytes(void) { return (u64)__builtin_wasm_memory_size(0) * PAGE; }

EXPORT(alloc) u32 alloc(u32 nbytes) {
  if (heap_top == 0) heap_top = heap_start();
  u64 ptr = ((u64)heap_top + 7u) & ~(u64)7u;
  u64 end = ptr + (u64)nbytes;
  if (end > 0xFFFFFFF8ull) return 0; /* beyond the 4 GiB address space of wasm32 */
  u64 have = memory_bytes();
  if (end > have) {
    u64 pages = (end - have + PAGE - 1u) / PAGE;
    if (__builtin_wasm_memory_grow(0, (unsigned long)pages) == (unsigned long)-1) return 0;
  }
  heap_top = (u32)end;
  return (u32)ptr;
}

EXPORT(reset) void reset(void) { heap_top = heap_start(); }

/* ---------------------------------------------------------------------------------------------------- */
/* Argument checks                                                                                       */

static int bad_period(i32 p, i32 minimum) { return p < minimum || p > MAX_PERIOD; }

/* An array argument: n doubles at ptr, inside the heap (from alloc) and inside the memory. */
static int bad_array(u32 ptr, i32 n) {
  if (ptr < heap_start() || (ptr & 7u)) return 1;
  return (u64)ptr + (u64)n * 8u > memory_bytes();
}

/* Up to 4 arrays of n doubles each: every one valid, no two overlapping. Returns OK or an error. */
static i32 check_arrays(i32 n, u32 count, const u32 *ptrs) {
  if (n < 0) return ERR_LENGTH;
  for (u32 a = 0; a < count; a++) {
    if (bad_array(ptrs[a], n)) return ERR_POINTER;
    for (u32 b = 0; b < a; b++) {
      u64 lo = ptrs[a] < ptrs[b] ? ptrs[a] : ptrs[b];
      u64 hi = ptrs[a] < ptrs[b] ? ptrs[b] : ptrs[a];
      if (n > 0 && lo + (u64)n * 8u > hi) return ERR_OVERLAP;
    }
  }
  return OK;
}

/* The kernels validate while computing: chk = chk + (x * 0.0) stays 0.0 unless some x is NaN/inf. */
static i32 finite_status(double chk) { return chk == 0.0 ? OK : ERR_NONFINITE; }

static i32 imin(i32 a, i32 b) { return a < b ? a : b; }
static i32 imax(i32 a, i32 b) { return a > b ? a : b; }

/* ---------------------------------------------------------------------------------------------------- */
/* EMA (kernels.ema_kernel)                                                                              */
/* k = 2.0 / (p + 1.0); seed s = 0.0; s += x[0] .. x[p-1]; e = s / p -> out[p-1];                        */
/* then e = ((x[i] - e) * k) + e.                                                                        */

static double ema_core(const double *x, i32 n, i32 p, double *out) {
  double k = 2.0 / ((double)p + 1.0);
  double chk = 0.0;
  double s = 0.0;
  i32 i;
  for (i = 0; i < imin(p - 1, n); i++) {
    double xi = x[i];
    chk = chk + (xi * 0.0);
    s += xi;
    out[i] = QNAN;
  }
  if (n < p) return chk;
  double xi = x[p - 1];
  chk = chk + (xi * 0.0);
  s += xi;
  double e = s / (double)p;
  out[p - 1] = e;
  for (i = p; i < n; i++) {
    xi = x[i];
    chk = chk + (xi * 0.0);
    e = ((xi - e) * k) + e;
    out[i] = e;
  }
  return chk;
}

EXPORT(ema) i32 ema(const double *src, i32 n, i32 period, double *dst) {
  if (bad_period(period, 1)) return ERR_PERIOD;
  u32 ptrs[2] = {(u32)src, (u32)dst};
  i32 err = check_arrays(n, 2, ptrs);
  if (err) return err;
  return finite_status(ema_core(src, n, period, dst));
}

/* ---------------------------------------------------------------------------------------------------- */
/* RSI (kernels.rsi_kernel), Wilder smoothing                                                           */
/* d = x[i] - x[i-1]; up = d > 0 ? d : 0.0; dn = d < 0 ? -d : 0.0 (see positive_part). */
/* Seed over bars 1..p: gain = gain + up; loss = loss + dn (from 0.0); gain = gain / p; loss = loss / p. */
/* Later: gain = (gain * c1) + (up * c2), loss likewise, c1 = (p - 1.0) / p, c2 = 1.0 / p.               */
/* Output: t = gain + loss; 100.0 * (gain / t) if t >= 1e-14 else 0.0; after the seed a bar with         */
/* d == 0.0 repeats the previous output (the averages still update).                                    */

/* d > 0.0 ? d : 0.0 without a float select: keep d's bits when its sign bit is clear, else +0.0 bits.
 * Same value for every non-NaN d (d = +0.0 gives +0.0, d = -0.0 gives +0.0; d is never NaN for finite
 * inputs). Cranelift and V8 lower an f64 select (and f64.max) to a jump that mispredicts on about every other
 * price change: this integer form made RSI 3x faster in V8 and 2.5x in wasmtime. dn = positive_part(-d)
 * (negation flips the sign bit) equals d < 0.0 ? -d : 0.0 likewise. */
static double positive_part(double d) {
  long long b = __builtin_bit_cast(long long, d);
  return __builtin_bit_cast(double, b & ~(b >> 63)); /* b >> 63: all ones iff the sign bit is set */
}

static double rsi_value(double gain, double loss) {
  double t = gain + loss;
  return t >= 1e-14 ? 100.0 * (gain / t) : 0.0;
}

static double rsi_core(const double *x, i32 n, i32 p, double *out) {
  double chk = 0.0;
  i32 i;
  for (i = 0; i < imin(p, n); i++) out[i] = QNAN;
  if (n <= p) {
    for (i = 0; i < n; i++) chk = chk + (x[i] * 0.0);
    return chk;
  }
  chk = chk + (x[0] * 0.0);
  double gain = 0.0;
  double loss = 0.0;
  for (i = 1; i <= p; i++) {
    double xi = x[i];
    chk = chk + (xi * 0.0);
    double d = xi - x[i - 1];
    double up = positive_part(d);
    double dn = positive_part(-d);
    gain = gain + up;
    loss = loss + dn;
  }
  gain = gain / (double)p;
  loss = loss / (double)p;
  double r = rsi_value(gain, loss);
  out[p] = r;
  double c1 = ((double)p - 1.0) / (double)p;
  double c2 = 1.0 / (double)p;
  for (i = p + 1; i < n; i++) {
    double xi = x[i];
    chk = chk + (xi * 0.0);
    double d = xi - x[i - 1];
    double up = positive_part(d);
    double dn = positive_part(-d);
    gain = (gain * c1) + (up * c2);
    loss = (loss * c1) + (dn * c2);
    double rn = rsi_value(gain, loss);
    r = d != 0.0 ? rn : r;
    out[i] = r;
  }
  return chk;
}

EXPORT(rsi) i32 rsi(const double *src, i32 n, i32 period, double *dst) {
  if (bad_period(period, 2)) return ERR_PERIOD;
  u32 ptrs[2] = {(u32)src, (u32)dst};
  i32 err = check_arrays(n, 2, ptrs);
  if (err) return err;
  return finite_status(rsi_core(src, n, period, dst));
}

/* ---------------------------------------------------------------------------------------------------- */
/* StochRSI (kernels.rsi_kernel, then kernels.stoch_sma_kernel on the RSI from index `period`)           */
/* For j >= first = start + sp - 1: lo/hi = exact min/max of v[j-sp+1 .. j] (TA-Lib's STOCH scan: rescan */
/* only when the extreme leaves the window, ties move the index forward);                               */
/* fk = (100.0 * (v[j] - lo)) / (hi - lo), or 0.0 when hi == lo. K = SMA(fk, k), D = SMA(K, d), each a   */
/* running sum from 0.0 started at its first input; out = total / k, then the oldest value leaves.       */

static void stoch_sma_core(const double *v, i32 n, i32 start, i32 sp, i32 k, i32 d, double *kout,
                           double *dout, double *fk_ring, double *k_ring) {
  i32 first = start + sp - 1;
  i32 j;
  for (j = 0; j < imin(first + k - 1, n); j++) kout[j] = QNAN;
  for (j = 0; j < imin(first + k + d - 2, n); j++) dout[j] = QNAN;
  if (first >= n) return;
  double ktot = 0.0;
  double dtot = 0.0;
  i32 lo_idx = -1;
  i32 hi_idx = -1;
  double lo = 0.0;
  double hi = 0.0;
  for (j = first; j < n; j++) {
    i32 trailing = j - sp + 1;
    double val = v[j];
    if (lo_idx < trailing) {
      lo_idx = trailing;
      lo = v[trailing];
      for (i32 q = trailing + 1; q <= j; q++) {
        if (v[q] <= lo) {
          lo = v[q];
          lo_idx = q;
        }
      }
    } else if (val <= lo) {
      lo = val;
      lo_idx = j;
    }
    if (hi_idx < trailing) {
      hi_idx = trailing;
      hi = v[trailing];
      for (i32 q = trailing + 1; q <= j; q++) {
        if (v[q] >= hi) {
          hi = v[q];
          hi_idx = q;
        }
      }
    } else if (val >= hi) {
      hi = val;
      hi_idx = j;
    }
    double fk = hi != lo ? (100.0 * (val - lo)) / (hi - lo) : 0.0;
    i32 m = j - first; /* position of fk in the fk series */
    fk_ring[m % k] = fk;
    ktot += fk;
    if (m >= k - 1) {
      double kv = ktot / (double)k;
      ktot -= fk_ring[(m + 1) % k]; /* oldest fk of the window: index m-k+1 */
      kout[j] = kv;
      i32 q2 = m - (k - 1); /* position of kv in the K series */
      k_ring[q2 % d] = kv;
      dtot += kv;
      if (q2 >= d - 1) {
        dout[j] = dtot / (double)d;
        dtot -= k_ring[(q2 + 1) % d];
      }
    }
  }
}

EXPORT(stochrsi)
i32 stochrsi(const double *src, i32 n, i32 period, i32 stoch_period, i32 k, i32 d, double *dst_k,
             double *dst_d) {
  if (bad_period(period, 2)) return ERR_PERIOD;
  if (bad_period(stoch_period, 1)) return ERR_STOCH_PERIOD;
  if (bad_period(k, 1)) return ERR_K;
  if (bad_period(d, 1)) return ERR_D;
  u32 ptrs[3] = {(u32)src, (u32)dst_k, (u32)dst_d};
  i32 err = check_arrays(n, 3, ptrs);
  if (err) return err;
  /* Scratch after the caller's allocations (the RSI series and the two SMA rings), released on return. */
  u32 saved = heap_top;
  double *r = (double *)alloc((u32)n * 8u);
  double *fk_ring = (double *)alloc((u32)k * 8u);
  double *k_ring = (double *)alloc((u32)d * 8u);
  i32 status = ERR_NO_MEMORY;
  if (r && fk_ring && k_ring) {
    status = finite_status(rsi_core(src, n, period, r));
    if (status == OK) stoch_sma_core(r, n, period, stoch_period, k, d, dst_k, dst_d, fk_ring, k_ring);
  }
  heap_top = saved;
  return status;
}

/* ---------------------------------------------------------------------------------------------------- */
/* MACD (kernels.macd_kernel, TA-Lib's TA_MACD)                                                          */
/* Both EMAs start at bar slow-1: es = (x[0] + .. + x[slow-1]) / slow, ef = (x[slow-fast] + .. +         */
/* x[slow-1]) / fast (running sums from 0.0 in index order, one loop). Then e = ((x - e) * k) + e with   */
/* kf = 2.0 / (fast + 1.0), ks = 2.0 / (slow + 1.0); m = ef - es from bar slow-1. The signal is seeded   */
/* at bar slow+signal-2 with (running sum from 0.0 of the first `signal` m values) / signal, then        */
/* sig = ((m - sig) * kg) + sig, kg = 2.0 / (signal + 1.0); hist = m - sig.                              */

static double macd_core(const double *x, i32 n, i32 fast, i32 slow, i32 signal, double *m_out,
                        double *s_out, double *h_out) {
  i32 first_sig = slow + signal - 2; /* index of the first signal value */
  i32 i;
  for (i = 0; i < imin(slow - 1, n); i++) m_out[i] = QNAN;
  for (i = 0; i < imin(first_sig, n); i++) {
    s_out[i] = QNAN;
    h_out[i] = QNAN;
  }
  double chk = 0.0;
  if (n < slow) {
    for (i = 0; i < n; i++) chk = chk + (x[i] * 0.0);
    return chk;
  }
  double kf = 2.0 / ((double)fast + 1.0);
  double ks = 2.0 / ((double)slow + 1.0);
  double kg = 2.0 / ((double)signal + 1.0);
  double ss = 0.0;
  double sf = 0.0;
  for (i = 0; i < slow; i++) {
    double xi = x[i];
    chk = chk + (xi * 0.0);
    ss += xi;
    if (i >= slow - fast) sf += xi;
  }
  double es = ss / (double)slow;
  double ef = sf / (double)fast;
  /* MACD values that seed the signal line: bars slow-1 .. first_sig. */
  double gsum = 0.0;
  i32 seed_end = imin(first_sig + 1, n);
  for (i = slow - 1; i < seed_end; i++) {
    if (i >= slow) {
      double xi = x[i];
      chk = chk + (xi * 0.0);
      ef = ((xi - ef) * kf) + ef;
      es = ((xi - es) * ks) + es;
    }
    double m = ef - es;
    m_out[i] = m;
    gsum += m;
  }
  if (seed_end <= first_sig) return chk;
  double sig = gsum / (double)signal;
  s_out[first_sig] = sig;
  h_out[first_sig] = m_out[first_sig] - sig;
  for (i = first_sig + 1; i < n; i++) {
    double xi = x[i];
    chk = chk + (xi * 0.0);
    ef = ((xi - ef) * kf) + ef;
    es = ((xi - es) * ks) + es;
    double m = ef - es;
    m_out[i] = m;
    sig = ((m - sig) * kg) + sig;
    s_out[i] = sig;
    h_out[i] = m - sig;
  }
  return chk;
}

EXPORT(macd)
i32 macd(const double *src, i32 n, i32 fast, i32 slow, i32 signal, double *dst_macd, double *dst_signal,
         double *dst_hist) {
  if (bad_period(fast, 2)) return ERR_FAST;
  if (bad_period(slow, 2)) return ERR_SLOW;
  if (bad_period(signal, 1)) return ERR_SIGNAL;
  if (fast >= slow) return ERR_FAST_GE_SLOW;
  u32 ptrs[4] = {(u32)src, (u32)dst_macd, (u32)dst_signal, (u32)dst_hist};
  i32 err = check_arrays(n, 4, ptrs);
  if (err) return err;
  return finite_status(macd_core(src, n, fast, slow, signal, dst_macd, dst_signal, dst_hist));
}

/* ---------------------------------------------------------------------------------------------------- */
/* Bollinger Bands (kernels.bbands_kernel)                                                               */
/* Middle: SMA running sum: total += x[i]; for i >= p-1 m = total / p, then total -= x[i-p+1].           */
/* Deviation: anchored sums s1 = sum(x - c), s2 = sum((x - c)^2). At every i with i % p == 0 (countdown   */
/* reaches 0): c = x[i]; s1 = s2 = 0.0; for j = max(0, i-p+1) .. i: u = x[j] - c; s1 += u; s2 += u * u.  */
/* Other bars: u = x[i] - c; s1 += u; s2 += u * u; if i >= p: u = x[i-p] - c; s1 -= u; s2 -= u * u.      */
/* Output (i >= p-1): q = (p * s2) - (s1 * s1); sd = sqrt(q) * (1.0 / p) if q > 0.0 else 0.0;            */
/* w = sd * nbdev; upper = m + w; middle = m; lower = m - w.                                            */

static double bbands_core(const double *x, i32 n, i32 p, double nbdev, double *up, double *mid,
                          double *lo) {
  double pd = (double)p;
  double inv_p = 1.0 / pd;
  double chk = 0.0;
  double total = 0.0;
  double c = 0.0;
  double s1 = 0.0;
  double s2 = 0.0;
  i32 countdown = 0;
  for (i32 i = 0; i < n; i++) {
    double xi = x[i];
    chk = chk + (xi * 0.0);
    if (countdown == 0) {
      c = xi;
      s1 = 0.0;
      s2 = 0.0;
      for (i32 j = imax(0, i - p + 1); j <= i; j++) {
        double u = x[j] - c;
        s1 += u;
        s2 += u * u;
      }
      countdown = p;
    } else {
      double u = xi - c;
      s1 += u;
      s2 += u * u;
      if (i >= p) {
        u = x[i - p] - c;
        s1 -= u;
        s2 -= u * u;
      }
    }
    countdown -= 1;
    total += xi;
    if (i >= p - 1) {
      double m = total / pd;
      total -= x[i - p + 1];
      double q = (pd * s2) - (s1 * s1);
      double sd = q > 0.0 ? __builtin_sqrt(q) * inv_p : 0.0;
      double w = sd * nbdev;
      up[i] = m + w;
      mid[i] = m;
      lo[i] = m - w;
    } else {
      up[i] = QNAN;
      mid[i] = QNAN;
      lo[i] = QNAN;
    }
  }
  return chk;
}

EXPORT(bbands)
i32 bbands(const double *src, i32 n, i32 period, double nbdev, double *dst_upper, double *dst_middle,
           double *dst_lower) {
  if (bad_period(period, 2)) return ERR_PERIOD;
  if (!(nbdev >= 0.0 && nbdev <= 1.7976931348623157e308)) return ERR_NBDEV; /* rejects NaN and inf */
  u32 ptrs[4] = {(u32)src, (u32)dst_upper, (u32)dst_middle, (u32)dst_lower};
  i32 err = check_arrays(n, 4, ptrs);
  if (err) return err;
  return finite_status(bbands_core(src, n, period, nbdev, dst_upper, dst_middle, dst_lower));
}
