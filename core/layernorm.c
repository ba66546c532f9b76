/* LayerNorm dispatcher: checks shapes, dtypes and devices, then runs the
 * reference or the fast kernel. */
#include "core/check.h"
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

void vlm_layernorm_forward(vlm_tensor *out, vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *x,
                           const vlm_tensor *w, const vlm_tensor *b, float eps) {
  VLM_CHECK(x != NULL && x->ndim >= 1, "layernorm: x must have at least one dim");
  vlm_need_f32("layernorm", x, "x", x, "x");
  int64_t C = vlm_cols(x), R = vlm_rows(x);
  {
    char so[128], sx[128];
    VLM_CHECK(out != NULL && (out->dtype == VLM_F32 || out->dtype == VLM_BF16) && vlm_is_contiguous(out) &&
                  out->device == x->device && vlm_same_shape(out, x),
              "layernorm: out is %s, must be a contiguous F32 or BF16 tensor shaped like x %s",
              out ? vlm_shape_str(out, so, sizeof so) : "NULL", vlm_shape_str(x, sx, sizeof sx));
  }
  vlm_need_f32_numel("layernorm", w, "w", x, C, "");
  vlm_need_f32_numel("layernorm", b, "b", x, C, "");
  if (mean) vlm_need_f32_numel("layernorm", mean, "mean", x, R, "");
  if (rstd) vlm_need_f32_numel("layernorm", rstd, "rstd", x, R, "");
  VLM_CHECK(eps >= 0.0f, "layernorm: eps %g < 0", (double)eps);
  if (x->device == VLM_CUDA) vlm_cuda_layernorm_forward(out, mean, rstd, x, w, b, eps);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_layernorm_forward(out, mean, rstd, x, w, b, eps);
  else vlm_cpu_layernorm_forward(out, mean, rstd, x, w, b, eps);
}

void vlm_layernorm_backward(vlm_tensor *dx, vlm_tensor *dw, vlm_tensor *db, const vlm_tensor *dout,
                            const vlm_tensor *x, const vlm_tensor *w, const vlm_tensor *mean,
                            const vlm_tensor *rstd) {
  VLM_CHECK(x != NULL && x->ndim >= 1, "layernorm: x must have at least one dim");
  vlm_need_f32("layernorm", x, "x", x, "x");
  int64_t C = vlm_cols(x), R = vlm_rows(x);
  vlm_need_f32_like("layernorm", dout, "dout", x, "x");
  if (dx) vlm_need_f32_like("layernorm", dx, "dx", x, "x");
  vlm_need_f32_numel("layernorm", w, "w", x, C, "");
  if (dw) vlm_need_f32_numel("layernorm", dw, "dw", x, C, "");
  if (db) vlm_need_f32_numel("layernorm", db, "db", x, C, "");
  vlm_need_f32_numel("layernorm", mean, "mean", x, R, "");
  vlm_need_f32_numel("layernorm", rstd, "rstd", x, R, "");
  if (x->device == VLM_CUDA) vlm_cuda_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
  else vlm_cpu_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
}
