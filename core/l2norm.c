/* L2-normalize dispatcher (torch.nn.functional.normalize over the last dim). */
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

static void need(const vlm_tensor *t, const char *name, const vlm_tensor *x) {
  char s[128];
  VLM_CHECK(t != NULL, "l2norm: %s is NULL", name);
  VLM_CHECK(t->dtype == VLM_F32, "l2norm: %s must be F32, got %s", name, vlm_shape_str(t, s, sizeof s));
  VLM_CHECK(vlm_is_contiguous(t), "l2norm: %s must be contiguous", name);
  VLM_CHECK(t->device == x->device, "l2norm: %s is on another device than x", name);
}

static void need_like_x(const vlm_tensor *t, const char *name, const vlm_tensor *x) {
  char s[128], sx[128];
  need(t, name, x);
  VLM_CHECK(vlm_same_shape(t, x), "l2norm: %s is %s, x is %s", name, vlm_shape_str(t, s, sizeof s),
            vlm_shape_str(x, sx, sizeof sx));
}

static void need_rows(const vlm_tensor *t, const char *name, const vlm_tensor *x) {
  char s[128];
  need(t, name, x);
  VLM_CHECK(vlm_numel(t) == vlm_rows(x), "l2norm: %s is %s, expected %lld elements (rows of x)", name,
            vlm_shape_str(t, s, sizeof s), (long long)vlm_rows(x));
}

void vlm_l2norm_forward(vlm_tensor *y, vlm_tensor *norm, const vlm_tensor *x, float eps) {
  VLM_CHECK(x != NULL && x->ndim >= 1, "l2norm: x must have at least one dim");
  need(x, "x", x);
  need_like_x(y, "y", x);
  if (norm) need_rows(norm, "norm", x);
  VLM_CHECK(eps > 0.0f, "l2norm: eps must be > 0, got %g", (double)eps);
  if (x->device == VLM_CUDA) vlm_cuda_l2norm_forward(y, norm, x, eps);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_l2norm_forward(y, norm, x, eps);
  else vlm_cpu_l2norm_forward(y, norm, x, eps);
}

void vlm_l2norm_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *x, const vlm_tensor *norm,
                         float eps) {
  VLM_CHECK(x != NULL && x->ndim >= 1, "l2norm: x must have at least one dim");
  need(x, "x", x);
  need_like_x(dy, "dy", x);
  need_rows(norm, "norm", x);
  VLM_CHECK(eps > 0.0f, "l2norm: eps must be > 0, got %g", (double)eps);
  if (!dx) return;
  need_like_x(dx, "dx", x);
  if (x->device == VLM_CUDA) vlm_cuda_l2norm_backward(dx, dy, x, norm, eps);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_l2norm_backward(dx, dy, x, norm, eps);
  else vlm_cpu_l2norm_backward(dx, dy, x, norm, eps);
}
