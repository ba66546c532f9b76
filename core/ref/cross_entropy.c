/* Reference cross-entropy with an ignore index:
 *   probs = softmax(logits) (every row),
 *   loss = sum over kept rows of (logsumexp(logits_i) - logits_i[t_i]) / count,
 *   count = rows whose target is not ignore_index (loss 0 when count is 0).
 * Backward: dlogits_i += dloss * (probs_i - onehot(t_i)) / count for kept rows. */
#include <math.h>

#include "core/ref/ref.h"

static int keep_row(const vlm_tensor *targets, int64_t i, int64_t C, int64_t ignore_index, int64_t *t) {
  *t = vlm_ref_id_at(targets, i);
  if (*t == ignore_index) return 0;
  VLM_CHECK(*t >= 0 && *t < C, "cross_entropy: target %lld of row %lld is outside [0, %lld) and is not the "
            "ignore index %lld", (long long)*t, (long long)i, (long long)C, (long long)ignore_index);
  return 1;
}

void vlm_ref_cross_entropy_forward(vlm_tensor *loss, vlm_tensor *probs, const vlm_tensor *logits,
                                   const vlm_tensor *targets, int64_t ignore_index) {
  int64_t N = logits->shape[0], C = logits->shape[1];
  const float *X = logits->data;
  float *P = probs->data;
  double total = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < N; i++) {
    const float *xr = X + i * C;
    double m = -INFINITY;
    for (int64_t c = 0; c < C; c++)
      if (xr[c] > m) m = xr[c];
    double s = 0;
    for (int64_t c = 0; c < C; c++) s += exp(xr[c] - m);
    for (int64_t c = 0; c < C; c++) P[i * C + c] = (float)(exp(xr[c] - m) / s);
    int64_t t;
    if (!keep_row(targets, i, C, ignore_index, &t)) continue;
    total += m + log(s) - xr[t];
    count++;
  }
  ((float *)loss->data)[0] = count ? (float)(total / (double)count) : 0.0f;
}

void vlm_ref_cross_entropy_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *probs,
                                    const vlm_tensor *targets, int64_t ignore_index) {
  int64_t N = probs->shape[0], C = probs->shape[1];
  const float *P = probs->data;
  float *D = dlogits->data;
  int64_t count = 0, t;
  for (int64_t i = 0; i < N; i++) count += keep_row(targets, i, C, ignore_index, &t);
  if (count == 0) return;
  double scale = (double)((const float *)dloss->data)[0] / (double)count;
  for (int64_t i = 0; i < N; i++) {
    if (!keep_row(targets, i, C, ignore_index, &t)) continue;
    for (int64_t c = 0; c < C; c++) D[i * C + c] += (float)(scale * ((double)P[i * C + c] - (c == t ? 1.0 : 0.0)));
  }
}
