/* An emulated GPU for testing the device paths where there is none
 * (cmake -DVLM_CUDA_EMULATE=ON; scripts/test.sh builds build-emu with it).
 *
 * "Device" memory is a memfd mapped twice: the address handed out (the
 * tensors' data pointers) is mapped PROT_NONE, so model or app code that reads
 * or writes a VLM_CUDA tensor's memory directly, instead of going through the
 * op set, vlm_memcpy, vlm_copy or the vlm_get / vlm_set helpers, faults
 * (SIGSEGV) at that line; the backend calls below reach the same pages through
 * a second, read-write mapping, running the CPU kernels (core/cpu, the same
 * signatures) on views whose pointers are translated and whose device is
 * VLM_CPU. Numerics are the CPU's, so this checks the device discipline and the
 * device-side control flow (uploads, downloads, host copies), not the CUDA
 * kernels: test_cuda_ops compares those on a real GPU. */
#define _GNU_SOURCE   /* memfd_create */
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/cpu/cpu.h"
#include "core/cuda/cuda.h"
#include "core/ref/ref.h"

typedef struct block { char *dev, *rw; size_t len; struct block *next; } block;
static block *g_blocks;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* The read-write alias of a device address (host addresses pass through). */
static void *rw(const void *p) {
  if (!p) return NULL;
  const char *c = p;
  pthread_mutex_lock(&g_lock);
  void *r = (void *)p;
  for (block *b = g_blocks; b; b = b->next)
    if (c >= b->dev && c < b->dev + b->len) {
      r = b->rw + (c - b->dev);
      break;
    }
  pthread_mutex_unlock(&g_lock);
  return r;
}

int vlm_cuda_available(void) { return 1; }
int vlm_cuda_select(int index) { return index < 0 ? -1 : 0; }   /* one emulated GPU */
const char *vlm_cuda_describe(void) {
  return "emulated GPU (VLM_CUDA_EMULATE: device memory inaccessible to the host, CPU kernels)";
}

void *vlm_cuda_alloc(size_t bytes) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE), len = (bytes + page - 1) / page * page;
  if (len == 0) len = page;
  block *b = malloc(sizeof *b);
  int fd = memfd_create("vlm-emulated-gpu", MFD_CLOEXEC);
  if (!b || fd < 0 || ftruncate(fd, (off_t)len) != 0) {
    free(b);
    if (fd >= 0) close(fd);
    return NULL;
  }
  void *d = mmap(NULL, len, PROT_NONE, MAP_SHARED, fd, 0);
  void *r = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (d == MAP_FAILED || r == MAP_FAILED) {
    if (d != MAP_FAILED) munmap(d, len);
    if (r != MAP_FAILED) munmap(r, len);
    free(b);
    return NULL;
  }
  pthread_mutex_lock(&g_lock);
  b->dev = d;
  b->rw = r;
  b->len = len;
  b->next = g_blocks;
  g_blocks = b;
  pthread_mutex_unlock(&g_lock);
  return d;   /* zero-filled */
}

void vlm_cuda_free(void *p) {
  if (!p) return;
  pthread_mutex_lock(&g_lock);
  for (block **pb = &g_blocks; *pb; pb = &(*pb)->next)
    if ((*pb)->dev == p) {
      block *b = *pb;
      *pb = b->next;
      munmap(b->dev, b->len);
      munmap(b->rw, b->len);
      free(b);
      break;
    }
  pthread_mutex_unlock(&g_lock);
}

void vlm_cuda_memcpy(void *dst, int dst_dev, const void *src, int src_dev, size_t bytes) {
  memmove(dst_dev ? rw(dst) : dst, src_dev ? rw(src) : src, bytes);
}

void vlm_cuda_sync(const char *what) { (void)what; }
int vlm_cuda_host_pin(void *p, size_t bytes) { return p && bytes; }   /* host memory is what it is */
void vlm_cuda_host_unpin(void *p) { (void)p; }
void vlm_cuda_attention_set_tiling(int on) { (void)on; }
void vlm_cuda_attention_set_cudnn(int mode) { (void)mode; }
long long vlm_cuda_attention_cudnn_runs(void) { return 0; }
int vlm_cuda_cudnn_probe(char *msg, size_t n) {
  snprintf(msg, n, "the emulated GPU has no cuDNN");
  return -1;
}

/* A view of a device tensor as a CPU one (NULL stays NULL). */
#define H(t) host_view(t, &(vlm_tensor){0})
static vlm_tensor *host_view(const vlm_tensor *t, vlm_tensor *tmp) {
  if (!t) return NULL;
  *tmp = *t;
  tmp->data = rw(t->data);
  tmp->device = VLM_CPU;
  return tmp;
}

void vlm_cuda_fill(vlm_tensor *t, float value) {   /* any dtype for 0, as the CUDA kernel */
  if (value == 0.0f) vlm_zero(H(t));
  else vlm_fill(H(t), value);
}
void vlm_cuda_convert(vlm_tensor *dst, const vlm_tensor *src) { vlm_copy(H(dst), H(src)); }
void vlm_cuda_scale(vlm_tensor *t, float s) { vlm_scale(H(t), s); }
double vlm_cuda_dot(const vlm_tensor *a, const vlm_tensor *b) { return vlm_dot(H(a), H(b)); }

void vlm_cuda_patchify(vlm_tensor *patches, const vlm_tensor *image, int64_t P) {
  int64_t B = image->shape[0], Hh = image->shape[2], G = Hh / P;
  const float *img = rw(image->data);
  float *out = rw(patches->data);
  for (int64_t r = 0; r < B * G * G; r++) {
    int64_t b = r / (G * G), gy = (r / G) % G, gx = r % G;
    for (int64_t ch = 0; ch < 3; ch++)
      for (int64_t ky = 0; ky < P; ky++)
        memcpy(out + r * 3 * P * P + (ch * P + ky) * P, img + ((b * 3 + ch) * Hh + gy * P + ky) * Hh + gx * P,
               (size_t)P * sizeof(float));
  }
}

void vlm_cuda_copy_rows(float *dst, int64_t dst_row0, int64_t dst_step, const float *src, int64_t src_row0,
                        int64_t src_step, int64_t n, int64_t rows_per_copy, int64_t W) {
  float *d = rw(dst);
  const float *s = rw(src);
  for (int64_t i = 0; i < n; i++)
    memmove(d + (dst_row0 + i * dst_step) * W, s + (src_row0 + i * src_step) * W,
            (size_t)(rows_per_copy * W) * sizeof(float));
}

void vlm_cuda_matmul_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b, const vlm_tensor *bias,
                             int trans_a, int trans_b, vlm_precision prec) {
  vlm_cpu_matmul_forward(H(out), H(a), H(b), H(bias), trans_a, trans_b, prec);
}
void vlm_cuda_matmul_backward(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                              const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b, vlm_precision prec) {
  vlm_cpu_matmul_backward(H(da), H(db), H(dbias), H(dout), H(a), H(b), trans_a, trans_b, prec);
}
void vlm_cuda_matmul_backward_set(vlm_tensor *da, vlm_tensor *db, vlm_tensor *dbias, const vlm_tensor *dout,
                                  const vlm_tensor *a, const vlm_tensor *b, int trans_a, int trans_b,
                                  vlm_precision prec) {
  vlm_cpu_matmul_backward_set(H(da), H(db), H(dbias), H(dout), H(a), H(b), trans_a, trans_b, prec);
}
void vlm_cuda_linear_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *w, const vlm_tensor *bias,
                             const vlm_act *act, const vlm_tensor *residual, vlm_precision prec) {
  if (vlm_cols(a) == 0) /* the fast kernel takes no empty sum with an epilogue; the reference does */
    vlm_ref_linear_forward(H(out), H(a), H(w), H(bias), act, H(residual), prec);
  else
    vlm_cpu_linear_forward(H(out), H(a), H(w), H(bias), act, H(residual), prec);
}
void vlm_cuda_layernorm_forward(vlm_tensor *out, vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *x,
                                const vlm_tensor *w, const vlm_tensor *b, float eps) {
  vlm_cpu_layernorm_forward(H(out), H(mean), H(rstd), H(x), H(w), H(b), eps);
}
void vlm_cuda_layernorm_backward(vlm_tensor *dx, vlm_tensor *dw, vlm_tensor *db, const vlm_tensor *dout,
                                 const vlm_tensor *x, const vlm_tensor *w, const vlm_tensor *mean,
                                 const vlm_tensor *rstd) {
  vlm_cpu_layernorm_backward(H(dx), H(dw), H(db), H(dout), H(x), H(w), H(mean), H(rstd));
}
void vlm_cuda_act_forward(vlm_act act, vlm_tensor *out, const vlm_tensor *x) { vlm_cpu_act_forward(act, H(out), H(x)); }
void vlm_cuda_act_backward(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x) {
  vlm_cpu_act_backward(act, H(dx), H(dout), H(x));
}
void vlm_cuda_act_backward_set(vlm_act act, vlm_tensor *dx, const vlm_tensor *dout, const vlm_tensor *x) {
  vlm_cpu_act_backward_set(act, H(dx), H(dout), H(x));
}
void vlm_cuda_softmax_forward(vlm_tensor *y, const vlm_tensor *x) { vlm_cpu_softmax_forward(H(y), H(x)); }
void vlm_cuda_softmax_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *y) {
  vlm_cpu_softmax_backward(H(dx), H(dy), H(y));
}
void vlm_cuda_attention_forward(vlm_tensor *out, vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                const vlm_tensor *v, int heads, const vlm_tensor *key_padding_mask, int causal,
                                float scale) {
  if (q->dtype == VLM_BF16 || out->dtype == VLM_BF16)  // bf16 storage: the dispatcher's widening path
    vlm_attention_forward(H(out), H(probs), H(q), H(k), H(v), heads, H(key_padding_mask), causal, scale);
  else
    vlm_cpu_attention_forward(H(out), H(probs), H(q), H(k), H(v), heads, H(key_padding_mask), causal, scale);
}
void vlm_cuda_attention_backward(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                 const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                 const vlm_tensor *v, int heads, float scale) {
  vlm_cpu_attention_backward(H(dq), H(dk), H(dv), H(dout), H(probs), H(q), H(k), H(v), heads, scale);
}
/* The "set" form as the GPU's: the three [B, L, W] views written, whatever they held
 * (zeroed row by row here, then the accumulating kernel). */
static void zero_view3(const vlm_tensor *t) {
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t i = 0; i < t->shape[1]; i++)
      memset((float *)t->data + b * t->stride[0] + i * t->stride[1], 0, sizeof(float) * (size_t)t->shape[2]);
}
int vlm_cuda_attention_backward_set(vlm_tensor *dq, vlm_tensor *dk, vlm_tensor *dv, const vlm_tensor *dout,
                                    const vlm_tensor *probs, const vlm_tensor *q, const vlm_tensor *k,
                                    const vlm_tensor *v, int heads, float scale) {
  if (!dq || !dk || !dv) return 0;
  zero_view3(H(dq)), zero_view3(H(dk)), zero_view3(H(dv));
  vlm_cpu_attention_backward(H(dq), H(dk), H(dv), H(dout), H(probs), H(q), H(k), H(v), heads, scale);
  return 1;
}
void vlm_cuda_embedding_forward(vlm_tensor *out, const vlm_tensor *ids, const vlm_tensor *table,
                                const vlm_tensor *pos) {
  vlm_cpu_embedding_forward(H(out), H(ids), H(table), H(pos));
}
void vlm_cuda_embedding_backward(vlm_tensor *dtable, vlm_tensor *dpos, const vlm_tensor *dout,
                                 const vlm_tensor *ids) {
  vlm_cpu_embedding_backward(H(dtable), H(dpos), H(dout), H(ids));
}
void vlm_cuda_add_forward(vlm_tensor *out, const vlm_tensor *a, const vlm_tensor *b) {
  vlm_cpu_add_forward(H(out), H(a), H(b));
}
void vlm_cuda_add_backward(vlm_tensor *da, vlm_tensor *db, const vlm_tensor *dout) {
  vlm_cpu_add_backward(H(da), H(db), H(dout));
}
void vlm_cuda_l2norm_forward(vlm_tensor *y, vlm_tensor *norm, const vlm_tensor *x, float eps) {
  vlm_cpu_l2norm_forward(H(y), H(norm), H(x), eps);
}
void vlm_cuda_l2norm_backward(vlm_tensor *dx, const vlm_tensor *dy, const vlm_tensor *x, const vlm_tensor *norm,
                              float eps) {
  vlm_cpu_l2norm_backward(H(dx), H(dy), H(x), H(norm), eps);
}
void vlm_cuda_cross_entropy_forward(vlm_tensor *loss, vlm_tensor *probs, const vlm_tensor *logits,
                                    const vlm_tensor *targets, int64_t ignore_index) {
  vlm_cpu_cross_entropy_forward(H(loss), H(probs), H(logits), H(targets), ignore_index);
}
void vlm_cuda_cross_entropy_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *probs,
                                     const vlm_tensor *targets, int64_t ignore_index) {
  vlm_cpu_cross_entropy_backward(H(dlogits), H(dloss), H(probs), H(targets), ignore_index);
}
void vlm_cuda_sigmoid_loss_forward(vlm_tensor *loss, const vlm_tensor *logits, int64_t off) {
  vlm_cpu_sigmoid_loss_forward(H(loss), H(logits), off);
}
void vlm_cuda_sigmoid_loss_backward(vlm_tensor *dlogits, const vlm_tensor *dloss, const vlm_tensor *logits,
                                    int64_t off) {
  vlm_cpu_sigmoid_loss_backward(H(dlogits), H(dloss), H(logits), off);
}

/* The optimizer's slots with CPU views of their tensors (n small: the model's parameter count). */
static vlm_param_slot *host_slots(const vlm_param_slot *slots, int n, vlm_tensor *views) {
  vlm_param_slot *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
  VLM_CHECK(h, "emulated GPU: out of memory");
  for (int i = 0; i < n; i++) {
    h[i] = slots[i];
    vlm_tensor *v = views + 4 * i, *src[4] = {slots[i].param, slots[i].grad, slots[i].m, slots[i].v};
    for (int k = 0; k < 4; k++) {
      v[k] = *src[k];
      v[k].data = rw(src[k]->data);
      v[k].device = VLM_CPU;
    }
    h[i].param = &v[0];
    h[i].grad = &v[1];
    h[i].m = &v[2];
    h[i].v = &v[3];
  }
  return h;
}

void vlm_cuda_adamw_step(vlm_param_slot *slots, int n, const vlm_adamw_config *c, float lr, int64_t t) {
  vlm_tensor *views = malloc((size_t)(n > 0 ? 4 * n : 1) * sizeof *views);
  VLM_CHECK(views, "emulated GPU: out of memory");
  vlm_param_slot *h = host_slots(slots, n, views);
  vlm_cpu_adamw_step(h, n, c, lr, t);
  free(h);
  free(views);
}

double vlm_cuda_grad_sumsq(vlm_param_slot *slots, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) {
    const float *g = rw(slots[i].grad->data);
    for (int64_t j = 0; j < vlm_numel(slots[i].grad); j++) s += (double)g[j] * g[j];
  }
  return s;
}

void vlm_cuda_grad_scale(vlm_param_slot *slots, int n, float k) {
  for (int i = 0; i < n; i++) {
    float *g = rw(slots[i].grad->data);
    for (int64_t j = 0; j < vlm_numel(slots[i].grad); j++) g[j] *= k;
  }
}
