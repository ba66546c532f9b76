/* AdamW (decoupled weight decay), global-norm gradient clipping. */
#include <math.h>

#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

static void check_slots(vlm_param_slot *slots, int n) {
  for (int i = 0; i < n; i++) {
    vlm_param_slot *s = &slots[i];
    VLM_CHECK(s->param && s->grad && s->m && s->v, "adamw: slot %d (%s) lacks a tensor", i,
              s->name ? s->name : "?");
    VLM_CHECK(s->param->dtype == VLM_F32 && s->grad->dtype == VLM_F32 && s->m->dtype == VLM_F32 &&
                  s->v->dtype == VLM_F32,
              "adamw: %s: F32 tensors expected", s->name ? s->name : "?");
    int64_t k = vlm_numel(s->param);
    VLM_CHECK(vlm_numel(s->grad) == k && vlm_numel(s->m) == k && vlm_numel(s->v) == k,
              "adamw: %s: parameter, gradient and moments differ in size", s->name ? s->name : "?");
    vlm_device dev = slots[0].param->device;
    VLM_CHECK(s->param->device == dev && s->grad->device == dev && s->m->device == dev && s->v->device == dev,
              "adamw: %s: all slots' tensors must be on one device", s->name ? s->name : "?");
    VLM_CHECK(vlm_is_contiguous(s->param) && vlm_is_contiguous(s->grad) && vlm_is_contiguous(s->m) &&
                  vlm_is_contiguous(s->v), "adamw: %s: tensors must be contiguous", s->name ? s->name : "?");
  }
}

void vlm_adamw_step(vlm_param_slot *slots, int n, const vlm_adamw_config *c, float lr, int64_t t) {
  VLM_CHECK(t >= 1, "adamw: step count starts at 1, got %lld", (long long)t);
  check_slots(slots, n);
  if (n > 0 && slots[0].param->device == VLM_CUDA) vlm_cuda_adamw_step(slots, n, c, lr, t);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_adamw_step(slots, n, c, lr, t);
  else vlm_cpu_adamw_step(slots, n, c, lr, t);
}

double vlm_grad_norm(vlm_param_slot *slots, int n) {
  double total = 0;
  if (n > 0 && slots[0].grad->device == VLM_CUDA) {
    for (int i = 0; i < n; i++)
      VLM_CHECK(slots[i].grad->device == VLM_CUDA && slots[i].grad->dtype == VLM_F32 && vlm_is_contiguous(slots[i].grad),
                "grad_norm: %s: contiguous F32 gradients on one device expected", slots[i].name ? slots[i].name : "?");
    return sqrt(vlm_cuda_grad_sumsq(slots, n));
  }
  for (int i = 0; i < n; i++) {
    VLM_CHECK(slots[i].grad->device == VLM_CPU, "grad_norm: %s: gradients on different devices",
              slots[i].name ? slots[i].name : "?");
    const float *g = vlm_f32(slots[i].grad);
    int64_t k = vlm_numel(slots[i].grad);
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (k > 32768)
    for (int64_t j = 0; j < k; j++) s += (double)g[j] * g[j];
    total += s;
  }
  return sqrt(total);
}

double vlm_grad_clip(vlm_param_slot *slots, int n, double max_norm, double *coef) {
  double norm = vlm_grad_norm(slots, n);
  double k = 1.0;
  if (max_norm > 0) {
    k = max_norm / (norm + 1e-6);
    if (k > 1.0) k = 1.0;
  }
  if (k < 1.0 && n > 0 && slots[0].grad->device == VLM_CUDA) {
    vlm_cuda_grad_scale(slots, n, (float)k);
  } else if (k < 1.0) {
    float kf = (float)k;
    for (int i = 0; i < n; i++) {
      float *g = vlm_f32(slots[i].grad);
      int64_t m = vlm_numel(slots[i].grad);
#pragma omp parallel for schedule(static) if (m > 32768)
      for (int64_t j = 0; j < m; j++) g[j] *= kf;
    }
  }
  if (coef) *coef = k;
  return norm;
}
