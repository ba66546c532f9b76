/* Reference LayerNorm over the last dim (biased variance, as PyTorch):
 *   mean = sum(x)/C, var = sum((x-mean)^2)/C, rstd = 1/sqrt(var+eps),
 *   xhat = (x-mean)*rstd, out = xhat*w + b.
 * Backward with g = dout*w:
 *   dx = rstd * (g - mean(g) - xhat*mean(g*xhat)),
 *   dw = sum_rows dout*xhat, db = sum_rows dout. */
#include <math.h>
#include <stdlib.h>

#include "core/ref/ref.h"

void vlm_ref_layernorm_forward(vlm_tensor *out, vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *x,
                               const vlm_tensor *w, const vlm_tensor *b, float eps) {
  int64_t R = vlm_rows(x), C = vlm_cols(x);
  const float *X = x->data, *W = w->data, *B = b->data;
  float *Y = out->dtype == VLM_F32 ? out->data : NULL;   /* else BF16: rounded once */
  uint16_t *Yh = out->dtype == VLM_BF16 ? out->data : NULL;
  for (int64_t r = 0; r < R; r++) {
    const float *xr = X + r * C;
    double s = 0;
    for (int64_t c = 0; c < C; c++) s += xr[c];
    double m = C ? s / (double)C : 0.0;
    double v = 0;
    for (int64_t c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
    double var = C ? v / (double)C : 0.0;
    double rs = 1.0 / sqrt(var + (double)eps);
    for (int64_t c = 0; c < C; c++) {
      float y = (float)((xr[c] - m) * rs * W[c] + B[c]);
      if (Y) Y[r * C + c] = y;
      else Yh[r * C + c] = vlm_f32_to_bf16(y);
    }
    if (mean) ((float *)mean->data)[r] = (float)m;
    if (rstd) ((float *)rstd->data)[r] = (float)rs;
  }
}

void vlm_ref_layernorm_backward(vlm_tensor *dx, vlm_tensor *dw, vlm_tensor *db, const vlm_tensor *dout,
                                const vlm_tensor *x, const vlm_tensor *w, const vlm_tensor *mean,
                                const vlm_tensor *rstd) {
  int64_t R = vlm_rows(x), C = vlm_cols(x);
  const float *X = x->data, *W = w->data, *G = dout->data, *M = mean->data, *S = rstd->data;
  double *acc_w = calloc((size_t)(C > 0 ? C : 1), sizeof(double));
  double *acc_b = calloc((size_t)(C > 0 ? C : 1), sizeof(double));
  VLM_CHECK(acc_w && acc_b, "layernorm: out of memory");
  for (int64_t r = 0; r < R; r++) {
    const float *xr = X + r * C, *gr = G + r * C;
    double m = M[r], rs = S[r];
    double sum_g = 0, sum_gx = 0;
    for (int64_t c = 0; c < C; c++) {
      double xhat = (xr[c] - m) * rs;
      double g = (double)gr[c] * W[c];
      sum_g += g;
      sum_gx += g * xhat;
      acc_w[c] += gr[c] * xhat;
      acc_b[c] += gr[c];
    }
    if (dx) {
      float *d = (float *)dx->data + r * C;
      for (int64_t c = 0; c < C; c++) {
        double xhat = (xr[c] - m) * rs;
        double g = (double)gr[c] * W[c];
        d[c] += (float)(rs * (g - sum_g / (double)C - xhat * sum_gx / (double)C));
      }
    }
  }
  for (int64_t c = 0; c < C; c++) {
    if (dw) ((float *)dw->data)[c] += (float)acc_w[c];
    if (db) ((float *)db->data)[c] += (float)acc_b[c];
  }
  free(acc_w);
  free(acc_b);
}
