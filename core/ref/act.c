/* Reference activations, in double:
 *   GELU(x)      = 0.5 x (1 + erf(x/sqrt 2)),
 *   GELU'(x)     = 0.5 (1 + erf(x/sqrt 2)) + x exp(-x^2/2) / sqrt(2 pi);
 * (1 + erf(z) is evaluated as erfc(-z), which keeps the negative tail accurate)
 *   QuickGELU(x) = x s with s = sigmoid(1.702 x),
 *   QuickGELU'   = s + 1.702 x s (1 - s). */
#include <math.h>

#include "core/ref/ref.h"

static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

void vlm_ref_act_forward(vlm_act act, vlm_tensor *out, const vlm_tensor *x) {
  int64_t n = vlm_numel(x);
  const float *X = x->data;
  float *Y = out->data;
  uint16_t *Yh = out->data; /* out BF16: each value rounded once */
  for (int64_t i = 0; i < n; i++) {
    double v = X[i];
    float y = act == VLM_ACT_GELU ? (float)(0.5 * v * erfc(-v / sqrt(2.0))) : (float)(v * sigmoid(1.702 * v));
    if (out->dtype == VLM_BF16) Yh[i] = vlm_f32_to_bf16(y);
    else Y[i] = y;
  }
}

void vlm_ref_act_backward(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x) {
  int64_t n = vlm_numel(x);
  const float *X = x->data, *G = dout->data;
  float *D = dx->data;
  const double pi = 3.14159265358979323846;
  for (int64_t i = 0; i < n; i++) {
    double v = X[i], d;
    if (act == VLM_ACT_GELU) {
      d = 0.5 * erfc(-v / sqrt(2.0)) + v * exp(-0.5 * v * v) / sqrt(2.0 * pi);
    } else {
      double s = sigmoid(1.702 * v);
      d = s + 1.702 * v * s * (1.0 - s);
    }
    D[i] += (float)(G[i] * d);
  }
}
