/* Fast sigmoid (SigLIP) loss: OpenMP over rows (static schedule), every row's
 * negatives first as one vectorizable loop, then its positive corrected. The loss
 * is summed per thread in double and the partials added in thread order
 * (deterministic for a fixed thread count, as cross_entropy.c). expf / log1pf go
 * through libmvec where glibc has them (see act.c). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/cpu/cpu.h"

#define SL_PAR_MIN 16384 /* elements of logits */

/* -log sigmoid(z) = max(-z, 0) + log1p(exp(-|z|)) */
static inline float neg_log_sigmoid(float z) { return fmaxf(-z, 0.0f) + log1pf(expf(-fabsf(z))); }

/* sigmoid(z) without overflow: e = exp(-|z|), z >= 0: 1 / (1 + e), else e / (1 + e) */
static inline float sigmoidf_stable(float z) {
  float e = expf(-fabsf(z));
  return (z >= 0.0f ? 1.0f : e) / (1.0f + e);
}

void vlm_cpu_sigmoid_loss_forward(vlm_tensor *loss, const vlm_tensor *logits, int64_t off) {
  const int64_t B = logits->shape[0], N = logits->shape[1];
  const float *restrict X = logits->data;
  const int par = B * N > SL_PAR_MIN;
  const int nt = par ? omp_get_max_threads() : 1;
  double *partial = vlm_scratch(0, (size_t)nt * sizeof(double));
  memset(partial, 0, (size_t)nt * sizeof(double));
#pragma omp parallel num_threads(nt) if (par)
  {
    double acc = 0.0;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < B; i++) {
      const float *restrict xr = X + i * N;
      double s = 0.0;
      /* every column as a negative (label -1): -log sigmoid(-x) */
#pragma omp simd SIMDLEN16 reduction(+ : s)
      for (int64_t j = 0; j < N; j++) s += neg_log_sigmoid(-xr[j]);
      const float xp = xr[off + i];   /* the positive: label +1 */
      s += (double)neg_log_sigmoid(xp) - (double)neg_log_sigmoid(-xp);
      acc += s;
    }
    partial[omp_get_thread_num()] = acc;
  }
  double total = 0.0;
  for (int t = 0; t < nt; t++) total += partial[t];
  ((float *)loss->data)[0] = B ? (float)(total / (double)B) : 0.0f;
}

void vlm_cpu_sigmoid_loss_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *logits,
                                   int64_t off) {
  const int64_t B = logits->shape[0], N = logits->shape[1];
  if (B == 0) return;
  const float scale = (float)((double)((const float *)dloss->data)[0] / (double)B);
  const float *restrict X = logits->data;
  float *restrict D = dlogits->data;
#pragma omp parallel for schedule(static) if (B * N > SL_PAR_MIN)
  for (int64_t i = 0; i < B; i++) {
    const float *restrict xr = X + i * N;
    float *restrict dr = D + i * N;
    const int64_t p = off + i;
    const float dp = dr[p];
    /* negatives: d/dx -log sigmoid(-x) = sigmoid(x) */
#pragma omp simd SIMDLEN16
    for (int64_t j = 0; j < N; j++) dr[j] += scale * sigmoidf_stable(xr[j]);
    /* the positive, in place of the negative's term: d/dx -log sigmoid(x) = -sigmoid(-x) */
    dr[p] = dp + scale * -sigmoidf_stable(-xr[p]);
  }
}
