/* L2-normalize dispatcher (torch.nn.functional.normalize over the last dim). */
#include "core/check.h"
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

void vlm_l2norm_forward(vlm_tensor *y, vlm_tensor *norm, const vlm_tensor *x, float eps) {
  VLM_CHECK(x != NULL && x->ndim >= 1, "l2norm: x must have at least one dim");
  vlm_need_f32("l2norm", x, "x", x, "x");
  vlm_need_f32_like("l2norm", y, "y", x, "x");
  if (norm) vlm_need_f32_numel("l2norm", norm, "norm", x, vlm_rows(x), " (rows of x)");
  VLM_CHECK(eps > 0.0f, "l2norm: eps must be > 0, got %g", (double)eps);
  if (x->device == VLM_CUDA) vlm_cuda_l2norm_forward(y, norm, x, eps);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_l2norm_forward(y, norm, x, eps);
  else vlm_cpu_l2norm_forward(y, norm, x, eps);
}

void vlm_l2norm_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *x, const vlm_tensor *norm,
                         float eps) {
  VLM_CHECK(x != NULL && x->ndim >= 1, "l2norm: x must have at least one dim");
  vlm_need_f32("l2norm", x, "x", x, "x");
  vlm_need_f32_like("l2norm", dy, "dy", x, "x");
  vlm_need_f32_numel("l2norm", norm, "norm", x, vlm_rows(x), " (rows of x)");
  VLM_CHECK(eps > 0.0f, "l2norm: eps must be > 0, got %g", (double)eps);
  if (!dx) return;
  vlm_need_f32_like("l2norm", dx, "dx", x, "x");
  if (x->device == VLM_CUDA) vlm_cuda_l2norm_backward(dx, dy, x, norm, eps);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_l2norm_backward(dx, dy, x, norm, eps);
  else vlm_cpu_l2norm_backward(dx, dy, x, norm, eps);
}
