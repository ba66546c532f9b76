/* Softmax dispatcher: over the last dim of any shape. */
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

static void need_like(const vlm_tensor *t, const char *name, const vlm_tensor *x, const char *xname) {
  char s[128], sx[128];
  VLM_CHECK(t != NULL, "softmax: %s is NULL", name);
  VLM_CHECK(t->dtype == VLM_F32, "softmax: %s must be F32, got %s", name, vlm_shape_str(t, s, sizeof s));
  VLM_CHECK(vlm_is_contiguous(t), "softmax: %s must be contiguous", name);
  VLM_CHECK(t->device == x->device, "softmax: %s is on another device than %s", name, xname);
  VLM_CHECK(vlm_same_shape(t, x), "softmax: %s is %s, %s is %s", name, vlm_shape_str(t, s, sizeof s), xname,
            vlm_shape_str(x, sx, sizeof sx));
}

void vlm_softmax_forward(vlm_tensor *y, const vlm_tensor *x) {
  VLM_CHECK(x != NULL && x->ndim >= 1, "softmax: x must have at least one dim");
  need_like(x, "x", x, "x");
  need_like(y, "y", x, "x");
  if (x->device == VLM_CUDA) vlm_cuda_softmax_forward(y, x);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_softmax_forward(y, x);
  else vlm_cpu_softmax_forward(y, x);
}

void vlm_softmax_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *y) {
  VLM_CHECK(y != NULL && y->ndim >= 1, "softmax: y must have at least one dim");
  need_like(y, "y", y, "y");
  need_like(dy, "dy", y, "y");
  if (!dx) return;
  need_like(dx, "dx", y, "y");
  if (y->device == VLM_CUDA) vlm_cuda_softmax_backward(dx, dy, y);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_softmax_backward(dx, dy, y);
  else vlm_cpu_softmax_backward(dx, dy, y);
}
