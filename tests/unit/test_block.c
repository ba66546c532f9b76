/* The pre-LN transformer block: finite-difference gradients of x and of every
 * parameter (self, causal, key-padded; GELU and QuickGELU; both kernel modes),
 * and the fast kernels against the reference ones on a ViT-like shape; the
 * pooled-rows last block (inference and training) against the full block. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

typedef struct {
  vlm_block_config c;
  vlm_block_params p, g;
  vlm_block_acts s;
  vlm_block_scratch scr;
  vlm_arena pa, ga, aa;
  vlm_tensor x, dx, y, dy, mask;
  int causal, use_mask;
  int64_t B, L;
} blk;

static void layout(blk *b, vlm_arena *pa, vlm_arena *ga, vlm_arena *aa) {
  vlm_block_params_layout(&b->p, pa, &b->c);
  vlm_block_params_layout(&b->g, ga, &b->c);
  vlm_block_acts_layout(&b->s, aa, &b->c, b->B, b->L);
  vlm_block_scratch_layout(&b->scr, aa, &b->c, b->B, b->L);
  b->x = vlm_arena_tensor3(aa, VLM_F32, b->B, b->L, b->c.width);
  b->dx = vlm_arena_tensor3(aa, VLM_F32, b->B, b->L, b->c.width);
  b->y = vlm_arena_tensor3(aa, VLM_F32, b->B, b->L, b->c.width);
  b->dy = vlm_arena_tensor3(aa, VLM_F32, b->B, b->L, b->c.width);
  b->mask = vlm_arena_tensor2(aa, VLM_U8, b->B, b->L);
}

static void init_param(void *ctx, const char *name, vlm_tensor *t) {
  uint64_t *seed = ctx;
  float std = strstr(name, "ln_") && strstr(name, "weight") ? 0.2f : 0.3f;
  vt_fill_normal(vlm_f32(t), vlm_numel(t), (*seed)++, std);
  if (strstr(name, "ln_") && strstr(name, "weight"))
    for (int64_t i = 0; i < vlm_numel(t); i++) vlm_f32(t)[i] += 1.0f;
}

static void blk_init(blk *b, int64_t B, int64_t L, int64_t W, int64_t H, int64_t M, vlm_act act, int causal,
                     int use_mask, uint64_t seed) {
  memset(b, 0, sizeof *b);
  b->c = (vlm_block_config){W, H, M, act, 1e-5f};
  b->B = B; b->L = L; b->causal = causal; b->use_mask = use_mask;
  vlm_arena mp, mg, ma;
  vlm_arena_measure(&mp, VLM_CPU); vlm_arena_measure(&mg, VLM_CPU); vlm_arena_measure(&ma, VLM_CPU);
  layout(b, &mp, &mg, &ma);
  vlm_arena_init(&b->pa, mp.used, VLM_CPU); vlm_arena_init(&b->ga, mg.used, VLM_CPU);
  vlm_arena_init(&b->aa, ma.used, VLM_CPU);
  layout(b, &b->pa, &b->ga, &b->aa);
  vlm_block_params_visit(&b->p, init_param, &seed);
  vt_fill_normal(vlm_f32(&b->x), vlm_numel(&b->x), seed + 100, 1.0f);
  uint8_t *m = b->mask.data;
  for (int64_t i = 0; i < B; i++)
    for (int64_t j = 0; j < L; j++) m[i * L + j] = (j >= L - i - 1) && j > 0; /* row i: last i+1 keys padded */
}

static void blk_free(blk *b) { vlm_arena_free(&b->pa); vlm_arena_free(&b->ga); vlm_arena_free(&b->aa); }

static void fwd(void *ctx) {
  blk *b = ctx;
  vlm_block_forward(&b->c, &b->p, &b->s, &b->y, &b->x, b->use_mask ? &b->mask : NULL, b->causal);
}
static void bwd(void *ctx) {
  blk *b = ctx;
  vlm_block_backward(&b->c, &b->p, &b->g, &b->s, &b->scr, &b->dx, &b->dy, &b->x, b->causal);
}

typedef struct { vt_gc_input *in; int n; vlm_block_params *g; } collect_ctx;
static void collect(void *ctx, const char *name, vlm_tensor *t) {
  collect_ctx *c = ctx;
  c->in[c->n].name = name;
  c->in[c->n].x = vlm_f32(t);
  c->in[c->n].n = vlm_numel(t);
  c->n++;
}
static void collect_grad(void *ctx, const char *name, vlm_tensor *t) {
  collect_ctx *c = ctx;
  c->in[c->n++].grad = vlm_f32(t);
}

static void gradcheck_block(const char *what, vlm_act act, int causal, int use_mask) {
  blk b;
  blk_init(&b, 3, 5, 8, 2, 16, act, causal, use_mask, 7);
  vt_gc_input in[13];
  collect_ctx cc = {in, 0, NULL};
  vlm_block_params_visit(&b.p, collect, &cc);
  cc.n = 0;
  vlm_block_params_visit(&b.g, collect_grad, &cc);
  in[12] = (vt_gc_input){"x", vlm_f32(&b.x), vlm_f32(&b.dx), vlm_numel(&b.x)};
  vt_gradcheck g = {fwd, bwd, &b, vlm_f32(&b.y), vlm_f32(&b.dy), vlm_numel(&b.y), in, 13, 1e-2, 1e-3, 64, 99};
  vt_gradcheck_run(what, &g);
  blk_free(&b);
}

/* Fast vs reference on a ViT-like shape: output and every gradient. */
static void fast_vs_ref(int causal, int use_mask) {
  blk r, f;
  blk_init(&r, 2, 50, 64, 4, 256, VLM_ACT_GELU, causal, use_mask, 11);
  blk_init(&f, 2, 50, 64, 4, 256, VLM_ACT_GELU, causal, use_mask, 11);
  vt_fill_normal(vlm_f32(&r.dy), vlm_numel(&r.dy), 5, 1.0f);
  memcpy(f.dy.data, r.dy.data, vlm_nbytes(&r.dy));
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  fwd(&r); bwd(&r);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  fwd(&f); bwd(&f);
  double e = vt_max_rel(vlm_f32(&f.y), vlm_f32(&r.y), vlm_numel(&r.y), 1e-30);
  CHECK(e < 1e-5, "block forward fast vs ref: %g", e);
  e = vt_max_rel(vlm_f32(&f.dx), vlm_f32(&r.dx), vlm_numel(&r.dx), 1e-30);
  CHECK(e < 1e-5, "block dx fast vs ref: %g", e);
  /* Parameter gradients: compare tensor by tensor (each relative to its own max). */
  vt_gc_input gr[12], gf[12];
  collect_ctx cr = {gr, 0, NULL}, cf = {gf, 0, NULL};
  vlm_block_params_visit(&r.g, collect, &cr);
  vlm_block_params_visit(&f.g, collect, &cf);
  for (int i = 0; i < 12; i++) {
    e = vt_max_rel(gf[i].x, gr[i].x, gr[i].n, 1e-30);
    CHECK(e < 1e-5, "block d%s fast vs ref: %g", gr[i].name, e);
  }
  blk_free(&r);
  blk_free(&f);
}

/* core/block.c's switch for bf16 LayerNorm / MLP activations in training (tests only). */
void vlm_block_train_bf16_acts(int on);

/* In bf16 matmul precision the block stores ln_1, ln_2 and the MLP activation
 * as bf16: the output and every gradient must be bit-identical to storing
 * them as f32 (the matmuls round those inputs to bf16 anyway), and the
 * residual adds fused into the GEMMs round as the separate add did. */
static void bf16_acts_identical(const char *mode, vlm_act act, int causal, int use_mask) {
  blk o, n;
  blk_init(&o, 2, 7, 32, 2, 64, act, causal, use_mask, 21);
  blk_init(&n, 2, 7, 32, 2, 64, act, causal, use_mask, 21);
  vt_fill_normal(vlm_f32(&o.dy), vlm_numel(&o.dy), 6, 1.0f);
  memcpy(n.dy.data, o.dy.data, vlm_nbytes(&o.dy));
  vlm_set_matmul_precision(VLM_PREC_BF16);
  vlm_block_train_bf16_acts(0);
  fwd(&o); bwd(&o);
  vlm_block_train_bf16_acts(1);
  fwd(&n); bwd(&n);
  vlm_set_matmul_precision(VLM_PREC_F32);
  CHECK(memcmp(o.y.data, n.y.data, vlm_nbytes(&o.y)) == 0, "bf16 acts (%s): forward differs", mode);
  CHECK(memcmp(o.dx.data, n.dx.data, vlm_nbytes(&o.dx)) == 0, "bf16 acts (%s): dx differs", mode);
  vt_gc_input go[12], gn[12];
  collect_ctx co = {go, 0, NULL}, cn = {gn, 0, NULL};
  vlm_block_params_visit(&o.g, collect, &co);
  vlm_block_params_visit(&n.g, collect, &cn);
  for (int i = 0; i < 12; i++)
    CHECK(memcmp(go[i].x, gn[i].x, (size_t)go[i].n * 4) == 0, "bf16 acts (%s): d%s differs", mode, go[i].name);
  /* The activation really is stored as bf16 now: its buffer's first half holds
   * the rounded values of act(fc). */
  const uint16_t *h = n.s.act.data;
  const float *fc = vlm_f32(&n.s.fc);
  float y0 = fc[0] * (act == VLM_ACT_GELU ? 0.5f * (float)erfc(-fc[0] / sqrt(2.0)) : 1.0f / (1.0f + expf(-1.702f * fc[0])));
  CHECK(fabsf(vlm_bf16_to_f32(h[0]) - y0) <= 1e-2f * fabsf(y0) + 1e-6f, "bf16 acts (%s): act[0] %g vs %g", mode,
        (double)vlm_bf16_to_f32(h[0]), (double)y0);
  blk_free(&o);
  blk_free(&n);
}

/* act_forward with a BF16 out: each value is the f32 result rounded once. */
static void act_bf16_out(const char *mode) {
  enum { N = 1003 };
  vlm_arena a;
  vlm_arena_init(&a, 1 << 16, VLM_CPU);
  vlm_tensor x = vlm_arena_tensor1(&a, VLM_F32, N), y = vlm_arena_tensor1(&a, VLM_F32, N);
  vlm_tensor h = vlm_arena_tensor1(&a, VLM_BF16, N);
  vt_fill_normal(vlm_f32(&x), N, 3, 3.0f);
  for (int k = 0; k < 2; k++) {
    vlm_act act = k ? VLM_ACT_QUICK_GELU : VLM_ACT_GELU;
    vlm_act_forward(act, &y, &x);
    vlm_act_forward(act, &h, &x);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += ((const uint16_t *)h.data)[i] != vlm_f32_to_bf16(vlm_f32(&y)[i]);
    CHECK(bad == 0, "act %d bf16 out (%s): %d values differ from the rounded f32 result", k, mode, bad);
  }
  vlm_arena_free(&a);
}

/* vlm_block_forward_rows against the rows of vlm_block_forward: one row per
 * batch entry (row b*L + r[b]); self-attention with no mask, and causal
 * attention reproduced by a key padding mask hiding the keys after r[b]. */
static void forward_rows(const char *mode, int causal) {
  blk b;
  int64_t B = 3, L = 9, W = 24, r[3] = {0, 8, 4};
  blk_init(&b, B, L, W, 3, 40, VLM_ACT_GELU, causal, 0, 77);
  b.s.forward_only = 1;
  vlm_block_forward(&b.c, &b.p, &b.s, &b.y, &b.x, NULL, causal);
  float *full = vt_alloc(B * L * W);
  memcpy(full, vlm_f32(&b.y), (size_t)(B * L * W) * sizeof(float));
  int64_t rows[3], rsh[2] = {B, 1}, ysh[3] = {B, 1, W}, msh[2] = {B, L};
  uint8_t m[27];
  for (int64_t i = 0; i < B; i++) {
    rows[i] = i * L + r[i];
    for (int64_t j = 0; j < L; j++) m[i * L + j] = j > r[i];
  }
  float y[3 * 24];
  vlm_tensor rt = vlm_tensor_make(rows, VLM_I64, VLM_CPU, 2, rsh), yt = vlm_tensor_cpu_f32(y, 3, ysh);
  vlm_tensor mt = vlm_tensor_make(m, VLM_U8, VLM_CPU, 2, msh);
  vlm_block_forward_rows(&b.c, &b.p, &b.s, &yt, &b.x, &rt, causal ? &mt : NULL);
  double worst = 0;
  for (int64_t i = 0; i < B; i++)
    for (int64_t w = 0; w < W; w++)
      worst = fmax(worst, fabs((double)y[i * W + w] - full[rows[i] * W + w]) / (1.0 + fabs((double)full[rows[i] * W + w])));
  CHECK(worst < 1e-5, "block rows (%s, causal %d): differs from the full block by %.3g", mode, causal, worst);
  printf("block rows (%s, causal %d): largest difference %.2g\n", mode, causal, worst);
  free(full);
  blk_free(&b);
}

/* The pooled-rows training path (vlm_block_forward_rows on training
 * activations, vlm_block_backward_rows): one row per batch entry, as the
 * towers pool them (ViT: the class token; text: each row's EOT, its causal
 * mask as a key padding mask over the keys after it). */
typedef struct {
  blk b;
  int64_t rows[3], r[3];
  uint8_t m[3 * 9];
  float y[3 * 24], dy[3 * 24];
  vlm_tensor rt, mt, yt, dyt;
  int causal;
} rblk;

static void rblk_init(rblk *t, int causal, uint64_t seed) {
  int64_t B = 3, L = 9, W = 24, r[3] = {0, 8, 4}, rsh[2] = {B, 1}, ysh[3] = {B, 1, W}, msh[2] = {B, L};
  blk_init(&t->b, B, L, W, 3, 40, VLM_ACT_GELU, causal, 0, seed);
  t->causal = causal;
  for (int64_t i = 0; i < B; i++) {
    t->r[i] = causal ? r[i] : 0;
    t->rows[i] = i * L + t->r[i];
    for (int64_t j = 0; j < L; j++) t->m[i * L + j] = j > t->r[i];
  }
  t->rt = vlm_tensor_make(t->rows, VLM_I64, VLM_CPU, 2, rsh);
  t->mt = vlm_tensor_make(t->m, VLM_U8, VLM_CPU, 2, msh);
  t->yt = vlm_tensor_cpu_f32(t->y, 3, ysh);
  t->dyt = vlm_tensor_cpu_f32(t->dy, 3, ysh);
}
static void rows_fwd(void *ctx) {
  rblk *t = ctx;
  vlm_block_forward_rows(&t->b.c, &t->b.p, &t->b.s, &t->yt, &t->b.x, &t->rt, t->causal ? &t->mt : NULL);
}
static void rows_bwd(void *ctx) {
  rblk *t = ctx;
  /* dx is written, not accumulated: add it to the checker's zeroed buffer */
  float *keep = vt_alloc(vlm_numel(&t->b.dx));
  memcpy(keep, t->b.dx.data, vlm_nbytes(&t->b.dx));
  vlm_block_backward_rows(&t->b.c, &t->b.p, &t->b.g, &t->b.s, &t->b.scr, &t->b.dx, &t->dyt, &t->b.x, &t->rt);
  for (int64_t i = 0; i < vlm_numel(&t->b.dx); i++) vlm_f32(&t->b.dx)[i] += keep[i];
  free(keep);
}

static void gradcheck_rows(const char *mode, int causal) {
  rblk t;
  rblk_init(&t, causal, 31);
  vt_gc_input in[13];
  collect_ctx cc = {in, 0, NULL};
  vlm_block_params_visit(&t.b.p, collect, &cc);
  cc.n = 0;
  vlm_block_params_visit(&t.b.g, collect_grad, &cc);
  in[12] = (vt_gc_input){"x", vlm_f32(&t.b.x), vlm_f32(&t.b.dx), vlm_numel(&t.b.x)};
  vt_gradcheck g = {rows_fwd, rows_bwd, &t, t.y, t.dy, 3 * 24, in, 13, 1e-2, 1e-3, 64, 98};
  char what[64];
  snprintf(what, sizeof what, "block rows training, causal %d (%s)", causal, mode);
  vt_gradcheck_run(what, &g);
  blk_free(&t.b);
}

/* The pooled-rows training path against the full block with the same dy at
 * those rows and zero elsewhere: output, dx and every parameter gradient. */
static void rows_train_vs_full(const char *mode, int causal, int bf16) {
  rblk t;
  blk f;
  rblk_init(&t, causal, 41);
  blk_init(&f, 3, 9, 24, 3, 40, VLM_ACT_GELU, causal, 0, 41);
  vt_fill_normal(t.dy, 3 * 24, 8, 1.0f);
  memset(f.dy.data, 0, vlm_nbytes(&f.dy));
  for (int64_t i = 0; i < 3; i++) memcpy(vlm_f32(&f.dy) + t.rows[i] * 24, t.dy + i * 24, 24 * sizeof(float));
  vlm_set_matmul_precision(bf16 ? VLM_PREC_BF16 : VLM_PREC_F32);
  fwd(&f);
  bwd(&f);
  for (int64_t i = 0; i < vlm_numel(&t.b.dx); i++) vlm_f32(&t.b.dx)[i] = 1e3f;  /* written, not accumulated */
  rows_fwd(&t);
  vlm_block_backward_rows(&t.b.c, &t.b.p, &t.b.g, &t.b.s, &t.b.scr, &t.b.dx, &t.dyt, &t.b.x, &t.rt);
  vlm_set_matmul_precision(VLM_PREC_F32);
  double tol = bf16 ? 2e-2 : 1e-5, worst = 0;
  for (int64_t i = 0; i < 3; i++)
    for (int64_t w = 0; w < 24; w++) {
      double a = t.y[i * 24 + w], e = vlm_f32(&f.y)[t.rows[i] * 24 + w];
      worst = fmax(worst, fabs(a - e) / (1.0 + fabs(e)));
    }
  CHECK(worst < tol, "rows training (%s, causal %d, bf16 %d): y differs by %.3g", mode, causal, bf16, worst);
  double e = vt_max_rel(vlm_f32(&t.b.dx), vlm_f32(&f.dx), vlm_numel(&f.dx), 1e-30);
  CHECK(e < tol, "rows training (%s, causal %d, bf16 %d): dx differs by %.3g", mode, causal, bf16, e);
  vt_gc_input gr[12], gf[12];
  collect_ctx cr = {gr, 0, NULL}, cf = {gf, 0, NULL};
  vlm_block_params_visit(&t.b.g, collect, &cr);
  vlm_block_params_visit(&f.g, collect, &cf);
  for (int i = 0; i < 12; i++) {
    double d = vt_max_rel(gr[i].x, gf[i].x, gf[i].n, 1e-30);
    worst = fmax(worst, d);
    CHECK(d < tol, "rows training (%s, causal %d, bf16 %d): d%s differs by %.3g", mode, causal, bf16, gr[i].name, d);
  }
  printf("block rows training (%s, causal %d, bf16 %d): largest difference from the full block %.2g\n", mode, causal,
         bf16, fmax(worst, e));
  blk_free(&t.b);
  blk_free(&f);
}

int main(void) {
  const char *names[2] = {"ref", "fast"};
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode == 0 ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    char what[64];
    snprintf(what, sizeof what, "block self gelu (%s)", names[mode]);
    gradcheck_block(what, VLM_ACT_GELU, 0, 0);
    snprintf(what, sizeof what, "block causal quickgelu (%s)", names[mode]);
    gradcheck_block(what, VLM_ACT_QUICK_GELU, 1, 0);
    snprintf(what, sizeof what, "block causal+padded (%s)", names[mode]);
    gradcheck_block(what, VLM_ACT_GELU, 1, 1);
  }
  fast_vs_ref(0, 0);
  fast_vs_ref(1, 1);
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode == 0 ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    act_bf16_out(names[mode]);
    bf16_acts_identical(names[mode], VLM_ACT_GELU, 0, 0);
    bf16_acts_identical(names[mode], VLM_ACT_QUICK_GELU, 1, 1);
    forward_rows(names[mode], 0);
    forward_rows(names[mode], 1);
    gradcheck_rows(names[mode], 0);
    gradcheck_rows(names[mode], 1);
    for (int bf16 = 0; bf16 < 2; bf16++) {
      rows_train_vs_full(names[mode], 0, bf16);
      rows_train_vs_full(names[mode], 1, bf16);
    }
  }
  return vt_finish();
}
