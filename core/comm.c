/* Collectives for data-parallel training (see core.h): a backend the program
 * registers (the `vlm` binary's MPI one, apps/comm_mpi.c), or one process. Device
 * tensors go through host buffers. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static const vlm_comm_ops *g_comm = NULL;

void vlm_comm_set(const vlm_comm_ops *ops) { g_comm = ops && ops->world > 1 ? ops : NULL; }
int vlm_comm_rank(void) { return g_comm ? g_comm->rank : 0; }
int vlm_comm_world(void) { return g_comm ? g_comm->world : 1; }

/* t's bytes on the host: t's memory on the CPU, else a copy (freed by put_back). */
static void *host_bytes(const vlm_tensor *t, size_t bytes, vlm_status *st) {
  if (t->device == VLM_CPU) return t->data;
  void *h = malloc(bytes ? bytes : 1);
  if (!h) {
    *st = vlm_error(VLM_ERR_OOM, "collective: out of memory for %zu bytes", bytes);
    return NULL;
  }
  vlm_memcpy(h, VLM_CPU, t->data, t->device, bytes);
  return h;
}

static void put_back(vlm_tensor *t, void *h, size_t bytes) {
  if (t->device == VLM_CPU) return;
  vlm_memcpy(t->data, t->device, h, VLM_CPU, bytes);
  free(h);
}

static vlm_status check_f32(const vlm_tensor *t, const char *what) {
  if (t->dtype != VLM_F32 || !vlm_is_contiguous(t))
    return vlm_error(VLM_ERR_ARG, "%s: expected a contiguous F32 tensor", what);
  return VLM_OK;
}

vlm_status vlm_comm_allreduce_sum(vlm_tensor *t) {
  if (!g_comm) return VLM_OK;
  vlm_status st = check_f32(t, "allreduce");
  if (st != VLM_OK) return st;
  const size_t bytes = (size_t)vlm_numel(t) * sizeof(float);
  float *h = host_bytes(t, bytes, &st);
  if (!h) return st;
  st = g_comm->allreduce_sum_f32(h, vlm_numel(t));
  put_back(t, h, bytes);
  return st;
}

vlm_status vlm_comm_allreduce_sum_buf(float *buf, int64_t n) {
  return g_comm ? g_comm->allreduce_sum_f32(buf, n) : VLM_OK;
}

vlm_status vlm_comm_allreduce_min_i64(int64_t *v) {
  return g_comm ? g_comm->allreduce_min_i64(v) : VLM_OK;
}

vlm_status vlm_comm_allgather_rows(vlm_tensor *all) {
  if (!g_comm) return VLM_OK;
  vlm_status st = check_f32(all, "allgather");
  if (st != VLM_OK) return st;
  const int64_t rows = all->ndim > 0 ? all->shape[0] : 1, n = vlm_numel(all);
  if (rows % g_comm->world)
    return vlm_error(VLM_ERR_ARG, "allgather: %lld rows for %d ranks", (long long)rows, g_comm->world);
  const size_t bytes = (size_t)n * sizeof(float);
  float *h = host_bytes(all, bytes, &st);
  if (!h) return st;
  st = g_comm->allgather_f32(h, n / g_comm->world);
  put_back(all, h, bytes);
  return st;
}

vlm_status vlm_comm_bcast_bytes(void *buf, vlm_device dev, size_t bytes, int root) {
  if (!g_comm) return VLM_OK;
  vlm_tensor t = {0};
  t.data = buf;
  t.device = dev;
  vlm_status st = VLM_OK;
  void *h = host_bytes(&t, bytes, &st);
  if (!h) return st;
  st = g_comm->bcast(h, bytes, root);
  put_back(&t, h, bytes);
  return st;
}
