/* Reference sigmoid (SigLIP) loss: label y = +1 at column off + i of row i, -1 elsewhere;
 *   loss = -(1/B) sum_ij log sigmoid(y_ij x_ij),  log sigmoid(z) = min(z, 0) - log1p(exp(-|z|));
 *   dlogits_ij += dloss / B * (-y_ij) * sigmoid(-y_ij x_ij). */
#include <math.h>

#include "core/ref/ref.h"

static double log_sigmoid(double z) { return fmin(z, 0.0) - log1p(exp(-fabs(z))); }

static double sigmoid(double z) {
  if (z >= 0) return 1.0 / (1.0 + exp(-z));
  double e = exp(z);
  return e / (1.0 + e);
}

void vlm_ref_sigmoid_loss_forward(vlm_tensor *loss, const vlm_tensor *logits, int64_t off) {
  const int64_t B = logits->shape[0], N = logits->shape[1];
  const float *X = logits->data;
  double total = 0;
  for (int64_t i = 0; i < B; i++)
    for (int64_t j = 0; j < N; j++) {
      double y = j == off + i ? 1.0 : -1.0;
      total -= log_sigmoid(y * (double)X[i * N + j]);
    }
  ((float *)loss->data)[0] = B ? (float)(total / (double)B) : 0.0f;
}

void vlm_ref_sigmoid_loss_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *logits,
                                   int64_t off) {
  const int64_t B = logits->shape[0], N = logits->shape[1];
  if (B == 0) return;
  const float *X = logits->data;
  float *D = dlogits->data;
  const double scale = (double)((const float *)dloss->data)[0] / (double)B;
  for (int64_t i = 0; i < B; i++)
    for (int64_t j = 0; j < N; j++) {
      double y = j == off + i ? 1.0 : -1.0;
      D[i * N + j] += (float)(scale * -y * sigmoid(-y * (double)X[i * N + j]));
    }
}
