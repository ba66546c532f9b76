/* Token + position embedding dispatcher. */
#include "core/core.h"
#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

static void need(const vlm_tensor *t, const char *name, vlm_device dev, int ndim) {
  char s[128];
  VLM_CHECK(t != NULL, "embedding: %s is NULL", name);
  VLM_CHECK(t->dtype == VLM_F32, "embedding: %s must be F32, got %s", name, vlm_shape_str(t, s, sizeof s));
  VLM_CHECK(vlm_is_contiguous(t), "embedding: %s must be contiguous", name);
  VLM_CHECK(t->device == dev, "embedding: %s is on another device than the other operands", name);
  VLM_CHECK(t->ndim == ndim, "embedding: %s is %s, expected %d dims", name, vlm_shape_str(t, s, sizeof s), ndim);
}

static void need_ids(const vlm_tensor *ids) {
  char s[128];
  VLM_CHECK(ids != NULL, "embedding: ids is NULL");
  VLM_CHECK(ids->dtype == VLM_I32 || ids->dtype == VLM_I64, "embedding: ids must be I32 or I64, got %s",
            vlm_shape_str(ids, s, sizeof s));
  VLM_CHECK(ids->ndim == 2, "embedding: ids is %s, expected [B, L]", vlm_shape_str(ids, s, sizeof s));
  VLM_CHECK(vlm_is_contiguous(ids), "embedding: ids must be contiguous");
}

/* out or dout [B, L, W] against ids [B, L] and width W. */
static void check_bld(const vlm_tensor *t, const char *name, const vlm_tensor *ids, int64_t W) {
  char s[128], si[128];
  VLM_CHECK(t->shape[0] == ids->shape[0] && t->shape[1] == ids->shape[1] && t->shape[2] == W,
            "embedding: %s is %s, ids is %s, width %lld", name, vlm_shape_str(t, s, sizeof s),
            vlm_shape_str(ids, si, sizeof si), (long long)W);
}

static void check_pos(const vlm_tensor *pos, const char *name, int64_t L, int64_t W) {
  char s[128];
  VLM_CHECK(pos->shape[0] >= L && pos->shape[1] == W, "embedding: %s is %s, expected [>=%lld, %lld]", name,
            vlm_shape_str(pos, s, sizeof s), (long long)L, (long long)W);
}

void vlm_embedding_forward(vlm_tensor *out, const vlm_tensor *ids, const vlm_tensor *table,
                           const vlm_tensor *pos) {
  need_ids(ids);
  VLM_CHECK(table != NULL, "embedding: table is NULL");
  vlm_device dev = table->device;
  need(table, "table", dev, 2);
  need(out, "out", dev, 3);
  VLM_CHECK(ids->device == dev, "embedding: ids is on another device than table");
  int64_t W = table->shape[1];
  check_bld(out, "out", ids, W);
  if (pos) {
    need(pos, "pos", dev, 2);
    check_pos(pos, "pos", ids->shape[1], W);
  }
  if (dev == VLM_CUDA) vlm_cuda_embedding_forward(out, ids, table, pos);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_embedding_forward(out, ids, table, pos);
  else vlm_cpu_embedding_forward(out, ids, table, pos);
}

void vlm_embedding_backward(vlm_tensor *dtable, vlm_tensor *dpos, const vlm_tensor *dout,
                            const vlm_tensor *ids) {
  need_ids(ids);
  VLM_CHECK(dout != NULL, "embedding: dout is NULL");
  vlm_device dev = dout->device;
  need(dout, "dout", dev, 3);
  VLM_CHECK(ids->device == dev, "embedding: ids is on another device than dout");
  int64_t W = dout->shape[2];
  check_bld(dout, "dout", ids, W);
  if (dtable) {
    char s[128];
    need(dtable, "dtable", dev, 2);
    VLM_CHECK(dtable->shape[1] == W, "embedding: dtable is %s, width %lld", vlm_shape_str(dtable, s, sizeof s),
              (long long)W);
  }
  if (dpos) {
    need(dpos, "dpos", dev, 2);
    check_pos(dpos, "dpos", ids->shape[1], W);
  }
  if (!dtable && !dpos) return;
  if (dev == VLM_CUDA) vlm_cuda_embedding_backward(dtable, dpos, dout, ids);
  else if (vlm_get_kernel_mode() == VLM_KERNELS_REF) vlm_ref_embedding_backward(dtable, dpos, dout, ids);
  else vlm_cpu_embedding_backward(dtable, dpos, dout, ids);
}
