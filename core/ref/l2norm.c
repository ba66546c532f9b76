/* Reference L2 normalization over the last dim, as torch.nn.functional.normalize:
 *   n = ||x||, y = x / max(n, eps); norm saves n (unclamped).
 * Backward (clamp_min passes the gradient where n >= eps, like PyTorch):
 *   n >= eps: dx = dy/n - x (x.dy)/n^3;   n < eps: dx = dy/eps. */
#include <math.h>

#include "core/ref/ref.h"

void vlm_ref_l2norm_forward(vlm_tensor *y, vlm_tensor *norm, const vlm_tensor *x, float eps) {
  int64_t R = vlm_rows(x), C = vlm_cols(x);
  const float *X = x->data;
  float *Y = y->data;
  for (int64_t r = 0; r < R; r++) {
    const float *xr = X + r * C;
    double ss = 0;
    for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
    double n = sqrt(ss);
    double d = n > eps ? n : (double)eps;
    for (int64_t c = 0; c < C; c++) Y[r * C + c] = (float)(xr[c] / d);
    if (norm) ((float *)norm->data)[r] = (float)n;
  }
}

void vlm_ref_l2norm_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *x,
                             const vlm_tensor *norm, float eps) {
  int64_t R = vlm_rows(x), C = vlm_cols(x);
  const float *X = x->data, *G = dy->data, *N = norm->data;
  float *D = dx->data;
  for (int64_t r = 0; r < R; r++) {
    const float *xr = X + r * C, *gr = G + r * C;
    double n = N[r];
    if (n >= eps) {
      double dot = 0;
      for (int64_t c = 0; c < C; c++) dot += (double)xr[c] * gr[c];
      for (int64_t c = 0; c < C; c++) D[r * C + c] += (float)(gr[c] / n - xr[c] * dot / (n * n * n));
    } else {
      for (int64_t c = 0; c < C; c++) D[r * C + c] += (float)(gr[c] / eps);
    }
  }
}
