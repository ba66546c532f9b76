/* Multi-head scaled dot-product attention: shape checks and dispatch.
 * Semantics in core/core.h; reference in core/ref/attention.c, fast CPU
 * kernel in core/cpu/attention.c. */
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

#include <math.h>
#include <stdlib.h>

/* q, k, v and their gradients: 3-d views [B, L, W] whose last dim is
 * contiguous; the row and batch strides may be larger (views into [B, L, 3W]).
 * F32; the forward's q, k, v may be BF16 when no probabilities are saved. */
static void check_view_dtype(const char *fn, const char *name, const vlm_tensor *t, int64_t B, int64_t L,
                             int64_t W, int bf16_ok) {
  char buf[96];
  VLM_CHECK(t->dtype == VLM_F32 || (bf16_ok && t->dtype == VLM_BF16), "%s: %s must be F32%s, got %s", fn, name,
            bf16_ok ? " or BF16" : "", vlm_dtype_name(t->dtype));
  VLM_CHECK(t->ndim == 3, "%s: %s must be 3-d [B, L, W], got %s", fn, name, vlm_shape_str(t, buf, sizeof buf));
  VLM_CHECK((B < 0 || t->shape[0] == B) && (L < 0 || t->shape[1] == L) && t->shape[2] == W,
            "%s: %s has shape %s, expected [%lld, %lld, %lld]", fn, name, vlm_shape_str(t, buf, sizeof buf),
            (long long)B, (long long)L, (long long)W);
  VLM_CHECK(t->shape[2] <= 1 || t->stride[2] == 1, "%s: %s: the last dim must be contiguous (stride %lld)",
            fn, name, (long long)t->stride[2]);
  VLM_CHECK(t->stride[0] >= 0 && t->stride[1] >= 0, "%s: %s: negative strides", fn, name);
  VLM_CHECK(t->data || vlm_numel(t) == 0, "%s: %s has no data", fn, name);
}

static void check_view(const char *fn, const char *name, const vlm_tensor *t, int64_t B, int64_t L, int64_t W) {
  check_view_dtype(fn, name, t, B, L, W, 0);
}

static void check_probs(const char *fn, const vlm_tensor *p, int64_t B, int64_t H, int64_t Lq, int64_t Lk) {
  char buf[96];
  VLM_CHECK(p->dtype == VLM_F32, "%s: probs must be F32, got %s", fn, vlm_dtype_name(p->dtype));
  VLM_CHECK(p->ndim == 4 && p->shape[0] == B && p->shape[1] == H && p->shape[2] == Lq && p->shape[3] == Lk,
            "%s: probs has shape %s, expected [%lld, %lld, %lld, %lld]", fn, vlm_shape_str(p, buf, sizeof buf),
            (long long)B, (long long)H, (long long)Lq, (long long)Lk);
  VLM_CHECK(vlm_is_contiguous(p), "%s: probs must be contiguous", fn);
  VLM_CHECK(p->data || vlm_numel(p) == 0, "%s: probs has no data", fn);
}

/* Checks shared by forward and backward; returns W. bf16_ok: q, k, v may be
 * BF16 (all three the same dtype). */
static int64_t check_qkv(const char *fn, const vlm_tensor *q, const vlm_tensor *k, const vlm_tensor *v,
                         int heads, int bf16_ok) {
  VLM_CHECK(q && k && v, "%s: q, k and v are required", fn);
  VLM_CHECK(q->ndim == 3, "%s: q must be 3-d [B, Lq, H*D]", fn);
  const int64_t B = q->shape[0], W = q->shape[2];
  VLM_CHECK(heads > 0, "%s: heads = %d", fn, heads);
  VLM_CHECK(W % heads == 0, "%s: width %lld is not divisible by %d heads", fn, (long long)W, heads);
  check_view_dtype(fn, "q", q, B, -1, W, bf16_ok);
  check_view_dtype(fn, "k", k, B, -1, W, bf16_ok);
  check_view_dtype(fn, "v", v, B, k->shape[1], W, bf16_ok);
  VLM_CHECK(q->dtype == k->dtype && q->dtype == v->dtype, "%s: q, k, v of different dtypes (%s, %s, %s)", fn,
            vlm_dtype_name(q->dtype), vlm_dtype_name(k->dtype), vlm_dtype_name(v->dtype));
  VLM_CHECK(q->device == k->device && q->device == v->device, "%s: q, k, v on different devices", fn);
  return W;
}

/* A BF16 view [B, L, W] (last dim contiguous) widened into a contiguous F32 host copy. */
static vlm_tensor widen_host(const vlm_tensor *t, float **buf) {
  const int64_t B = t->shape[0], L = t->shape[1], W = t->shape[2];
  *buf = malloc(sizeof(float) * (size_t)(B * L * W > 0 ? B * L * W : 1));
  VLM_CHECK(*buf, "attention_forward: out of memory widening a bf16 operand (%lld values)", (long long)(B * L * W));
  const uint16_t *src = t->data;
  for (int64_t b = 0; b < B; b++)
    for (int64_t l = 0; l < L; l++)
      vlm_bf16_to_f32_array(*buf + (b * L + l) * W, src + b * t->stride[0] + l * t->stride[1], (size_t)W);
  int64_t shape[3] = {B, L, W};
  return vlm_tensor_make(*buf, VLM_F32, VLM_CPU, 3, shape);
}

void vlm_attention_forward(vlm_tensor *out, vlm_tensor *probs, const vlm_tensor *q,
                           const vlm_tensor *k, const vlm_tensor *v, int heads,
                           const vlm_tensor *key_padding_mask, int causal, float scale) {
  static const char fn[] = "attention_forward";
  const int64_t W = check_qkv(fn, q, k, v, heads, probs == NULL);
  const int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1];
  char buf[96];
  VLM_CHECK(out, "%s: out is required", fn);
  VLM_CHECK((out->dtype == VLM_F32 || (!probs && out->dtype == VLM_BF16)) && out->ndim == 3 &&
                out->shape[0] == B && out->shape[1] == Lq && out->shape[2] == W,
            "%s: out is %s %s, expected [%lld, %lld, %lld] F32%s", fn, vlm_shape_str(out, buf, sizeof buf),
            vlm_dtype_name(out->dtype), (long long)B, (long long)Lq, (long long)W, probs ? "" : " or BF16");
  VLM_CHECK(vlm_is_contiguous(out), "%s: out must be contiguous", fn);
  VLM_CHECK(out->data || vlm_numel(out) == 0, "%s: out has no data", fn);
  VLM_CHECK(out->device == q->device, "%s: out and q on different devices", fn);
  /* probs may be NULL when no backward follows (inference). */
  if (probs) {
    check_probs(fn, probs, B, heads, Lq, Lk);
    VLM_CHECK(probs->device == q->device, "%s: probs and q on different devices", fn);
  }
  if (key_padding_mask) {
    const vlm_tensor *m = key_padding_mask;
    VLM_CHECK(m->dtype == VLM_U8 || m->dtype == VLM_BOOL, "%s: key_padding_mask must be U8, got %s", fn,
              vlm_dtype_name(m->dtype));
    VLM_CHECK(m->ndim == 2 && m->shape[0] == B && m->shape[1] == Lk,
              "%s: key_padding_mask is %s, expected [%lld, %lld]", fn, vlm_shape_str(m, buf, sizeof buf),
              (long long)B, (long long)Lk);
    VLM_CHECK(vlm_is_contiguous(m), "%s: key_padding_mask must be contiguous", fn);
    VLM_CHECK(m->device == q->device, "%s: key_padding_mask and q on different devices", fn);
  }
  VLM_CHECK(isfinite(scale), "%s: scale %g", fn, (double)scale);

  if (q->device == VLM_CUDA) {
    vlm_cuda_attention_forward(out, probs, q, k, v, heads, key_padding_mask, causal, scale);
    return;
  }
  if (q->dtype == VLM_BF16 || out->dtype == VLM_BF16) {
    /* bf16 storage on the CPU: the F32 kernels on widened copies (the result
     * of F32 inputs holding the same values), the output rounded once. */
    float *bq = NULL, *bk = NULL, *bv = NULL, *bo = NULL;
    vlm_tensor q32 = *q, k32 = *k, v32 = *v, o32 = *out;
    if (q->dtype == VLM_BF16) q32 = widen_host(q, &bq), k32 = widen_host(k, &bk), v32 = widen_host(v, &bv);
    if (out->dtype == VLM_BF16) {
      bo = malloc(sizeof(float) * (size_t)(B * Lq * W > 0 ? B * Lq * W : 1));
      VLM_CHECK(bo, "%s: out of memory", fn);
      int64_t shape[3] = {B, Lq, W};
      o32 = vlm_tensor_make(bo, VLM_F32, VLM_CPU, 3, shape);
    }
    vlm_attention_forward(&o32, NULL, &q32, &k32, &v32, heads, key_padding_mask, causal, scale);
    if (bo) {
      uint16_t *dst = out->data;
      vlm_f32_to_bf16_array(dst, bo, (size_t)(B * Lq * W));
    }
    free(bq), free(bk), free(bv), free(bo);
    return;
  }
  if (vlm_get_kernel_mode() == VLM_KERNELS_REF)
    vlm_ref_attention_forward(out, probs, q, k, v, heads, key_padding_mask, causal, scale);
  else
    vlm_cpu_attention_forward(out, probs, q, k, v, heads, key_padding_mask, causal, scale);
}

void vlm_attention_backward(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                            const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                            const vlm_tensor *v, int heads, float scale) {
  static const char fn[] = "attention_backward";
  const int64_t W = check_qkv(fn, q, k, v, heads, 0);
  const int64_t B = q->shape[0], Lq = q->shape[1], Lk = k->shape[1];
  char buf[96];
  VLM_CHECK(dout && probs, "%s: dout and probs are required", fn);
  VLM_CHECK(dout->dtype == VLM_F32 && dout->ndim == 3 && dout->shape[0] == B && dout->shape[1] == Lq &&
                dout->shape[2] == W,
            "%s: dout is %s, expected [%lld, %lld, %lld] F32", fn, vlm_shape_str(dout, buf, sizeof buf),
            (long long)B, (long long)Lq, (long long)W);
  VLM_CHECK(vlm_is_contiguous(dout), "%s: dout must be contiguous", fn);
  VLM_CHECK(dout->data || vlm_numel(dout) == 0, "%s: dout has no data", fn);
  check_probs(fn, probs, B, heads, Lq, Lk);
  if (dq) check_view(fn, "dq", dq, B, Lq, W);
  if (dk) check_view(fn, "dk", dk, B, Lk, W);
  if (dv) check_view(fn, "dv", dv, B, Lk, W);
  VLM_CHECK(dout->device == q->device && probs->device == q->device && (!dq || dq->device == q->device) &&
                (!dk || dk->device == q->device) && (!dv || dv->device == q->device),
            "%s: tensors on different devices", fn);
  VLM_CHECK(isfinite(scale), "%s: scale %g", fn, (double)scale);
  if (!dq && !dk && !dv) return;

  if (q->device == VLM_CUDA) vlm_cuda_attention_backward(dq, dk, dv, dout, probs, q, k, v, heads, scale);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF)
    vlm_ref_attention_backward(dq, dk, dv, dout, probs, q, k, v, heads, scale);
  else
    vlm_cpu_attention_backward(dq, dk, dv, dout, probs, q, k, v, heads, scale);
}
