/* Learning-rate schedules with open_clip's semantics (training/scheduler.py):
 * linear warmup lr * (step + 1) / warmup, then cosine / constant / constant
 * with a polynomial cooldown. step is 0-based. */
#include <math.h>

#include "core/core.h"

static float warmup_lr(float base_lr, int64_t warmup, int64_t step) {
  return base_lr * (float)(step + 1) / (float)warmup;
}

float vlm_lr_cosine(float base_lr, int64_t warmup, int64_t total, int64_t step) {
  if (step < warmup) return warmup_lr(base_lr, warmup, step);
  double e = (double)(step - warmup), es = (double)(total - warmup);
  if (es <= 0) return 0.0f;
  return (float)(0.5 * (1.0 + cos(3.14159265358979323846 * e / es)) * base_lr);
}

float vlm_lr_const(float base_lr, int64_t warmup, int64_t step) {
  return step < warmup ? warmup_lr(base_lr, warmup, step) : base_lr;
}

float vlm_lr_const_cooldown(float base_lr, int64_t warmup, int64_t total, int64_t step,
                            int64_t cooldown_steps, float cooldown_power, float cooldown_end_lr) {
  if (step < warmup) return warmup_lr(base_lr, warmup, step);
  int64_t start = total - cooldown_steps;
  if (step < start) return base_lr;
  double es = (double)(total - start);
  if (es <= 0) return cooldown_end_lr;
  double decay = pow(1.0 - (double)(step - start) / es, cooldown_power);
  return (float)(decay * (base_lr - cooldown_end_lr) + cooldown_end_lr);
}
