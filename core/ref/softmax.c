/* Reference softmax over the last dim: y = exp(x - max) / sum exp(x - max).
 * A row with no finite maximum (all -inf) gives zeros instead of NaN.
 * Backward: dx = y * (dy - sum(dy * y)). */
#include <math.h>

#include "core/ref/ref.h"

void vlm_ref_softmax_forward(vlm_tensor *y, const vlm_tensor *x) {
  int64_t R = vlm_rows(x), C = vlm_cols(x);
  const float *X = x->data;
  float *Y = y->data;
  for (int64_t r = 0; r < R; r++) {
    const float *xr = X + r * C;
    float *yr = Y + r * C;
    double m = -INFINITY;
    for (int64_t c = 0; c < C; c++)
      if (xr[c] > m) m = xr[c];
    if (m == -INFINITY) {
      for (int64_t c = 0; c < C; c++) yr[c] = 0.0f;
      continue;
    }
    double s = 0;
    for (int64_t c = 0; c < C; c++) s += exp(xr[c] - m);
    for (int64_t c = 0; c < C; c++) yr[c] = (float)(exp(xr[c] - m) / s);
  }
}

void vlm_ref_softmax_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *y) {
  int64_t R = vlm_rows(y), C = vlm_cols(y);
  const float *Y = y->data, *G = dy->data;
  float *D = dx->data;
  for (int64_t r = 0; r < R; r++) {
    const float *yr = Y + r * C, *gr = G + r * C;
    double dot = 0;
    for (int64_t c = 0; c < C; c++) dot += (double)yr[c] * gr[c];
    for (int64_t c = 0; c < C; c++) D[r * C + c] += (float)(yr[c] * (gr[c] - dot));
  }
}
