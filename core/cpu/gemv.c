/* Matrix-vector products (a few rows of a) for the forward matmul, as in token-by-token
 * decoding with a KV cache: one sequence is one row, B images or K beams are B or K rows. Such a
 * product reads each weight once and does 2 flops per weight and row, so it is bound by memory
 * bandwidth.
 *
 * fp32, weights stored [N, K] (a Linear layer's layout), 1-8 rows, AVX-512: register tiles of 4
 * weight rows x 4 rows of a (16 accumulators), so each weight vector loaded serves every row.
 * On the CoCa ViT-B/32 decoder's shapes, out of cache (docs/PERFORMANCE.md): 1 row 12.5-21 GB/s
 * against 12.4-15 for the loop before, 2 rows 10-19 against oneDNN's 10-15, 4-8 rows within
 * about 10% of oneDNN either way (9-18 against 9.5-15.6). Cached
 * decoding of coca_ViT-B-32, 30 tokens: greedy, 1 image 818-831 ms with the one-row loop that
 * came before (one dot product at a time) against 679-688 ms; 6 beams 1473-1508 ms through
 * oneDNN against 1381-1429 ms. With AVX2 (no AVX-512), one row through a plain loop (as fast
 * as a 1 x 4 tile there) and 2-8 rows through the same tiles at 2 rows x 4 weight rows: on an
 * EPYC (Zen 3, 2 threads), out of cache, 8.8-28 GB/s against oneDNN's 7.5-15 on the decoder's
 * shapes (K x N 512x1536, 512x512, 512x2048, 2048x512): 0.93-2.5x, below 1x only at 6-8 rows on
 * three of them (0.93-0.99x); cached decoding of coca_ViT-B-32, 30 tokens, 4 images
 * 1246-1334 ms against 1557-1677 through oneDNN, 6 beams 1802-1968 against 1893-2202. Other
 * CPUs: one row through the plain loop, more through oneDNN. fp32 weights stored [K, N] (the
 * vocabulary projection) stay with oneDNN: its sgemm streamed them at ~30 GB/s, a blocked loop
 * here at ~19.
 *
 * bf16 precision with BF16 weights (`--precision bf16`): oneDNN's bf16 matmul streamed one
 * row at ~13 GB/s; here [N, K] weights go through VDPBF16PS dot products and [K, N] weights
 * through row blocks streamed across per-thread column spans (~23 GB/s).
 *
 * out[m, n] = dot(a[m, :], b[n, :]) + bias[n] (or b[:, n]). Threads split the outputs n;
 * every output is summed in one fixed order whatever the thread count, so results do not
 * depend on it. They differ from oneDNN's only by summation order. */
#include <omp.h>
#include <string.h>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/cpu/cpu.h"

#define GEMV_MAX_ROWS 1
#define GEMV_PAR_MIN (1 << 16)      /* weights below which one thread is faster */
#define GEMV_BF16_MAX_K 16384       /* the widened row of a lives on the stack */

/* AVX-512 machines: 512-bit vectors for the [K,N] loop (gcc prefers 256). */
#if defined(__AVX512F__)
#define WIDE_KN __attribute__((target("prefer-vector-width=512")))
#else
#define WIDE_KN
#endif

#if !defined(__AVX512F__)
/* b [N, K]: out[m, n] = dot(a[m, :], b[n, :]) + bias[n] (one row; the tiles below where AVX-512 is). */
static void gemv_nk(int64_t M, int64_t N, int64_t K, const float *a, const float *b, const float *bias, float *out) {
#pragma omp parallel for schedule(static) if (N * K >= GEMV_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    const float *r = b + n * K;
    for (int64_t m = 0; m < M; m++) {
      const float *x = a + m * K;
      float s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < K; k++) s += x[k] * r[k];
      out[m * N + n] = s + (bias ? bias[n] : 0.0f);
    }
  }
}
#endif

/* The same in bf16 precision: out[m, n] = sum_k bf16(a[m, k]) * b[n, k] + bias[n] with b BF16
 * [N, K] and a F32 (rounded to bf16 here, as the matmul rounds its inputs) or BF16. Every
 * product of two bf16 values is exact in fp32, so only the summation order differs from
 * oneDNN's bf16 GEMM. With AVX512-BF16 the dot products run on VDPBF16PS (32 weights an
 * instruction, four accumulators); elsewhere a widening loop. */
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
static float dot_bf16(const uint16_t *x, const uint16_t *w, int64_t K) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  int64_t k = 0;
#define DP(acc, off) acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(x + k + (off)), \
                                            (__m512bh)_mm512_loadu_si512(w + k + (off)))
  for (; k + 128 <= K; k += 128) {
    DP(a0, 0);
    DP(a1, 32);
    DP(a2, 64);
    DP(a3, 96);
  }
  for (; k + 32 <= K; k += 32) DP(a0, 0);
#undef DP
  if (k < K) {
    __mmask32 m = (__mmask32)((1ull << (K - k)) - 1);
    a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_maskz_loadu_epi16(m, x + k), (__m512bh)_mm512_maskz_loadu_epi16(m, w + k));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
#else
static float dot_bf16(const uint16_t *x, const uint16_t *w, int64_t K) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < K; k++) s += vlm_bf16_to_f32(x[k]) * vlm_bf16_to_f32(w[k]);
  return s;
}
#endif

static void gemv_nk_bf16(int64_t M, int64_t N, int64_t K, const void *a, int a_bf16, const uint16_t *b,
                         const float *bias, float *out) {
  for (int64_t m = 0; m < M; m++) {
    uint16_t x[K];
    if (a_bf16) memcpy(x, (const uint16_t *)a + m * K, (size_t)K * sizeof(uint16_t));
    else
      for (int64_t k = 0; k < K; k++) x[k] = vlm_f32_to_bf16(((const float *)a)[m * K + k]);
#pragma omp parallel for schedule(static) if (N * K >= GEMV_PAR_MIN)
    for (int64_t n = 0; n < N; n++) out[m * N + n] = dot_bf16(x, b + n * K, K) + (bias ? bias[n] : 0.0f);
  }
}

/* b BF16 stored [K, N] (the vocabulary projection): out[n] = sum_k x[k] * b[k, n], as
 * column-wise axpys. Each thread takes one span of columns; GEMV_KN_KB rows of b at a time
 * stream through it (that many forward streams, prefetcher-friendly) in groups of
 * GEMV_KN_COLS columns whose sums stay in registers, the partial sums kept in out between
 * row blocks (the span of out stays in the cache). Each output is summed in k order,
 * whatever the thread count. */
#define GEMV_KN_KB 16
#define GEMV_KN_COLS 64
WIDE_KN static void kn_span(int64_t n0, int64_t n1, int64_t N, int64_t K, const float *xf, const uint16_t *b,
                            float *out) {
  for (int64_t k0 = 0; k0 < K; k0 += GEMV_KN_KB) {
    const int64_t k1 = k0 + GEMV_KN_KB < K ? k0 + GEMV_KN_KB : K;
    for (int64_t c0 = n0; c0 < n1; c0 += GEMV_KN_COLS) {
      const int64_t nn = n1 - c0 < GEMV_KN_COLS ? n1 - c0 : GEMV_KN_COLS;
      float acc[GEMV_KN_COLS];
      for (int64_t j = 0; j < GEMV_KN_COLS; j++) acc[j] = k0 == 0 || j >= nn ? 0.0f : out[c0 + j];
      for (int64_t k = k0; k < k1; k++) {
        const uint16_t *r = b + k * N + c0;
        const float xk = xf[k];
        if (nn == GEMV_KN_COLS) {
#pragma omp simd
          for (int64_t j = 0; j < GEMV_KN_COLS; j++) acc[j] += xk * vlm_bf16_to_f32(r[j]);
        } else {
          for (int64_t j = 0; j < nn; j++) acc[j] += xk * vlm_bf16_to_f32(r[j]);
        }
      }
      for (int64_t j = 0; j < nn; j++) out[c0 + j] = acc[j];
    }
  }
}

static void gemv_kn_bf16(int64_t N, int64_t K, const uint16_t *x, const uint16_t *b, const float *bias,
                         float *out) {
  float xf[K];
  for (int64_t k = 0; k < K; k++) xf[k] = vlm_bf16_to_f32(x[k]);
#pragma omp parallel if (N * K >= GEMV_PAR_MIN)
  {
    const int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t groups = (N + GEMV_KN_COLS - 1) / GEMV_KN_COLS;
    const int64_t n0 = groups * t / T * GEMV_KN_COLS, n1e = groups * (t + 1) / T * GEMV_KN_COLS;
    const int64_t n1 = n1e < N ? n1e : N;
    if (n0 < n1) kn_span(n0, n1, N, K, xf, b, out);
  }
  if (bias)
    for (int64_t n = 0; n < N; n++) out[n] += bias[n];
}

int vlm_cpu_gemv_bf16_forward(int64_t M, int64_t N, int64_t K, const void *a, int a_bf16, const uint16_t *b,
                              int trans_b, const float *bias, float *out) {
  if (M < 1 || M > GEMV_MAX_ROWS || N < 1 || K < 1 || K > GEMV_BF16_MAX_K || N * K < GEMV_PAR_MIN) return 0;
  if (trans_b) {
    gemv_nk_bf16(M, N, K, a, a_bf16, b, bias, out);
  } else {
    uint16_t x[K];
    if (a_bf16) memcpy(x, a, (size_t)K * sizeof(uint16_t));
    else
      for (int64_t k = 0; k < K; k++) x[k] = vlm_f32_to_bf16(((const float *)a)[k]);
    gemv_kn_bf16(N, K, x, b, bias, out);
  }
  return 1;
}

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
/* 2-8 rows (AVX-512: 1-8), b [N, K]: blocks of 4 weight rows times NK_MB rows of a, the
 * accumulators in registers, so each weight vector loaded serves NK_MB rows (the 1-row loop
 * above, one dot product at a time, re-reads each weight row per row of a and waits on one
 * accumulator). Each output is the lane sum of its k = lane mod NK_VW partial sums, then + bias,
 * whatever the thread count. One body for both instruction sets, through the NK_ macros:
 * AVX-512 4 x 4 tiles (16 of 32 registers), AVX2 2 x 4 (8 accumulators and 4 weight vectors of
 * 16 registers). */
#if defined(__AVX512F__)
#define NK_VW 16
#define NK_MB 4
typedef __m512 nk_vec;
typedef __mmask16 nk_mask;
#define NK_ZERO() _mm512_setzero_ps()
#define NK_LOAD(p) _mm512_loadu_ps(p)
#define NK_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define NK_TAIL_MASK(r) ((__mmask16)((1u << (r)) - 1))
#define NK_LOAD_TAIL(m, p) _mm512_maskz_loadu_ps(m, p)
#define NK_SUM(v) _mm512_reduce_add_ps(v)
#else
#define NK_VW 8
#define NK_MB 2
typedef __m256 nk_vec;
typedef __m256i nk_mask;
#define NK_ZERO() _mm256_setzero_ps()
#define NK_LOAD(p) _mm256_loadu_ps(p)
#define NK_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define NK_TAIL_MASK(r) \
  _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(r)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define NK_LOAD_TAIL(m, p) _mm256_maskload_ps(p, m)
static inline float nk_sum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#define NK_SUM(v) nk_sum8(v)
#endif
#define NK_NB 4
/* rows x[0..mb) times weight rows w[0..NK_NB): s[i][j] = dot(x[i], w[j]); mb is a constant at
 * each call (1, 2 or NK_MB), so the accumulators stay in registers. */
static inline __attribute__((always_inline)) void nk_tile(int64_t K, const float *const *x, const int mb,
                                                          const float *const w[NK_NB], float s[NK_MB][NK_NB]) {
  nk_vec acc[NK_MB][NK_NB];
  for (int i = 0; i < mb; i++)
    for (int j = 0; j < NK_NB; j++) acc[i][j] = NK_ZERO();
  int64_t k = 0;
  for (; k + NK_VW <= K; k += NK_VW) {
    nk_vec wv[NK_NB];
    for (int j = 0; j < NK_NB; j++) wv[j] = NK_LOAD(w[j] + k);
    for (int i = 0; i < mb; i++) {
      const nk_vec xv = NK_LOAD(x[i] + k);
      for (int j = 0; j < NK_NB; j++) acc[i][j] = NK_FMA(xv, wv[j], acc[i][j]);
    }
  }
  if (k < K) {
    const nk_mask mk = NK_TAIL_MASK(K - k);
    nk_vec wv[NK_NB];
    for (int j = 0; j < NK_NB; j++) wv[j] = NK_LOAD_TAIL(mk, w[j] + k);
    for (int i = 0; i < mb; i++) {
      const nk_vec xv = NK_LOAD_TAIL(mk, x[i] + k);
      for (int j = 0; j < NK_NB; j++) acc[i][j] = NK_FMA(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < mb; i++)
    for (int j = 0; j < NK_NB; j++) s[i][j] = NK_SUM(acc[i][j]);
}

static void gemv_nk_rows(int64_t M, int64_t N, int64_t K, const float *a, const float *b, const float *bias,
                         float *out) {
  const int64_t nblocks = (N + NK_NB - 1) / NK_NB;
#pragma omp parallel for schedule(static) if (N * K >= GEMV_PAR_MIN)
  for (int64_t nb = 0; nb < nblocks; nb++) {
    const int64_t n0 = nb * NK_NB, nn = N - n0 < NK_NB ? N - n0 : NK_NB;
    const float *w[NK_NB];
    for (int j = 0; j < NK_NB; j++) w[j] = b + (n0 + (j < nn ? j : 0)) * K;   /* a short block repeats row n0 */
    for (int64_t m0 = 0; m0 < M;) {
      const float *x[NK_MB];
      for (int64_t i = 0; i < NK_MB; i++) x[i] = a + (m0 + i < M ? m0 + i : M - 1) * K;
      float s[NK_MB][NK_NB];
      const int mb = M - m0 >= NK_MB ? NK_MB : M - m0 >= 2 ? 2 : 1;
      if (mb == NK_MB) nk_tile(K, x, NK_MB, w, s);
      else if (mb == 2) nk_tile(K, x, 2, w, s);
      else nk_tile(K, x, 1, w, s);
      for (int64_t i = 0; i < mb; i++)
        for (int64_t j = 0; j < nn; j++) out[(m0 + i) * N + n0 + j] = s[i][j] + (bias ? bias[n0 + j] : 0.0f);
      m0 += mb;
    }
  }
}
#define GEMV_NK_MAX_ROWS 8
#else
#define GEMV_NK_MAX_ROWS GEMV_MAX_ROWS
#endif

int vlm_cpu_gemv_forward(int64_t M, int64_t N, int64_t K, const float *a, const float *b, int trans_b,
                         const float *bias, float *out) {
  if (!trans_b || M < 1 || M > GEMV_NK_MAX_ROWS || N < 1 || K < 1 || N * K < GEMV_PAR_MIN) return 0;
#if defined(__AVX512F__)
  gemv_nk_rows(M, N, K, a, b, bias, out);
#elif defined(__AVX2__) && defined(__FMA__)
  if (M == 1) gemv_nk(M, N, K, a, b, bias, out);   /* as fast as a 1 x 4 tile here (measured) */
  else gemv_nk_rows(M, N, K, a, b, bias, out);
#else
  gemv_nk(M, N, K, a, b, bias, out);
#endif
  return 1;
}
