/* Fast softmax over the last dim: OpenMP over rows, vectorized row loops
 * (expf through glibc's libmvec, see core/cpu/act.c). */
#include <math.h>

#include "core/cpu/cpu.h"

#define SM_PAR_MIN 16384 /* elements */

void vlm_cpu_softmax_forward(vlm_tensor *y, const vlm_tensor *x) {
  const int64_t R = vlm_rows(x), C = vlm_cols(x);
  const float *X = x->data;
  float *Y = y->data;
#pragma omp parallel for schedule(static) if (R * C > SM_PAR_MIN)
  for (int64_t r = 0; r < R; r++) {
    const float *xr = X + r * C;
    float *yr = Y + r * C;
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t c = 0; c < C; c++) m = xr[c] > m ? xr[c] : m;
    if (m == -INFINITY) {
      for (int64_t c = 0; c < C; c++) yr[c] = 0.0f;
      continue;
    }
    double s = 0.0; /* double: rows may be long (a 49408-token vocabulary) */
#pragma omp simd SIMDLEN16 reduction(+ : s)
    for (int64_t c = 0; c < C; c++) {
      float e = expf(xr[c] - m);
      yr[c] = e;
      s += e;
    }
    const float inv = (float)(1.0 / s);
#pragma omp simd
    for (int64_t c = 0; c < C; c++) yr[c] *= inv;
  }
}

void vlm_cpu_softmax_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *y) {
  const int64_t R = vlm_rows(y), C = vlm_cols(y);
  const float *restrict Y = y->data;
  const float *restrict G = dy->data;
  float *restrict D = dx->data;
#pragma omp parallel for schedule(static) if (R * C > SM_PAR_MIN)
  for (int64_t r = 0; r < R; r++) {
    const float *restrict yr = Y + r * C;
    const float *restrict gr = G + r * C;
    float *restrict dr = D + r * C;
    double dot = 0.0;
#pragma omp simd reduction(+ : dot)
    for (int64_t c = 0; c < C; c++) dot += yr[c] * gr[c];
    const float d = (float)dot;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) dr[c] += yr[c] * (gr[c] - d);
  }
}
