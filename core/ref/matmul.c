/* Reference matmul: out[M,N] = op(a) @ op(b) (+ bias), and its backward.
 *
 * The operands are first copied into dense f32 matrices in the orientation the
 * math wants (op(a) as [M,K], op(b) transposed as [N,K]), rounded to bf16 when
 * the precision says so; then every output element is one dot product summed
 * in double. The bias and the bias gradient are never rounded. */
#include "core/ref/ref.h"

#include <stdlib.h>

/* Rows of a [*,K] tensor: the product of its leading dims (also when K = 0). */
static int64_t lead_rows(const vlm_tensor *t) {
  int64_t r = 1;
  for (int i = 0; i + 1 < t->ndim; i++) r *= t->shape[i];
  return r;
}

static float *ref_alloc(int64_t n) {
  float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  VLM_CHECK(p, "matmul (ref): out of memory for %lld floats", (long long)n);
  return p;
}

/* Element i of a contiguous F32 or BF16 tensor, rounded to bf16 in bf16 precision. */
static float load(const vlm_tensor *t, int64_t i, vlm_precision prec) {
  float v = t->dtype == VLM_BF16 ? vlm_bf16_to_f32(((const uint16_t *)t->data)[i])
                                 : ((const float *)t->data)[i];
  return prec == VLM_PREC_BF16 ? vlm_round_bf16(v) : v;
}

/* dst[r][c] = X[r][c] for the logical [R,C] matrix X stored in t, either as
 * [R,C] (transposed == 0) or as [C,R] (transposed == 1). */
static void dense(float *dst, const vlm_tensor *t, int64_t R, int64_t C, int transposed,
                  vlm_precision prec) {
  for (int64_t r = 0; r < R; r++)
    for (int64_t c = 0; c < C; c++)
      dst[r * C + c] = load(t, transposed ? c * R + r : r * C + c, prec);
}

static double dot(const float *x, const float *y, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)x[i] * (double)y[i];
  return s;
}

static void dims(const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b, int64_t *M,
                 int64_t *N, int64_t *K) {
  *M = trans_a ? a->shape[1] : lead_rows(a);
  *K = trans_a ? a->shape[0] : vlm_cols(a);
  *N = trans_b ? b->shape[0] : b->shape[1];
}

void vlm_ref_matmul_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b,
                            const vlm_tensor *bias, int trans_a, int trans_b, vlm_precision prec) {
  int64_t M, N, K;
  dims(a, b, trans_a, trans_b, &M, &N, &K);
  float *A = ref_alloc(M * K);   /* op(a)   [M,K] */
  float *Bt = ref_alloc(N * K);  /* op(b)^T [N,K] */
  dense(A, a, M, K, trans_a, prec);
  dense(Bt, b, N, K, !trans_b, prec);
  float *o = vlm_f32(out);
  const float *bs = bias ? vlm_f32(bias) : NULL;
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++)
      o[m * N + n] = (float)(dot(A + m * K, Bt + n * K, K) + (bs ? bs[n] : 0.0));
  free(A);
  free(Bt);
}

/* With A = op(a) [M,K], B = op(b) [K,N], G = dout [M,N]:
 *   dA = G @ B^T  (dA[m][k] = sum_n G[m][n] B[k][n]),
 *   dB = A^T @ G  (dB[k][n] = sum_m A[m][k] G[m][n]),
 *   dbias[n] = sum_m G[m][n],
 * each added into the gradient stored in the layout of its input. */
void vlm_ref_matmul_backward(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                             const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b,
                             vlm_precision prec) {
  int64_t M, N, K;
  dims(a, b, trans_a, trans_b, &M, &N, &K);
  if (da) {
    float *G = ref_alloc(M * N);  /* G [M,N] */
    float *B = ref_alloc(K * N);  /* B [K,N] */
    dense(G, dout, M, N, 0, prec);
    dense(B, b, K, N, trans_b, prec);
    float *g = vlm_f32(da);
    for (int64_t m = 0; m < M; m++)
      for (int64_t k = 0; k < K; k++)
        g[trans_a ? k * M + m : m * K + k] += (float)dot(G + m * N, B + k * N, N);
    free(G);
    free(B);
  }
  if (db) {
    float *Gt = ref_alloc(N * M);  /* G^T [N,M] */
    float *At = ref_alloc(K * M);  /* A^T [K,M] */
    dense(Gt, dout, N, M, 1, prec);
    dense(At, a, K, M, !trans_a, prec);
    float *g = vlm_f32(db);
    for (int64_t k = 0; k < K; k++)
      for (int64_t n = 0; n < N; n++)
        g[trans_b ? n * K + k : k * N + n] += (float)dot(At + k * M, Gt + n * M, M);
    free(Gt);
    free(At);
  }
  if (dbias) {
    const float *G = vlm_f32(dout);
    float *g = vlm_f32(dbias);
    for (int64_t n = 0; n < N; n++) {
      double s = 0;
      for (int64_t m = 0; m < M; m++) s += G[m * N + n];
      g[n] += (float)s;
    }
  }
}

/* out = act(a @ w^T + bias) + residual: the reference matmul, then the
 * reference activation, then the residual, each rounded to f32 as the unfused
 * ops would, and a final rounding to bf16 when out is BF16. */
void vlm_ref_linear_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *w, const vlm_tensor *bias,
                            const vlm_act *act, const vlm_tensor *residual, vlm_precision prec) {
  int64_t M, N, K;
  dims(a, w, 0, 1, &M, &N, &K);
  float *y = ref_alloc(M * N);
  int64_t shape[2] = {M, N};
  vlm_tensor t = vlm_tensor_make(y, VLM_F32, VLM_CPU, 2, shape);
  vlm_ref_matmul_forward(&t, a, w, bias, 0, 1, prec);
  if (act) vlm_ref_act_forward(*act, &t, &t);
  if (residual) {
    const float *r = vlm_f32(residual);
    for (int64_t i = 0; i < M * N; i++) y[i] = y[i] + r[i];
  }
  if (out->dtype == VLM_BF16) vlm_f32_to_bf16_array(out->data, y, (size_t)(M * N));
  else for (int64_t i = 0; i < M * N; i++) ((float *)out->data)[i] = y[i];
  free(y);
}
