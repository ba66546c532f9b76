/* Matrix-vector products for the fp32 forward matmul with one row of a and weights
 * stored [N, K] (a Linear layer's layout), as in token-by-token decoding of one sequence
 * with a KV cache. Such a product reads each weight once and does 2 flops per weight, so
 * it is bound by memory bandwidth; oneDNN 2.6's f32 matmul primitive streamed 18-22 GB/s
 * on the CoCa ViT-B/32 decoder's shapes here, this loop 23-28 GB/s (docs/PERFORMANCE.md).
 * With more rows oneDNN catches up (2 rows: a tie) and wins (4 rows: cached decoding of
 * 4 images 1380 ms through oneDNN against 1550-1600 through this loop), so it takes 1 row.
 * Weights stored [K, N] (the vocabulary projection) stay with oneDNN: its sgemm streamed
 * them at ~30 GB/s, a blocked loop here at ~19.
 *
 * out[m, n] = dot(a[m, :], b[n, :]) + bias[n]. Threads split the outputs n; every output is
 * summed in one fixed order whatever the thread count, so results do not depend on it. They
 * differ from oneDNN's only by summation order. */
#include "core/cpu/cpu.h"

#define GEMV_MAX_ROWS 1
#define GEMV_PAR_MIN (1 << 16)      /* weights below which one thread is faster */

/* b [N, K]: out[m, n] = dot(a[m, :], b[n, :]) + bias[n]. */
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

int vlm_cpu_gemv_forward(int64_t M, int64_t N, int64_t K, const float *a, const float *b, int trans_b,
                         const float *bias, float *out) {
  if (!trans_b || M < 1 || M > GEMV_MAX_ROWS || N < 1 || K < 1 || N * K < GEMV_PAR_MIN) return 0;
  gemv_nk(M, N, K, a, b, bias, out);
  return 1;
}
