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
 * oneDNN against 1381-1429 ms. Without AVX-512, one row through a plain loop; more through
 * oneDNN. fp32 weights stored [K, N] (the vocabulary projection) stay with oneDNN: its sgemm
 * streamed them at ~30 GB/s, a blocked loop here at ~19.
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
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
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

#if defined(__AVX512F__)
/* 2-8 rows, b [N, K]: blocks of 4 weight rows times 4 rows of a, 16 accumulators in registers,
 * so each weight vector loaded serves 4 rows (the 1-row loop above, one dot product at a time,
 * re-reads each weight row per row of a and waits on one accumulator). Each output is the
 * 16-lane sum of its k = lane mod 16 partial sums, then + bias, whatever the thread count. */
#define NK_NB 4
/* out rows x[0..mb) times weight rows w[0..NK_NB): s[i][j] = dot(x[i], w[j]); mb is a constant
 * at each call (1, 2 or 4), so the accumulators stay in registers. */
static inline __attribute__((always_inline)) void nk_tile(int64_t K, const float *const *x, const int mb,
                                                          const float *const w[NK_NB], float s[4][NK_NB]) {
  __m512 acc[4][NK_NB];
  for (int i = 0; i < mb; i++)
    for (int j = 0; j < NK_NB; j++) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 wv[NK_NB];
    for (int j = 0; j < NK_NB; j++) wv[j] = _mm512_loadu_ps(w[j] + k);
    for (int i = 0; i < mb; i++) {
      const __m512 xv = _mm512_loadu_ps(x[i] + k);
      for (int j = 0; j < NK_NB; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  if (k < K) {
    const __mmask16 mk = (__mmask16)((1u << (K - k)) - 1);
    __m512 wv[NK_NB];
    for (int j = 0; j < NK_NB; j++) wv[j] = _mm512_maskz_loadu_ps(mk, w[j] + k);
    for (int i = 0; i < mb; i++) {
      const __m512 xv = _mm512_maskz_loadu_ps(mk, x[i] + k);
      for (int j = 0; j < NK_NB; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < mb; i++)
    for (int j = 0; j < NK_NB; j++) s[i][j] = _mm512_reduce_add_ps(acc[i][j]);
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
      const float *x[4];
      for (int64_t i = 0; i < 4; i++) x[i] = a + (m0 + i < M ? m0 + i : M - 1) * K;
      float s[4][NK_NB];
      const int mb = M - m0 >= 4 ? 4 : M - m0 >= 2 ? 2 : 1;
      if (mb == 4) nk_tile(K, x, 4, w, s);
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
#else
  gemv_nk(M, N, K, a, b, bias, out);
#endif
  return 1;
}
