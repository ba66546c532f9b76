/* Activation dispatcher (GELU, QuickGELU): elementwise on any shape. The
 * forward's out may be F32 or BF16 (rounded to nearest even once). */
#include "core/check.h"
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

/* out may also be BF16 (each value rounded once, to feed a bf16 matmul). */
static void need_out(const vlm_tensor *out, const vlm_tensor *x) {
  char s[128], sx[128];
  VLM_CHECK(out != NULL, "act: out is NULL");
  if (out->dtype != VLM_BF16) {
    vlm_need_f32_like("act", out, "out", x, "x");
    return;
  }
  VLM_CHECK(vlm_is_contiguous(out), "act: out must be contiguous");
  VLM_CHECK(out->device == x->device, "act: out is on another device than x");
  VLM_CHECK(vlm_same_shape(out, x), "act: out is %s, x is %s", vlm_shape_str(out, s, sizeof s),
            vlm_shape_str(x, sx, sizeof sx));
  VLM_CHECK(out->data != x->data || vlm_numel(x) == 0, "act: a BF16 out must not alias x");
}

static void check_act(vlm_act act) {
  VLM_CHECK(act == VLM_ACT_GELU || act == VLM_ACT_QUICK_GELU, "act: unknown activation %d", (int)act);
}

void vlm_act_forward(vlm_act act, vlm_tensor *out, const vlm_tensor *x) {
  check_act(act);
  VLM_CHECK(x != NULL, "act: x is NULL");
  vlm_need_f32_like("act", x, "x", x, "x");
  need_out(out, x);
  if (x->device == VLM_CUDA) vlm_cuda_act_forward(act, out, x);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_act_forward(act, out, x);
  else vlm_cpu_act_forward(act, out, x);
}

void vlm_act_backward(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x) {
  check_act(act);
  VLM_CHECK(x != NULL, "act: x is NULL");
  vlm_need_f32_like("act", x, "x", x, "x");
  vlm_need_f32_like("act", dout, "dout", x, "x");
  if (!dx) return;
  vlm_need_f32_like("act", dx, "dx", x, "x");
  if (x->device == VLM_CUDA) vlm_cuda_act_backward(act, dx, dout, x);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_act_backward(act, dx, dout, x);
  else vlm_cpu_act_backward(act, dx, dout, x);
}
