/* Cross-entropy dispatcher: logits [N,C], targets [N] I32/I64, loss [1], probs [N,C]. */
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

static void need(const vlm_tensor *t, const char *name, vlm_device dev) {
  char s[128];
  VLM_CHECK(t != NULL, "cross_entropy: %s is NULL", name);
  VLM_CHECK(t->dtype == VLM_F32, "cross_entropy: %s must be F32, got %s", name, vlm_shape_str(t, s, sizeof s));
  VLM_CHECK(vlm_is_contiguous(t), "cross_entropy: %s must be contiguous", name);
  VLM_CHECK(t->device == dev, "cross_entropy: %s is on another device than the other operands", name);
}

static void need_nc(const vlm_tensor *t, const char *name, vlm_device dev, int64_t N, int64_t C) {
  char s[128];
  need(t, name, dev);
  VLM_CHECK(t->ndim == 2 && t->shape[0] == N && t->shape[1] == C, "cross_entropy: %s is %s, expected [%lld, %lld]",
            name, vlm_shape_str(t, s, sizeof s), (long long)N, (long long)C);
}

static void need_scalar(const vlm_tensor *t, const char *name, vlm_device dev) {
  char s[128];
  need(t, name, dev);
  VLM_CHECK(vlm_numel(t) == 1, "cross_entropy: %s is %s, expected one element", name, vlm_shape_str(t, s, sizeof s));
}

static void need_targets(const vlm_tensor *targets, int64_t N, vlm_device dev) {
  char s[128];
  VLM_CHECK(targets != NULL, "cross_entropy: targets is NULL");
  VLM_CHECK(targets->dtype == VLM_I32 || targets->dtype == VLM_I64,
            "cross_entropy: targets must be I32 or I64, got %s", vlm_shape_str(targets, s, sizeof s));
  VLM_CHECK(targets->ndim == 1 && targets->shape[0] == N, "cross_entropy: targets is %s, expected [%lld]",
            vlm_shape_str(targets, s, sizeof s), (long long)N);
  VLM_CHECK(vlm_is_contiguous(targets), "cross_entropy: targets must be contiguous");
  VLM_CHECK(targets->device == dev, "cross_entropy: targets is on another device than the other operands");
}

void vlm_cross_entropy_forward(vlm_tensor *loss, vlm_tensor *probs, const vlm_tensor *logits,
                               const vlm_tensor *targets, int64_t ignore_index) {
  char s[128];
  VLM_CHECK(logits != NULL, "cross_entropy: logits is NULL");
  vlm_device dev = logits->device;
  need(logits, "logits", dev);
  VLM_CHECK(logits->ndim == 2, "cross_entropy: logits is %s, expected [N, C]", vlm_shape_str(logits, s, sizeof s));
  int64_t N = logits->shape[0], C = logits->shape[1];
  need_nc(probs, "probs", dev, N, C);
  need_scalar(loss, "loss", dev);
  need_targets(targets, N, dev);
  if (dev == VLM_CUDA) vlm_cuda_cross_entropy_forward(loss, probs, logits, targets, ignore_index);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_cross_entropy_forward(loss, probs, logits, targets, ignore_index);
  else vlm_cpu_cross_entropy_forward(loss, probs, logits, targets, ignore_index);
}

void vlm_cross_entropy_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *probs,
                                const vlm_tensor *targets, int64_t ignore_index) {
  char s[128];
  VLM_CHECK(probs != NULL, "cross_entropy: probs is NULL");
  vlm_device dev = probs->device;
  need(probs, "probs", dev);
  VLM_CHECK(probs->ndim == 2, "cross_entropy: probs is %s, expected [N, C]", vlm_shape_str(probs, s, sizeof s));
  int64_t N = probs->shape[0], C = probs->shape[1];
  need_scalar(dloss, "dloss", dev);
  need_targets(targets, N, dev);
  if (!dlogits) return;
  need_nc(dlogits, "dlogits", dev, N, C);
  if (dev == VLM_CUDA) vlm_cuda_cross_entropy_backward(dlogits, dloss, probs, targets, ignore_index);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF)
    vlm_ref_cross_entropy_backward(dlogits, dloss, probs, targets, ignore_index);
  else vlm_cpu_cross_entropy_backward(dlogits, dloss, probs, targets, ignore_index);
}
