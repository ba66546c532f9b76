/* bench_clip: CLIP model timings on the CPU, fp32 (and bf16 matmul inputs with --bf16).
 *
 *   ViT-B-32 (random open_clip init): image encoding at batch 1 and 8, text
 *   encoding at batch 8 (context 77); the issue-3 training config ("small") at
 *   batch 32: forward + loss + backward + AdamW.
 * No PyTorch peer is measured here (none is installed on this machine).
 * Usage: bench_clip [--threads N] [--rounds R] [--bf16] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

static double median_time(void (*fn)(void *), void *ctx, int rounds) {
  double t[64];
  if (rounds > 64) rounds = 64;
  fn(ctx); /* warm-up */
  for (int i = 0; i < rounds; i++) {
    double t0 = vlm_now();
    fn(ctx);
    t[i] = vlm_now() - t0;
  }
  qsort(t, (size_t)rounds, sizeof t[0], cmp_double);
  return t[rounds / 2];
}

typedef struct {
  vlm_clip_config c;
  vlm_clip_params p, g, m, v;
  vlm_arena arena;
  vlm_vit_acts va;
  vlm_text_acts ta;
  vlm_clip_acts ca;
  vlm_tensor images, ids;
  vlm_param_slot *slots;
  int n_slots;
  int64_t step;
} bench;

static void *xmalloc(size_t n) {
  void *p = calloc(1, n ? n : 1);
  VLM_CHECK(p, "bench_clip: out of memory");
  return p;
}

static void make_inputs(bench *b, int64_t B, int64_t L) {
  int64_t S = b->c.vision.image_size, is[4] = {B, 3, S, S}, ts[2] = {B, L};
  float *img = xmalloc((size_t)(B * 3 * S * S) * sizeof(float));
  vlm_rng r;
  vlm_rng_seed(&r, 7);
  vlm_rng_fill_normal(&r, img, (size_t)(B * 3 * S * S), 0.0f, 1.0f);
  int64_t *ids = xmalloc((size_t)(B * L) * sizeof(int64_t));
  for (int64_t i = 0; i < B; i++) {
    int64_t len = 5 + (i * 7) % (L - 6);
    for (int64_t l = 0; l < len; l++) ids[i * L + l] = 1 + (int64_t)vlm_rng_below(&r, (uint64_t)b->c.text.vocab_size - 2);
    ids[i * L + len] = b->c.text.vocab_size - 1;
  }
  b->images = vlm_tensor_cpu_f32(img, 4, is);
  b->ids = vlm_tensor_make(ids, VLM_I64, VLM_CPU, 2, ts);
}

static void free_inputs(bench *b) {
  free(b->images.data);
  free(b->ids.data);
}

static void run_image(void *ctx) {
  bench *b = ctx;
  vlm_vit_forward(&b->c.vision, &b->p.visual, &b->va, &b->images);
}

static void run_text(void *ctx) {
  bench *b = ctx;
  vlm_text_forward(&b->c.text, &b->p.text, &b->ta, &b->ids);
}

static void encode(bench *b, int64_t B, int image, int rounds) {
  vlm_arena m;
  vlm_arena_measure(&m, VLM_CPU);
  if (image) {
    vlm_vit_acts_alloc(&b->va, &b->c.vision);
    vlm_vit_acts_layout(&b->va, &m, &b->c.vision, B, 0);
  } else {
    vlm_text_acts_alloc(&b->ta, &b->c.text, B);
    vlm_text_acts_layout(&b->ta, &m, &b->c.text, B, b->c.text.context_length, 0);
  }
  VLM_CHECK(vlm_arena_init(&b->arena, m.used, VLM_CPU) == VLM_OK, "%s", vlm_last_error());
  if (image) vlm_vit_acts_layout(&b->va, &b->arena, &b->c.vision, B, 0);
  else vlm_text_acts_layout(&b->ta, &b->arena, &b->c.text, B, b->c.text.context_length, 0);
  make_inputs(b, B, b->c.text.context_length);
  double t = median_time(image ? run_image : run_text, b, rounds);
  printf("  %s encoding, batch %lld: %8.1f ms  (activations %.0f MB)\n", image ? "image" : "text ", (long long)B,
         t * 1e3, (double)m.used / 1e6);
  free_inputs(b);
  if (image) vlm_vit_acts_free(&b->va);
  else vlm_text_acts_free(&b->ta);
  vlm_arena_free(&b->arena);
}

typedef struct { bench *b; int i; } slot_ctx;
static void count_slot(void *ctx, const char *name, vlm_tensor *t) { (void)name; (void)t; ((slot_ctx *)ctx)->i++; }
static void fill_slot(void *ctx, const char *name, vlm_tensor *t) {
  slot_ctx *s = ctx;
  vlm_param_slot *sl = &s->b->slots[s->i++];
  sl->name = name;
  sl->param = t;
  sl->decay = t->ndim >= 2 && !strstr(name, "positional_embedding");
}
static void grad_slot(void *ctx, const char *name, vlm_tensor *t) { slot_ctx *s = ctx; s->b->slots[s->i++].grad = t; }
static void m_slot(void *ctx, const char *name, vlm_tensor *t) { slot_ctx *s = ctx; s->b->slots[s->i++].m = t; }
static void v_slot(void *ctx, const char *name, vlm_tensor *t) { slot_ctx *s = ctx; s->b->slots[s->i++].v = t; }

static void run_step(void *ctx) {
  bench *b = ctx;
  vlm_clip_params_zero(&b->g);
  vlm_clip_forward(&b->c, &b->p, &b->ca, &b->images, &b->ids);
  vlm_clip_backward(&b->c, &b->p, &b->g, &b->ca, &b->ids);
  vlm_grad_clip(b->slots, b->n_slots, 1.0, NULL);
  vlm_adamw_config ac = {0.9f, 0.98f, 1e-6f, 0.2f};
  vlm_adamw_step(b->slots, b->n_slots, &ac, 1e-4f, ++b->step);
  vlm_clip_logit_scale_clamp(&b->p.logit_scale);
}

static void train_step(int64_t B, int rounds) {
  bench b;
  memset(&b, 0, sizeof b);
  VLM_CHECK(vlm_clip_config_builtin(&b.c, "small") == VLM_OK, "%s", vlm_last_error());
  VLM_CHECK(vlm_clip_params_init(&b.p, &b.c) == VLM_OK && vlm_clip_params_init(&b.g, &b.c) == VLM_OK &&
                vlm_clip_params_init(&b.m, &b.c) == VLM_OK && vlm_clip_params_init(&b.v, &b.c) == VLM_OK,
            "%s", vlm_last_error());
  vlm_clip_params_init_openclip(&b.p, &b.c, 1);
  slot_ctx s = {&b, 0};
  vlm_clip_params_visit(&b.p, &b.c, count_slot, &s);
  b.n_slots = s.i;
  b.slots = xmalloc((size_t)b.n_slots * sizeof *b.slots);
  s.i = 0; vlm_clip_params_visit(&b.p, &b.c, fill_slot, &s);
  s.i = 0; vlm_clip_params_visit(&b.g, &b.c, grad_slot, &s);
  s.i = 0; vlm_clip_params_visit(&b.m, &b.c, m_slot, &s);
  s.i = 0; vlm_clip_params_visit(&b.v, &b.c, v_slot, &s);
  VLM_CHECK(vlm_clip_acts_init(&b.ca, &b.c, B, b.c.text.context_length, 1) == VLM_OK, "%s", vlm_last_error());
  make_inputs(&b, B, b.c.text.context_length);
  double t = median_time(run_step, &b, rounds);
  printf("  training step (config \"small\", batch %lld): %8.1f ms  (activations %.0f MB)\n", (long long)B, t * 1e3,
         (double)b.ca.arena.used / 1e6);
  free_inputs(&b);
  free(b.slots);
  vlm_clip_acts_free(&b.ca);
  vlm_clip_params_free(&b.p); vlm_clip_params_free(&b.g); vlm_clip_params_free(&b.m); vlm_clip_params_free(&b.v);
}

int main(int argc, char **argv) {
  int threads = 2, rounds = 5, bf16 = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--bf16")) bf16 = 1;
    else {
      fprintf(stderr, "usage: bench_clip [--threads N] [--rounds R] [--bf16]\n");
      return 2;
    }
  }
  if (rounds < 1) rounds = 1;
  threads = vlm_threads_init(threads);
  if (bf16) vlm_set_matmul_precision(VLM_PREC_BF16);
  printf("bench_clip: %d threads, matmul inputs %s, median of %d rounds\n", threads, bf16 ? "bf16" : "fp32", rounds);
  bench b;
  memset(&b, 0, sizeof b);
  VLM_CHECK(vlm_clip_config_builtin(&b.c, "ViT-B-32") == VLM_OK, "%s", vlm_last_error());
  VLM_CHECK(vlm_clip_params_init(&b.p, &b.c) == VLM_OK, "%s", vlm_last_error());
  vlm_clip_params_init_openclip(&b.p, &b.c, 1);
  printf("ViT-B-32 (%.1f M parameters):\n", (double)vlm_clip_params_count(&b.p, &b.c, NULL, NULL) / 1e6);
  vlm_clip_params f32 = b.p;
  if (bf16) VLM_CHECK(vlm_clip_params_bf16(&b.p, &f32, &b.c) == VLM_OK, "%s", vlm_last_error());
  encode(&b, 1, 1, rounds);
  encode(&b, 8, 1, rounds);
  encode(&b, 8, 0, rounds);
  vlm_clip_params_free(&b.p);
  if (bf16) vlm_clip_params_free(&f32);
  train_step(32, rounds);
  return 0;
}
