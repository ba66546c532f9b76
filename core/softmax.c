/* Softmax dispatcher: over the last dim of any shape. */
#include "core/check.h"
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

void vlm_softmax_forward(vlm_tensor *y, const vlm_tensor *x) {
  VLM_CHECK(x != NULL && x->ndim >= 1, "softmax: x must have at least one dim");
  vlm_need_f32_like("softmax", x, "x", x, "x");
  vlm_need_f32_like("softmax", y, "y", x, "x");
  if (x->device == VLM_CUDA) vlm_cuda_softmax_forward(y, x);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_softmax_forward(y, x);
  else vlm_cpu_softmax_forward(y, x);
}

void vlm_softmax_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *y) {
  VLM_CHECK(y != NULL && y->ndim >= 1, "softmax: y must have at least one dim");
  vlm_need_f32_like("softmax", y, "y", y, "y");
  vlm_need_f32_like("softmax", dy, "dy", y, "y");
  if (!dx) return;
  vlm_need_f32_like("softmax", dx, "dx", y, "y");
  if (y->device == VLM_CUDA) vlm_cuda_softmax_backward(dx, dy, y);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_softmax_backward(dx, dy, y);
  else vlm_cpu_softmax_backward(dx, dy, y);
}
