/* Fast cross-entropy: OpenMP over rows (static schedule). The loss is summed
 * per thread in double and the partials are added in thread order, so the
 * result is deterministic for a fixed thread count (no reduction clause, whose
 * combining order OpenMP leaves open). expf goes through libmvec (see act.c). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/ref/ref.h"

#define CE_PAR_MIN 16384 /* elements of logits */

/* Targets are validated serially up front; returns the number of kept rows. */
static int64_t count_kept(const vlm_tensor *targets, int64_t N, int64_t C, int64_t ignore_index) {
  int64_t count = 0;
  for (int64_t i = 0; i < N; i++) {
    int64_t t = vlm_ref_id_at(targets, i);
    if (t == ignore_index) continue;
    VLM_CHECK(t >= 0 && t < C, "cross_entropy: target %lld of row %lld is outside [0, %lld) and is not the "
              "ignore index %lld", (long long)t, (long long)i, (long long)C, (long long)ignore_index);
    count++;
  }
  return count;
}

static inline int64_t target_at(const void *T, int is64, int64_t i) {
  return is64 ? ((const int64_t *)T)[i] : (int64_t)((const int32_t *)T)[i];
}

void vlm_cpu_cross_entropy_forward(vlm_tensor *loss, vlm_tensor *probs, const vlm_tensor *logits,
                                   const vlm_tensor *targets, int64_t ignore_index) {
  const int64_t N = logits->shape[0], C = logits->shape[1];
  const int64_t count = count_kept(targets, N, C, ignore_index);
  const float *restrict X = logits->data;
  float *restrict P = probs->data;
  const void *T = targets->data;
  const int is64 = targets->dtype == VLM_I64;
  const int par = N * C > CE_PAR_MIN;
  const int nt = par ? omp_get_max_threads() : 1;
  double *partial = vlm_scratch(0, (size_t)nt * sizeof(double));
  memset(partial, 0, (size_t)nt * sizeof(double));
#pragma omp parallel num_threads(nt) if (par)
  {
    double acc = 0.0;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < N; i++) {
      const float *restrict xr = X + i * C;
      float *restrict pr = P + i * C;
      float m = -INFINITY;
#pragma omp simd reduction(max : m)
      for (int64_t c = 0; c < C; c++) m = xr[c] > m ? xr[c] : m;
      double s = 0.0; /* double: rows are as long as the vocabulary */
#pragma omp simd SIMDLEN16 reduction(+ : s)
      for (int64_t c = 0; c < C; c++) {
        float e = expf(xr[c] - m);
        pr[c] = e;
        s += e;
      }
      const float inv = (float)(1.0 / s);
#pragma omp simd
      for (int64_t c = 0; c < C; c++) pr[c] *= inv;
      const int64_t t = target_at(T, is64, i);
      if (t != ignore_index) acc += (double)m + log(s) - (double)xr[t];
    }
    partial[omp_get_thread_num()] = acc;
  }
  double total = 0.0;
  for (int t = 0; t < nt; t++) total += partial[t];
  ((float *)loss->data)[0] = count ? (float)(total / (double)count) : 0.0f;
}

void vlm_cpu_cross_entropy_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *probs,
                                    const vlm_tensor *targets, int64_t ignore_index) {
  const int64_t N = probs->shape[0], C = probs->shape[1];
  const int64_t count = count_kept(targets, N, C, ignore_index);
  if (count == 0) return;
  const float scale = (float)((double)((const float *)dloss->data)[0] / (double)count);
  const float *restrict P = probs->data;
  float *restrict D = dlogits->data;
  const void *T = targets->data;
  const int is64 = targets->dtype == VLM_I64;
#pragma omp parallel for schedule(static) if (N * C > CE_PAR_MIN)
  for (int64_t i = 0; i < N; i++) {
    const int64_t t = target_at(T, is64, i);
    if (t == ignore_index) continue;
    const float *restrict pr = P + i * C;
    float *restrict dr = D + i * C;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) dr[c] += scale * pr[c];
    dr[t] -= scale;
  }
}
