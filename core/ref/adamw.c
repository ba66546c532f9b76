/* Reference AdamW, written as open_clip / torch.optim.AdamW computes it. */
#include <math.h>

#include "core/ref/ref.h"

void vlm_ref_adamw_step(vlm_param_slot *slots, int n, const vlm_adamw_config *c, float lr, int64_t t) {
  double bc1 = 1.0 - pow(c->beta1, (double)t);
  double bc2 = 1.0 - pow(c->beta2, (double)t);
  float step_size = (float)(lr / bc1);
  float bc2_sqrt = (float)sqrt(bc2);
  for (int s = 0; s < n; s++) {
    float *p = vlm_f32(slots[s].param), *g = vlm_f32(slots[s].grad);
    float *m = vlm_f32(slots[s].m), *v = vlm_f32(slots[s].v);
    float decay = slots[s].decay ? 1.0f - lr * c->weight_decay : 1.0f;
    int64_t k = vlm_numel(slots[s].param);
    for (int64_t i = 0; i < k; i++) {
      p[i] *= decay;
      m[i] = m[i] + (1.0f - c->beta1) * (g[i] - m[i]); /* torch: exp_avg.lerp_(g, 1-b1) */
      v[i] = c->beta2 * v[i] + (1.0f - c->beta2) * g[i] * g[i];
      float denom = sqrtf(v[i]) / bc2_sqrt + c->eps;
      p[i] -= step_size * m[i] / denom;
    }
  }
}
