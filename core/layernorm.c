/* LayerNorm dispatcher: checks shapes, dtypes and devices, then runs the
 * reference or the fast kernel. */
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

static void need(const vlm_tensor *t, const char *name, const vlm_tensor *x) {
  char s[128];
  VLM_CHECK(t != NULL, "layernorm: %s is NULL", name);
  VLM_CHECK(t->dtype == VLM_F32, "layernorm: %s must be F32, got %s", name, vlm_shape_str(t, s, sizeof s));
  VLM_CHECK(vlm_is_contiguous(t), "layernorm: %s must be contiguous", name);
  VLM_CHECK(t->device == x->device, "layernorm: %s is on another device than x", name);
}

static void need_shape_of_x(const vlm_tensor *t, const char *name, const vlm_tensor *x) {
  char s[128], sx[128];
  need(t, name, x);
  VLM_CHECK(vlm_same_shape(t, x), "layernorm: %s is %s, x is %s", name, vlm_shape_str(t, s, sizeof s),
            vlm_shape_str(x, sx, sizeof sx));
}

static void need_numel(const vlm_tensor *t, const char *name, const vlm_tensor *x, int64_t n) {
  char s[128];
  need(t, name, x);
  VLM_CHECK(vlm_numel(t) == n, "layernorm: %s is %s, expected %lld elements", name,
            vlm_shape_str(t, s, sizeof s), (long long)n);
}

void vlm_layernorm_forward(vlm_tensor *out, vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *x,
                           const vlm_tensor *w, const vlm_tensor *b, float eps) {
  VLM_CHECK(x != NULL && x->ndim >= 1, "layernorm: x must have at least one dim");
  need(x, "x", x);
  int64_t C = vlm_cols(x), R = vlm_rows(x);
  {
    char so[128], sx[128];
    VLM_CHECK(out != NULL && (out->dtype == VLM_F32 || out->dtype == VLM_BF16) && vlm_is_contiguous(out) &&
                  out->device == x->device && vlm_same_shape(out, x),
              "layernorm: out is %s, must be a contiguous F32 or BF16 tensor shaped like x %s",
              out ? vlm_shape_str(out, so, sizeof so) : "NULL", vlm_shape_str(x, sx, sizeof sx));
  }
  need_numel(w, "w", x, C);
  need_numel(b, "b", x, C);
  if (mean) need_numel(mean, "mean", x, R);
  if (rstd) need_numel(rstd, "rstd", x, R);
  VLM_CHECK(eps >= 0.0f, "layernorm: eps %g < 0", (double)eps);
  if (x->device == VLM_CUDA) vlm_cuda_layernorm_forward(out, mean, rstd, x, w, b, eps);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_layernorm_forward(out, mean, rstd, x, w, b, eps);
  else vlm_cpu_layernorm_forward(out, mean, rstd, x, w, b, eps);
}

void vlm_layernorm_backward(vlm_tensor *dx, vlm_tensor *dw, vlm_tensor *db, const vlm_tensor *dout,
                            const vlm_tensor *x, const vlm_tensor *w, const vlm_tensor *mean,
                            const vlm_tensor *rstd) {
  VLM_CHECK(x != NULL && x->ndim >= 1, "layernorm: x must have at least one dim");
  need(x, "x", x);
  int64_t C = vlm_cols(x), R = vlm_rows(x);
  need_shape_of_x(dout, "dout", x);
  if (dx) need_shape_of_x(dx, "dx", x);
  need_numel(w, "w", x, C);
  if (dw) need_numel(dw, "dw", x, C);
  if (db) need_numel(db, "db", x, C);
  need_numel(mean, "mean", x, R);
  need_numel(rstd, "rstd", x, R);
  if (x->device == VLM_CUDA) vlm_cuda_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
  else vlm_cpu_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
}
