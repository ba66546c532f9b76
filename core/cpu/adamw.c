/* Fast AdamW: the reference arithmetic (same operations in the same order, so
 * results are bit-identical to it), parallel over elements and vectorized. */
#include <math.h>

#include "core/cpu/cpu.h"

void vlm_cpu_adamw_step(vlm_param_slot *slots, int n, const vlm_adamw_config *c, float lr, int64_t t) {
  double bc1 = 1.0 - pow(c->beta1, (double)t);
  double bc2 = 1.0 - pow(c->beta2, (double)t);
  const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
  const float b2 = c->beta2, eps = c->eps;
  const float ob1 = 1.0f - c->beta1, ob2 = 1.0f - b2;
  int64_t total = 0;
  for (int s = 0; s < n; s++) total += vlm_numel(slots[s].param);
  /* One parallel region for all the tensors (a small model has ~130, most too small
   * for a region of their own); each tensor's elements are split between the threads
   * and nobody waits at its end. */
#pragma omp parallel if (total > 32768)
  for (int s = 0; s < n; s++) {
    float *restrict p = vlm_f32(slots[s].param);
    const float *restrict g = vlm_f32(slots[s].grad);
    float *restrict m = vlm_f32(slots[s].m);
    float *restrict v = vlm_f32(slots[s].v);
    const float decay = slots[s].decay ? 1.0f - lr * c->weight_decay : 1.0f;
    int64_t k = vlm_numel(slots[s].param);
#pragma omp for simd schedule(static) nowait
    for (int64_t i = 0; i < k; i++) {
      float pi = p[i] * decay;
      float mi = m[i] + ob1 * (g[i] - m[i]);
      float vi = b2 * v[i] + ob2 * g[i] * g[i];
      m[i] = mi;
      v[i] = vi;
      p[i] = pi - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
  }
}
