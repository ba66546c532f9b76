/* bench_clip: CLIP model timings on the CPU, fp32 and bf16.
 *
 *   The large-GEMM rate: a 2048^3 fp32 matmul through vlm_matmul_forward.
 *   ViT-B-32 (random open_clip init): image encoding at batch 1 and 8, text
 *   encoding at batch 8 (context 77), fp32, then with bf16 weights converted
 *   once (vlm_clip_params_bf16, as `vlm forward --precision bf16`) with the
 *   lowest cosine similarity of the bf16 features to the fp32 ones;
 *   the issue-3 training config ("small") at batch 32: forward + loss +
 *   backward + grad clip + AdamW, fp32.
 * Each figure is the median of R timed calls after one warm-up call.
 * The PyTorch peer (open_clip) runs in bench/peer/clip_peer.py;
 * bench/run_clip_bench.sh interleaves the two and prints the ratios.
 * Usage: bench_clip [--threads N] [--rounds R] [--bf16 | --f32] [--machine] [--train-only]
 *   --bf16 / --f32: only that precision; --machine: "VLM key value" lines;
 *   --train-only: only the training step (for profiling); --serve: one timed
 *   call per stdin line (see serve() below; used by bench/clip_compare.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static int g_machine = 0;
/* A figure, human-readable or as "VLM key value". */
static void report(const char *key, const char *label, double v, const char *unit) {
  if (g_machine) printf("VLM %s %.6g\n", key, v);
  else printf("  %-44s %10.2f %s\n", label, v, unit);
  fflush(stdout);
}

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

/* Times one encoding; returns a malloc'd copy of the features [B,E]. */
static float *encode(bench *b, int64_t B, int image, int rounds, const char *prec) {
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
  if (rounds > 0) {  /* rounds = 0: one untimed call (the features only) */
    double t = median_time(image ? run_image : run_text, b, rounds);
    char key[64], label[96];
    snprintf(key, sizeof key, "%s_b%lld_%s_ms", image ? "img" : "txt", (long long)B, prec);
    snprintf(label, sizeof label, "%s encoding, batch %lld, %s", image ? "image" : "text", (long long)B, prec);
    report(key, label, t * 1e3, "ms");
  } else {
    (image ? run_image : run_text)(b);
  }
  const vlm_tensor *f = image ? &b->va.features : &b->ta.features;
  size_t n = (size_t)vlm_numel(f);
  float *copy = xmalloc(n * sizeof(float));
  memcpy(copy, f->data, n * sizeof(float));
  free_inputs(b);
  if (image) vlm_vit_acts_free(&b->va);
  else vlm_text_acts_free(&b->ta);
  vlm_arena_free(&b->arena);
  return copy;
}

/* Lowest cosine similarity over the rows of a and b [B,E]. */
static double cosine_min(const float *a, const float *b, int64_t B, int64_t E) {
  double lo = 1.0;
  for (int64_t i = 0; i < B; i++) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t j = 0; j < E; j++) {
      double x = a[i * E + j], y = b[i * E + j];
      ab += x * y; aa += x * x; bb += y * y;
    }
    double c = ab / (sqrt(aa * bb) + 1e-30);
    if (c < lo) lo = c;
  }
  return lo;
}

/* The 2048^3 fp32 matmul rate through the public op (median of the rounds). */
static void gemm_rate(int rounds) {
  const int64_t N = 2048, sh[2] = {N, N};
  float *x = xmalloc((size_t)(N * N) * sizeof(float)), *w = xmalloc((size_t)(N * N) * sizeof(float)),
        *y = xmalloc((size_t)(N * N) * sizeof(float));
  vlm_rng r;
  vlm_rng_seed(&r, 3);
  vlm_rng_fill_normal(&r, x, (size_t)(N * N), 0.0f, 1.0f);
  vlm_rng_fill_normal(&r, w, (size_t)(N * N), 0.0f, 1.0f);
  vlm_tensor tx = vlm_tensor_cpu_f32(x, 2, sh), tw = vlm_tensor_cpu_f32(w, 2, sh), ty = vlm_tensor_cpu_f32(y, 2, sh);
  vlm_matmul_forward(&ty, &tx, &tw, NULL, 0, 0);
  double t[64];
  int n = rounds < 3 ? 3 : rounds > 64 ? 64 : rounds;
  for (int i = 0; i < n; i++) {
    double t0 = vlm_now();
    vlm_matmul_forward(&ty, &tx, &tw, NULL, 0, 0);
    t[i] = vlm_now() - t0;
  }
  qsort(t, (size_t)n, sizeof t[0], cmp_double);
  report("gemm_f32_gflops", "2048^3 fp32 matmul", 2.0 * N * N * N / t[n / 2] * 1e-9, "GFLOP/s");
  free(x); free(w); free(y);
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

static double g_phase[4]; /* zero, forward, backward, clip + AdamW: accumulated seconds (--train-only) */
static void run_step(void *ctx) {
  bench *b = ctx;
  double t0 = vlm_now();
  vlm_clip_params_zero(&b->g);
  double t1 = vlm_now();
  vlm_clip_forward(&b->c, &b->p, &b->ca, &b->images, &b->ids);
  double t2 = vlm_now();
  vlm_clip_backward(&b->c, &b->p, &b->g, &b->ca, &b->ids);
  double t3 = vlm_now();
  vlm_grad_clip(b->slots, b->n_slots, 1.0, NULL);
  vlm_adamw_config ac = {0.9f, 0.98f, 1e-6f, 0.2f};
  vlm_adamw_step(b->slots, b->n_slots, &ac, 1e-4f, ++b->step);
  vlm_clip_logit_scale_clamp(&b->p.logit_scale);
  double t4 = vlm_now();
  g_phase[0] += t1 - t0; g_phase[1] += t2 - t1; g_phase[2] += t3 - t2; g_phase[3] += t4 - t3;
}

static void train_setup(bench *b, int64_t B) {
  memset(b, 0, sizeof *b);
  VLM_CHECK(vlm_clip_config_builtin(&b->c, "small") == VLM_OK, "%s", vlm_last_error());
  VLM_CHECK(vlm_clip_params_init(&b->p, &b->c) == VLM_OK && vlm_clip_params_init(&b->g, &b->c) == VLM_OK &&
                vlm_clip_params_init(&b->m, &b->c) == VLM_OK && vlm_clip_params_init(&b->v, &b->c) == VLM_OK,
            "%s", vlm_last_error());
  vlm_clip_params_init_openclip(&b->p, &b->c, 1);
  slot_ctx s = {b, 0};
  vlm_clip_params_visit(&b->p, &b->c, count_slot, &s);
  b->n_slots = s.i;
  b->slots = xmalloc((size_t)b->n_slots * sizeof *b->slots);
  s.i = 0; vlm_clip_params_visit(&b->p, &b->c, fill_slot, &s);
  s.i = 0; vlm_clip_params_visit(&b->g, &b->c, grad_slot, &s);
  s.i = 0; vlm_clip_params_visit(&b->m, &b->c, m_slot, &s);
  s.i = 0; vlm_clip_params_visit(&b->v, &b->c, v_slot, &s);
  VLM_CHECK(vlm_clip_acts_init(&b->ca, &b->c, B, b->c.text.context_length, 1) == VLM_OK, "%s", vlm_last_error());
  make_inputs(b, B, b->c.text.context_length);
}

static void train_free(bench *b) {
  free_inputs(b);
  free(b->slots);
  vlm_clip_acts_free(&b->ca);
  vlm_clip_params_free(&b->p); vlm_clip_params_free(&b->g); vlm_clip_params_free(&b->m); vlm_clip_params_free(&b->v);
}

static void train_step(int64_t B, int rounds) {
  bench b;
  train_setup(&b, B);
  double t = median_time(run_step, &b, rounds);
  char key[64], label[96];
  snprintf(key, sizeof key, "train_b%lld_f32_ms", (long long)B);
  snprintf(label, sizeof label, "training step, config small, batch %lld, fp32", (long long)B);
  report(key, label, t * 1e3, "ms");
  train_free(&b);
}

/* --serve: every workload set up once; each stdin line names one, which is run
 * once and answered on stdout as "key value" (ms; GFLOP/s for gemm; the bf16
 * cosine for cos_*), so a driver can interleave single calls with the peer's
 * (bench/clip_compare.py). Keys: gemm, img_b1_f32, img_b8_f32, txt_b8_f32,
 * img_b1_bf16, img_b8_bf16, txt_b8_bf16, train_b32_f32, cos_img_b1, cos_img_b8,
 * cos_txt_b8, quit. */
typedef struct {
  const char *name;
  int64_t B;
  int image;
  bench st;
  float *f32;  /* fp32 features, for the cosine */
} serve_wl;

static void wl_setup(serve_wl *w, const bench *model) {
  w->st = *model;
  bench *b = &w->st;
  vlm_arena m;
  vlm_arena_measure(&m, VLM_CPU);
  if (w->image) {
    vlm_vit_acts_alloc(&b->va, &b->c.vision);
    vlm_vit_acts_layout(&b->va, &m, &b->c.vision, w->B, 0);
  } else {
    vlm_text_acts_alloc(&b->ta, &b->c.text, w->B);
    vlm_text_acts_layout(&b->ta, &m, &b->c.text, w->B, b->c.text.context_length, 0);
  }
  VLM_CHECK(vlm_arena_init(&b->arena, m.used, VLM_CPU) == VLM_OK, "%s", vlm_last_error());
  if (w->image) vlm_vit_acts_layout(&b->va, &b->arena, &b->c.vision, w->B, 0);
  else vlm_text_acts_layout(&b->ta, &b->arena, &b->c.text, w->B, b->c.text.context_length, 0);
  make_inputs(b, w->B, b->c.text.context_length);
}

static const vlm_tensor *wl_run(serve_wl *w, vlm_clip_params *p, int bf16) {
  w->st.p = *p;
  vlm_set_matmul_precision(bf16 ? VLM_PREC_BF16 : VLM_PREC_F32);
  (w->image ? run_image : run_text)(&w->st);
  vlm_set_matmul_precision(VLM_PREC_F32);
  return w->image ? &w->st.va.features : &w->st.ta.features;
}

static int serve(void) {
  bench model;
  memset(&model, 0, sizeof model);
  VLM_CHECK(vlm_clip_config_builtin(&model.c, "ViT-B-32") == VLM_OK, "%s", vlm_last_error());
  VLM_CHECK(vlm_clip_params_init(&model.p, &model.c) == VLM_OK, "%s", vlm_last_error());
  vlm_clip_params_init_openclip(&model.p, &model.c, 1);
  vlm_clip_params p32 = model.p, p16;
  VLM_CHECK(vlm_clip_params_bf16(&p16, &p32, &model.c, 0) == VLM_OK, "%s", vlm_last_error());
  serve_wl wl[3];
  memset(wl, 0, sizeof wl);
  wl[0].name = "img_b1", wl[0].B = 1, wl[0].image = 1;
  wl[1].name = "img_b8", wl[1].B = 8, wl[1].image = 1;
  wl[2].name = "txt_b8", wl[2].B = 8, wl[2].image = 0;
  for (int i = 0; i < 3; i++) {
    wl_setup(&wl[i], &model);
    const vlm_tensor *f = wl_run(&wl[i], &p32, 0);
    size_t n = (size_t)vlm_numel(f);
    wl[i].f32 = xmalloc(n * sizeof(float));
    memcpy(wl[i].f32, f->data, n * sizeof(float));
  }
  bench tr;
  train_setup(&tr, 32);
  /* the 2048^3 GEMM */
  const int64_t N = 2048, sh[2] = {N, N};
  float *gx = xmalloc((size_t)(N * N) * sizeof(float)), *gw = xmalloc((size_t)(N * N) * sizeof(float)),
        *gy = xmalloc((size_t)(N * N) * sizeof(float));
  vlm_rng r;
  vlm_rng_seed(&r, 3);
  vlm_rng_fill_normal(&r, gx, (size_t)(N * N), 0.0f, 1.0f);
  vlm_rng_fill_normal(&r, gw, (size_t)(N * N), 0.0f, 1.0f);
  vlm_tensor tx = vlm_tensor_cpu_f32(gx, 2, sh), tw = vlm_tensor_cpu_f32(gw, 2, sh), ty = vlm_tensor_cpu_f32(gy, 2, sh);
  printf("ready\n");
  fflush(stdout);
  char line[128];
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\r\n")] = 0;
    if (!strcmp(line, "quit")) break;
    double t0 = vlm_now(), v = -1;
    if (!strcmp(line, "gemm")) {
      vlm_matmul_forward(&ty, &tx, &tw, NULL, 0, 0);
      v = 2.0 * N * N * N / (vlm_now() - t0) * 1e-9;
    } else if (!strcmp(line, "train_b32_f32")) {
      run_step(&tr);
      v = (vlm_now() - t0) * 1e3;
    } else {
      for (int i = 0; i < 3; i++) {
        char k32[64], k16[64], kc[64];
        snprintf(k32, sizeof k32, "%s_f32", wl[i].name);
        snprintf(k16, sizeof k16, "%s_bf16", wl[i].name);
        snprintf(kc, sizeof kc, "cos_%s", wl[i].name);
        if (!strcmp(line, k32) || !strcmp(line, k16)) {
          t0 = vlm_now();
          wl_run(&wl[i], !strcmp(line, k16) ? &p16 : &p32, !strcmp(line, k16));
          v = (vlm_now() - t0) * 1e3;
        } else if (!strcmp(line, kc)) {
          const vlm_tensor *f = wl_run(&wl[i], &p16, 1);
          v = cosine_min(f->data, wl[i].f32, wl[i].B, model.c.embed_dim);
        }
      }
    }
    if (v < 0) printf("%s unknown\n", line);
    else printf("%s %.6g\n", line, v);
    fflush(stdout);
  }
  free(gx); free(gw); free(gy);
  train_free(&tr);
  for (int i = 0; i < 3; i++) {
    free(wl[i].f32);
    free_inputs(&wl[i].st);
    if (wl[i].image) vlm_vit_acts_free(&wl[i].st.va);
    else vlm_text_acts_free(&wl[i].st.ta);
    vlm_arena_free(&wl[i].st.arena);
  }
  vlm_clip_params_free(&p16);
  vlm_clip_params_free(&p32);
  return 0;
}

int main(int argc, char **argv) {
  int threads = 2, rounds = 5, do_f32 = 1, do_bf16 = 1, train_only = 0, serve_mode = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--bf16")) do_f32 = 0, do_bf16 = 1;
    else if (!strcmp(argv[i], "--f32")) do_f32 = 1, do_bf16 = 0;
    else if (!strcmp(argv[i], "--machine")) g_machine = 1;
    else if (!strcmp(argv[i], "--train-only")) train_only = 1;
    else if (!strcmp(argv[i], "--serve")) serve_mode = 1;
    else {
      fprintf(stderr, "usage: bench_clip [--threads N] [--rounds R] [--bf16 | --f32] [--machine] [--train-only] [--serve]\n");
      return 2;
    }
  }
  if (rounds < 1) rounds = 1;
  threads = vlm_threads_init(threads);
  if (serve_mode) return serve();
  if (g_machine) printf("VLM threads %d\n", threads);
  else printf("bench_clip: %d threads, median of %d rounds\n", threads, rounds);
  if (train_only) {
    train_step(32, rounds);
    double tot = g_phase[0] + g_phase[1] + g_phase[2] + g_phase[3];
    printf("  phases (all calls): zero %.0f%%, forward %.0f%%, backward %.0f%%, clip + AdamW %.0f%%\n",
           100 * g_phase[0] / tot, 100 * g_phase[1] / tot, 100 * g_phase[2] / tot, 100 * g_phase[3] / tot);
    return 0;
  }
  gemm_rate(rounds);
  bench b;
  memset(&b, 0, sizeof b);
  VLM_CHECK(vlm_clip_config_builtin(&b.c, "ViT-B-32") == VLM_OK, "%s", vlm_last_error());
  VLM_CHECK(vlm_clip_params_init(&b.p, &b.c) == VLM_OK, "%s", vlm_last_error());
  vlm_clip_params_init_openclip(&b.p, &b.c, 1);
  if (!g_machine) printf("ViT-B-32 (%.1f M parameters):\n", (double)vlm_clip_params_count(&b.p, &b.c, NULL, NULL) / 1e6);
  /* fp32 features of each case, kept for the bf16 cosine. */
  static const struct { int64_t B; int image; const char *name; } cases[3] = {
      {1, 1, "img_b1"}, {8, 1, "img_b8"}, {8, 0, "txt_b8"}};
  float *f32[3] = {NULL, NULL, NULL};
  if (do_f32 || do_bf16) {
    vlm_set_matmul_precision(VLM_PREC_F32);
    for (int i = 0; i < 3; i++) f32[i] = encode(&b, cases[i].B, cases[i].image, do_f32 ? rounds : 0, "f32");
  }
  if (do_bf16) {
    vlm_clip_params h;
    VLM_CHECK(vlm_clip_params_bf16(&h, &b.p, &b.c, 0) == VLM_OK, "%s", vlm_last_error());
    vlm_clip_params keep = b.p;
    b.p = h;
    vlm_set_matmul_precision(VLM_PREC_BF16);
    for (int i = 0; i < 3; i++) {
      float *f = encode(&b, cases[i].B, cases[i].image, rounds, "bf16");
      char key[64], label[96];
      snprintf(key, sizeof key, "cos_%s_bf16", cases[i].name);
      snprintf(label, sizeof label, "  lowest cosine(bf16, fp32 features), %s", cases[i].name);
      report(key, label, cosine_min(f, f32[i], cases[i].B, b.c.embed_dim), "");
      free(f);
    }
    vlm_set_matmul_precision(VLM_PREC_F32);
    vlm_clip_params_free(&h);
    b.p = keep;
  }
  for (int i = 0; i < 3; i++) free(f32[i]);
  vlm_clip_params_free(&b.p);
  if (do_f32) train_step(32, rounds);
  return 0;
}
