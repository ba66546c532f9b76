/* Broadcast add dispatcher: out = a + b, b's shape equal to the trailing dims
 * of a. CUDA tensors go to core/cuda. */
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

static void need(const vlm_tensor *t, const char *name, vlm_device dev) {
  char s[128];
  VLM_CHECK(t != NULL, "add: %s is NULL", name);
  VLM_CHECK(t->dtype == VLM_F32, "add: %s must be F32, got %s", name, vlm_shape_str(t, s, sizeof s));
  VLM_CHECK(vlm_is_contiguous(t), "add: %s must be contiguous", name);
  VLM_CHECK(t->device == dev, "add: %s is on another device than the other operands", name);
}

/* b's shape must equal the trailing b->ndim dims of a. */
static void check_trailing(const vlm_tensor *a, const char *an, const vlm_tensor *b, const char *bn) {
  char sa[128], sb[128];
  int ok = b->ndim <= a->ndim;
  for (int i = 0; ok && i < b->ndim; i++) ok = b->shape[b->ndim - 1 - i] == a->shape[a->ndim - 1 - i];
  VLM_CHECK(ok, "add: %s %s is not the trailing dims of %s %s", bn, vlm_shape_str(b, sb, sizeof sb), an,
            vlm_shape_str(a, sa, sizeof sa));
}

void vlm_add_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b) {
  char s[128], sa[128];
  VLM_CHECK(a != NULL, "add: a is NULL");
  need(a, "a", a->device);
  need(b, "b", a->device);
  need(out, "out", a->device);
  VLM_CHECK(vlm_same_shape(out, a), "add: out is %s, a is %s", vlm_shape_str(out, s, sizeof s),
            vlm_shape_str(a, sa, sizeof sa));
  check_trailing(a, "a", b, "b");
  if (a->device == VLM_CUDA) vlm_cuda_add_forward(out, a, b);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_add_forward(out, a, b);
  else vlm_cpu_add_forward(out, a, b);
}

void vlm_add_backward(vlm_tensor *da, vlm_tensor *db, const vlm_tensor *dout) {
  char s[128], sd[128];
  VLM_CHECK(dout != NULL, "add: dout is NULL");
  need(dout, "dout", dout->device);
  if (da) {
    need(da, "da", dout->device);
    VLM_CHECK(vlm_same_shape(da, dout), "add: da is %s, dout is %s", vlm_shape_str(da, s, sizeof s),
              vlm_shape_str(dout, sd, sizeof sd));
  }
  if (db) {
    need(db, "db", dout->device);
    check_trailing(dout, "dout", db, "db");
  }
  if (!da && !db) return;
  if (dout->device == VLM_CUDA) vlm_cuda_add_backward(da, db, dout);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_add_backward(da, db, dout);
  else vlm_cpu_add_backward(da, db, dout);
}
