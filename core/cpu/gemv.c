/* Matrix-vector products for the fp32 forward matmul with 1 to 4 rows of a (token-by-token
 * decoding with a KV cache: each step multiplies one row per sequence by every weight
 * matrix). Such a product reads each weight once and does 2 flops per weight and row, so
 * it is bound by memory bandwidth; oneDNN 2.6's f32 matmul reached 12-18 GB/s on these
 * shapes here, a plain streaming loop over the weights ~1.5-2x that (docs/PERFORMANCE.md).
 *
 * out[m, n] = sum_k a[m, k] * b(k, n) + bias[n], with b stored [N, K] (trans_b: each output
 * is a dot product of a row of a with a contiguous row of b) or [K, N] (each row of b is
 * scaled by a[m, k] and added to a block of outputs kept in registers / L1). Threads split
 * the outputs n; every output is summed in one fixed order whatever the thread count, so
 * results do not depend on it. They differ from oneDNN's only by summation order. */
#include "core/cpu/cpu.h"

#define GEMV_MAX_ROWS 4
#define GEMV_BLOCK 256              /* outputs per block in the [K, N] case */
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

/* b [K, N]: out[m, n0:n1] = sum_k a[m, k] * b[k, n0:n1] + bias, block by block. */
static void gemv_kn(int64_t M, int64_t N, int64_t K, const float *a, const float *b, const float *bias, float *out) {
  int64_t nblocks = (N + GEMV_BLOCK - 1) / GEMV_BLOCK;
#pragma omp parallel for schedule(static) if (N * K >= GEMV_PAR_MIN)
  for (int64_t blk = 0; blk < nblocks; blk++) {
    int64_t n0 = blk * GEMV_BLOCK, nn = N - n0 < GEMV_BLOCK ? N - n0 : GEMV_BLOCK;
    float acc[GEMV_MAX_ROWS][GEMV_BLOCK];
    for (int64_t m = 0; m < M; m++)
      for (int64_t j = 0; j < nn; j++) acc[m][j] = 0.0f;
    for (int64_t k = 0; k < K; k++) {
      const float *r = b + k * N + n0;
      for (int64_t m = 0; m < M; m++) {
        float xk = a[m * K + k];
        float *ac = acc[m];
#pragma omp simd
        for (int64_t j = 0; j < nn; j++) ac[j] += xk * r[j];
      }
    }
    for (int64_t m = 0; m < M; m++)
      for (int64_t j = 0; j < nn; j++) out[m * N + n0 + j] = acc[m][j] + (bias ? bias[n0 + j] : 0.0f);
  }
}

int vlm_cpu_gemv_forward(int64_t M, int64_t N, int64_t K, const float *a, const float *b, int trans_b,
                         const float *bias, float *out) {
  if (M < 1 || M > GEMV_MAX_ROWS || N < 1 || K < 1 || N * K < GEMV_PAR_MIN) return 0;
  if (trans_b) gemv_nk(M, N, K, a, b, bias, out);
  else gemv_kn(M, N, K, a, b, bias, out);
  return 1;
}
