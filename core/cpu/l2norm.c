/* Fast L2 normalization: OpenMP over rows, vectorized row loops. */
#include <math.h>

#include "core/cpu/cpu.h"

#define L2_PAR_MIN 32768 /* elements */

void vlm_cpu_l2norm_forward(vlm_tensor *y, vlm_tensor *norm, const vlm_tensor *x, float eps) {
  const int64_t R = vlm_rows(x), C = vlm_cols(x);
  const float *X = x->data; /* y may alias x */
  float *Y = y->data;
  float *N = norm ? norm->data : NULL;
#pragma omp parallel for schedule(static) if (R * C > L2_PAR_MIN)
  for (int64_t r = 0; r < R; r++) {
    const float *xr = X + r * C;
    float *yr = Y + r * C;
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; c++) ss += xr[c] * xr[c];
    const float n = (float)sqrt(ss);
    const float inv = 1.0f / (n > eps ? n : eps);
#pragma omp simd
    for (int64_t c = 0; c < C; c++) yr[c] = xr[c] * inv;
    if (N) N[r] = n;
  }
}

void vlm_cpu_l2norm_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *x,
                             const vlm_tensor *norm, float eps) {
  const int64_t R = vlm_rows(x), C = vlm_cols(x);
  const float *restrict X = x->data;
  const float *restrict G = dy->data;
  const float *restrict N = norm->data;
  float *restrict D = dx->data;
#pragma omp parallel for schedule(static) if (R * C > L2_PAR_MIN)
  for (int64_t r = 0; r < R; r++) {
    const float *restrict xr = X + r * C;
    const float *restrict gr = G + r * C;
    float *restrict dr = D + r * C;
    const float n = N[r];
    if (n >= eps) {
      double dot_d = 0.0;
#pragma omp simd reduction(+ : dot_d)
      for (int64_t c = 0; c < C; c++) dot_d += xr[c] * gr[c];
      const float dot = (float)dot_d;
      const float inv = 1.0f / n;
      const float k = ((dot * inv) * inv) * inv; /* this order stays in range for huge or tiny n */
#pragma omp simd
      for (int64_t c = 0; c < C; c++) dr[c] += gr[c] * inv - xr[c] * k;
    } else {
      const float inv = 1.0f / eps;
#pragma omp simd
      for (int64_t c = 0; c < C; c++) dr[c] += gr[c] * inv;
    }
  }
}
