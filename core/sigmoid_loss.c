/* Sigmoid (SigLIP) loss dispatcher: logits [B,N], positives at columns off + i, loss / dloss [1]. */
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

static void need(const vlm_tensor *t, const char *name, vlm_device dev) {
  char s[128];
  VLM_CHECK(t != NULL, "sigmoid_loss: %s is NULL", name);
  VLM_CHECK(t->dtype == VLM_F32, "sigmoid_loss: %s must be F32, got %s", name, vlm_shape_str(t, s, sizeof s));
  VLM_CHECK(vlm_is_contiguous(t), "sigmoid_loss: %s must be contiguous", name);
  VLM_CHECK(t->device == dev, "sigmoid_loss: %s is on another device than the other operands", name);
}

static void need_scalar(const vlm_tensor *t, const char *name, vlm_device dev) {
  char s[128];
  need(t, name, dev);
  VLM_CHECK(vlm_numel(t) == 1, "sigmoid_loss: %s is %s, expected one element", name, vlm_shape_str(t, s, sizeof s));
}

static void need_logits(const vlm_tensor *logits, int64_t off) {
  char s[128];
  VLM_CHECK(logits != NULL, "sigmoid_loss: logits is NULL");
  need(logits, "logits", logits->device);
  VLM_CHECK(logits->ndim == 2, "sigmoid_loss: logits is %s, expected [B, N]", vlm_shape_str(logits, s, sizeof s));
  VLM_CHECK(off >= 0 && off + logits->shape[0] <= logits->shape[1],
            "sigmoid_loss: the positives of rows [0, %lld) at columns [%lld, %lld) are outside the %lld columns",
            (long long)logits->shape[0], (long long)off, (long long)(off + logits->shape[0]),
            (long long)logits->shape[1]);
}

void vlm_sigmoid_loss_forward(vlm_tensor *loss, const vlm_tensor *logits, int64_t off) {
  need_logits(logits, off);
  vlm_device dev = logits->device;
  need_scalar(loss, "loss", dev);
  if (dev == VLM_CUDA) vlm_cuda_sigmoid_loss_forward(loss, logits, off);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_sigmoid_loss_forward(loss, logits, off);
  else vlm_cpu_sigmoid_loss_forward(loss, logits, off);
}

void vlm_sigmoid_loss_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *logits, int64_t off) {
  char s[128], s2[128];
  need_logits(logits, off);
  vlm_device dev = logits->device;
  need_scalar(dloss, "dloss", dev);
  if (!dlogits) return;
  need(dlogits, "dlogits", dev);
  VLM_CHECK(vlm_same_shape(dlogits, logits), "sigmoid_loss: dlogits is %s, logits %s",
            vlm_shape_str(dlogits, s, sizeof s), vlm_shape_str(logits, s2, sizeof s2));
  if (dev == VLM_CUDA) vlm_cuda_sigmoid_loss_backward(dlogits, dloss, logits, off);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_sigmoid_loss_backward(dlogits, dloss, logits, off);
  else vlm_cpu_sigmoid_loss_backward(dlogits, dloss, logits, off);
}
