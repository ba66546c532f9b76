/* Multi-head scaled dot-product attention: fast kernel vs reference (forward
 * out + probs, backward dq/dk/dv) on self / causal / padded / causal+padded /
 * cross / packed-strided / odd / ViT-like shapes, finite-difference gradient
 * checks in both kernel modes, accumulation, known values, determinism across
 * thread counts, and a (printed) speed comparison. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gradcheck.h"

#define TOL 1e-5

/* ------------------------------------------------------------------ a problem instance */
typedef struct {
  const char *name;
  int64_t B, Lq, Lk, H, D;
  int causal;
  int mask;     /* 0 none, 1 random per batch (the last batch row fully masked), 2 CoCa text layout */
  int packed;   /* q, k, v (and dq, dk, dv) are views into [B, L, 3W] buffers (needs Lq == Lk) */
  uint64_t seed;
} cfg;

typedef struct {
  cfg c;
  int64_t W;
  float *qbuf, *kbuf, *vbuf; /* packed: qbuf is the [B,L,3W] buffer, kbuf = vbuf = NULL */
  float *dqbuf, *dkbuf, *dvbuf;
  int64_t n_qbuf, n_kbuf;    /* element counts of the buffers */
  uint8_t *mask;
  float *out, *probs, *dout;
  vlm_tensor q, k, v, dq, dk, dv, tout, tprobs, tdout, tmask;
} inst;

static void inst_init(inst *p, const cfg *c) {
  memset(p, 0, sizeof *p);
  p->c = *c;
  const int64_t B = c->B, Lq = c->Lq, Lk = c->Lk, W = c->H * c->D;
  p->W = W;
  if (c->packed) {
    int64_t s[3] = {B, Lq, 3 * W};
    p->n_qbuf = B * Lq * 3 * W;
    p->qbuf = vt_alloc(p->n_qbuf);
    p->dqbuf = vt_alloc(p->n_qbuf);
    vt_fill_normal(p->qbuf, p->n_qbuf, c->seed, 1.0f);
    vlm_tensor all = vlm_tensor_cpu_f32(p->qbuf, 3, s), dall = vlm_tensor_cpu_f32(p->dqbuf, 3, s);
    p->q = vlm_narrow(&all, 2, 0, W);
    p->k = vlm_narrow(&all, 2, W, W);
    p->v = vlm_narrow(&all, 2, 2 * W, W);
    p->dq = vlm_narrow(&dall, 2, 0, W);
    p->dk = vlm_narrow(&dall, 2, W, W);
    p->dv = vlm_narrow(&dall, 2, 2 * W, W);
  } else {
    int64_t sq[3] = {B, Lq, W}, sk[3] = {B, Lk, W};
    p->n_qbuf = B * Lq * W;
    p->n_kbuf = B * Lk * W;
    p->qbuf = vt_alloc(p->n_qbuf);
    p->kbuf = vt_alloc(p->n_kbuf);
    p->vbuf = vt_alloc(p->n_kbuf);
    p->dqbuf = vt_alloc(p->n_qbuf);
    p->dkbuf = vt_alloc(p->n_kbuf);
    p->dvbuf = vt_alloc(p->n_kbuf);
    vt_fill_normal(p->qbuf, p->n_qbuf, c->seed, 1.0f);
    vt_fill_normal(p->kbuf, p->n_kbuf, c->seed + 1, 1.0f);
    vt_fill_normal(p->vbuf, p->n_kbuf, c->seed + 2, 1.0f);
    p->q = vlm_tensor_cpu_f32(p->qbuf, 3, sq);
    p->k = vlm_tensor_cpu_f32(p->kbuf, 3, sk);
    p->v = vlm_tensor_cpu_f32(p->vbuf, 3, sk);
    p->dq = vlm_tensor_cpu_f32(p->dqbuf, 3, sq);
    p->dk = vlm_tensor_cpu_f32(p->dkbuf, 3, sk);
    p->dv = vlm_tensor_cpu_f32(p->dvbuf, 3, sk);
  }
  int64_t so[3] = {B, Lq, W}, sp[4] = {B, c->H, Lq, Lk}, sm[2] = {B, Lk};
  p->out = vt_alloc(B * Lq * W);
  p->dout = vt_alloc(B * Lq * W);
  p->probs = vt_alloc(B * c->H * Lq * Lk);
  vt_fill_normal(p->dout, B * Lq * W, c->seed + 3, 1.0f);
  p->tout = vlm_tensor_cpu_f32(p->out, 3, so);
  p->tdout = vlm_tensor_cpu_f32(p->dout, 3, so);
  p->tprobs = vlm_tensor_cpu_f32(p->probs, 4, sp);
  if (c->mask) {
    p->mask = calloc((size_t)(B * Lk), 1);
    vlm_rng r;
    vlm_rng_seed(&r, c->seed + 4);
    for (int64_t b = 0; b < B; b++) {
      if (c->mask == 1) {
        /* random; the last batch row (when B > 1) has every key masked */
        for (int64_t j = 0; j < Lk; j++)
          p->mask[b * Lk + j] = (B > 1 && b == B - 1) ? 1 : (vlm_rng_below(&r, 3) == 0);
      } else {
        /* CoCa text: tokens then pad (0); key j >= 1 masked iff text[j-1] == pad */
        int64_t len = 1 + (int64_t)vlm_rng_below(&r, (uint64_t)Lk);
        for (int64_t j = 1; j < Lk; j++) p->mask[b * Lk + j] = (j - 1 >= len);
      }
    }
    p->tmask = vlm_tensor_make(p->mask, VLM_U8, VLM_CPU, 2, sm);
  }
}

static void inst_free(inst *p) {
  free(p->qbuf); free(p->kbuf); free(p->vbuf);
  free(p->dqbuf); free(p->dkbuf); free(p->dvbuf);
  free(p->out); free(p->dout); free(p->probs); free(p->mask);
}

static float inst_scale(const inst *p) { return 1.0f / sqrtf((float)p->c.D); }

static void inst_forward(inst *p) {
  vlm_attention_forward(&p->tout, &p->tprobs, &p->q, &p->k, &p->v, (int)p->c.H, p->mask ? &p->tmask : NULL,
                        p->c.causal, inst_scale(p));
}

static void inst_backward(inst *p) {
  vlm_attention_backward(&p->dq, &p->dk, &p->dv, &p->tdout, &p->tprobs, &p->q, &p->k, &p->v, (int)p->c.H,
                         inst_scale(p));
}

static int all_finite(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}

static float *fdup(const float *x, int64_t n) {
  float *y = vt_alloc(n);
  memcpy(y, x, (size_t)n * sizeof(float));
  return y;
}

/* Gradient buffers as flat arrays: (buffer, count) x up to 3. */
static int grad_bufs(inst *p, float **g, int64_t *n) {
  if (p->c.packed) { g[0] = p->dqbuf; n[0] = p->n_qbuf; return 1; }
  g[0] = p->dqbuf; n[0] = p->n_qbuf;
  g[1] = p->dkbuf; n[1] = p->n_kbuf;
  g[2] = p->dvbuf; n[2] = p->n_kbuf;
  return 3;
}

/* ------------------------------------------------------------------ fast vs reference */
static void compare_case(const cfg *c) {
  inst p;
  inst_init(&p, c);
  const int64_t n_out = c->B * c->Lq * p.W, n_probs = c->B * c->H * c->Lq * c->Lk;

  vlm_set_kernel_mode(VLM_KERNELS_REF);
  inst_forward(&p);
  float *out_r = fdup(p.out, n_out), *probs_r = fdup(p.probs, n_probs);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  memset(p.out, 0xff, (size_t)n_out * sizeof(float)); /* NaN: everything must be written */
  memset(p.probs, 0xff, (size_t)n_probs * sizeof(float));
  inst_forward(&p);
  CHECK(all_finite(p.out, n_out) && all_finite(p.probs, n_probs), "%s: fast forward not finite", c->name);
  CHECK(all_finite(out_r, n_out) && all_finite(probs_r, n_probs), "%s: ref forward not finite", c->name);
  double e_out = vt_max_rel(p.out, out_r, n_out, 1e-30), e_p = vt_max_rel(p.probs, probs_r, n_probs, 1e-30);
  CHECK(e_out < TOL, "%s: out fast vs ref %.3g", c->name, e_out);
  CHECK(e_p < TOL, "%s: probs fast vs ref %.3g", c->name, e_p);

  /* Structure of probs: masked / future keys exactly 0 in both; rows sum to 1 or are all 0. */
  int bad_zero = 0, bad_sum = 0;
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t h = 0; h < c->H; h++)
      for (int64_t i = 0; i < c->Lq; i++) {
        double sum = 0;
        int any = 0;
        for (int64_t j = 0; j < c->Lk; j++) {
          int64_t idx = ((b * c->H + h) * c->Lq + i) * c->Lk + j;
          int hidden = (c->causal && j > i) || (p.mask && p.mask[b * c->Lk + j]);
          if (hidden && (p.probs[idx] != 0.0f || probs_r[idx] != 0.0f)) bad_zero++;
          if (!hidden) any = 1;
          sum += p.probs[idx];
        }
        if (any ? fabs(sum - 1) > 1e-5 : sum != 0) bad_sum++;
        if (!any) /* no visible key: zero output */
          for (int64_t d = 0; d < c->D; d++)
            if (p.out[(b * c->Lq + i) * p.W + h * c->D + d] != 0.0f) bad_sum++;
      }
  CHECK(bad_zero == 0, "%s: %d hidden keys with nonzero probability", c->name, bad_zero);
  CHECK(bad_sum == 0, "%s: %d rows with a bad sum / nonzero output for an empty row", c->name, bad_sum);

  /* Backward onto pre-filled gradient buffers (the same for both modes). */
  float *g[3], *g_pre[3], *g_ref[3];
  int64_t n[3];
  int ng = grad_bufs(&p, g, n);
  for (int t = 0; t < ng; t++) {
    vt_fill_normal(g[t], n[t], c->seed + 10 + (uint64_t)t, 0.5f);
    g_pre[t] = fdup(g[t], n[t]);
  }
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  inst_backward(&p);
  for (int t = 0; t < ng; t++) {
    g_ref[t] = fdup(g[t], n[t]);
    memcpy(g[t], g_pre[t], (size_t)n[t] * sizeof(float));
  }
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  inst_backward(&p);
  static const char *names[3] = {"dq", "dk", "dv"};
  for (int t = 0; t < ng; t++) {
    /* compare the increments, relative to the increment's scale */
    float *inc = vt_alloc(n[t]), *inc_r = vt_alloc(n[t]);
    for (int64_t i = 0; i < n[t]; i++) {
      inc[i] = g[t][i] - g_pre[t][i];
      inc_r[i] = g_ref[t][i] - g_pre[t][i];
    }
    double e = vt_max_rel(inc, inc_r, n[t], 1e-30);
    CHECK(all_finite(g[t], n[t]), "%s: backward not finite", c->name);
    CHECK(e < TOL, "%s: %s fast vs ref %.3g", c->name, ng == 1 ? "dqkv" : names[t], e);
    double e_abs = vt_max_rel(g[t], g_ref[t], n[t], 1e-30);
    CHECK(e_abs < TOL, "%s: %s accumulated fast vs ref %.3g", c->name, ng == 1 ? "dqkv" : names[t], e_abs);
    free(inc); free(inc_r); free(g_pre[t]); free(g_ref[t]);
  }
  /* A fully masked batch row gets zero gradients everywhere (dq, dk, dv). */
  if (c->mask == 1 && c->B > 1) {
    vlm_set_kernel_mode(VLM_KERNELS_FAST);
    for (int t = 0; t < ng; t++) memset(g[t], 0, (size_t)n[t] * sizeof(float));
    inst_backward(&p);
    int64_t per_b = c->packed ? c->Lq * 3 * p.W : c->Lq * p.W, per_bk = c->Lk * p.W;
    int nz = 0;
    for (int t = 0; t < ng; t++) {
      int64_t pb = t == 0 ? per_b : per_bk;
      for (int64_t i = (c->B - 1) * pb; i < c->B * pb; i++) nz += g[t][i] != 0.0f;
    }
    CHECK(nz == 0, "%s: %d nonzero gradients in the fully masked batch row", c->name, nz);
  }
  if (getenv("VT_VERBOSE")) printf("  %-28s out %.2g probs %.2g\n", c->name, e_out, e_p);
  free(out_r); free(probs_r);
  inst_free(&p);
}

static void test_fast_vs_ref(void) {
  static const cfg cases[] = {
      /* name                 B  Lq  Lk  H   D  causal mask packed seed */
      {"self", 2, 9, 9, 2, 16, 0, 0, 0, 1},
      {"causal", 2, 21, 21, 3, 8, 1, 0, 0, 2},
      {"padded", 3, 17, 17, 2, 12, 0, 1, 0, 3},
      {"causal+coca-pad", 4, 19, 19, 2, 10, 1, 2, 0, 4},
      {"cross 7x50", 2, 7, 50, 4, 16, 0, 0, 0, 5},
      {"cross 7x50 padded", 3, 7, 50, 2, 20, 0, 1, 0, 6},
      {"causal cross 9x5", 2, 9, 5, 2, 7, 1, 0, 0, 7},
      {"causal cross 5x37", 2, 5, 37, 2, 7, 1, 1, 0, 8},
      {"packed self", 2, 13, 13, 3, 16, 0, 0, 1, 9},
      {"packed causal+pad", 3, 33, 33, 4, 24, 1, 1, 1, 10},
      {"packed coca", 2, 77, 77, 2, 64, 1, 2, 1, 11},
      {"H=1 D=1 L=1", 1, 1, 1, 1, 1, 0, 0, 0, 12},
      {"H=1 D=1 L=1 packed", 3, 1, 1, 1, 1, 1, 1, 1, 13},
      {"D=1", 2, 6, 6, 3, 1, 0, 0, 0, 14},
      {"L=1 cross", 2, 1, 5, 2, 3, 0, 0, 0, 15},
      {"Lk=1", 2, 5, 1, 2, 3, 1, 0, 0, 16},
      {"odd", 3, 13, 11, 3, 5, 0, 1, 0, 17},
      {"vit-b32", 2, 50, 50, 12, 64, 0, 0, 1, 18},
      {"text 512/8", 2, 77, 77, 8, 64, 1, 2, 1, 19},
      /* Lq <= 2 takes the unpacked path (decoding with a KV cache, pooled rows) */
      {"decode 1x255 padded", 2, 1, 255, 8, 64, 0, 1, 0, 20},
      {"decode 1x30 coca-pad", 3, 1, 30, 8, 64, 0, 2, 0, 21},
      {"causal 2x30", 2, 2, 30, 2, 13, 1, 0, 0, 22},
      {"causal 2x2 padded", 3, 2, 2, 2, 5, 1, 1, 0, 23},
      {"pooled row 1x50", 8, 1, 50, 12, 64, 0, 0, 0, 24},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) compare_case(&cases[i]);
}

/* ------------------------------------------------------------------ thread counts */
/* Results must not depend on the thread count (and with it the schedule). */
static void test_threads(int base_threads) {
  static const cfg cases[] = {
      {"thr self", 1, 45, 45, 2, 32, 0, 0, 1, 30},
      {"thr causal+pad", 2, 40, 40, 3, 16, 1, 1, 1, 31},
      {"thr cross", 3, 23, 29, 4, 16, 0, 1, 0, 32},
      {"thr decode", 1, 1, 255, 8, 64, 0, 1, 0, 33},
  };
  static const int threads[] = {1, 2, 3, 7};
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const cfg *c = &cases[ci];
    inst p;
    inst_init(&p, c);
    const int64_t n_out = c->B * c->Lq * p.W, n_probs = c->B * c->H * c->Lq * c->Lk;
    float *g[3], *g0[3] = {0}, *out0 = NULL, *probs0 = NULL;
    int64_t n[3];
    int ng = grad_bufs(&p, g, n);
    for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
      vlm_threads_init(threads[ti]);
      for (int t = 0; t < ng; t++) memset(g[t], 0, (size_t)n[t] * sizeof(float));
      inst_forward(&p);
      inst_backward(&p);
      if (ti == 0) {
        out0 = fdup(p.out, n_out);
        probs0 = fdup(p.probs, n_probs);
        for (int t = 0; t < ng; t++) g0[t] = fdup(g[t], n[t]);
        continue;
      }
      int same = !memcmp(out0, p.out, (size_t)n_out * 4) && !memcmp(probs0, p.probs, (size_t)n_probs * 4);
      for (int t = 0; t < ng; t++) same &= !memcmp(g0[t], g[t], (size_t)n[t] * 4);
      CHECK(same, "%s: results with %d threads differ from 1 thread", c->name, threads[ti]);
    }
    free(out0); free(probs0);
    for (int t = 0; t < ng; t++) free(g0[t]);
    inst_free(&p);
  }
  vlm_threads_init(base_threads);
}

/* ------------------------------------------------------------------ accumulation, NULL grads */
static void test_accumulate(void) {
  cfg c = {"acc", 2, 10, 10, 2, 8, 1, 1, 1, 40};
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    inst p;
    inst_init(&p, &c);
    inst_forward(&p);
    const int64_t n = p.n_qbuf;
    inst_backward(&p); /* onto zeros */
    float *g0 = fdup(p.dqbuf, n);
    vt_fill_normal(p.dqbuf, n, 41, 1.0f);
    float *pre = fdup(p.dqbuf, n);
    inst_backward(&p);
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
      double d = fabs((double)p.dqbuf[i] - ((double)pre[i] + g0[i]));
      if (d > e) e = d;
    }
    CHECK(e < 1e-6, "%s backward adds onto pre-filled gradients (max error %.3g)", mode ? "ref" : "fast", e);
    /* NULL gradients are skipped; the others are unchanged by their absence. */
    memset(p.dqbuf, 0, (size_t)n * sizeof(float));
    vlm_attention_backward(NULL, &p.dk, NULL, &p.tdout, &p.tprobs, &p.q, &p.k, &p.v, (int)c.H, inst_scale(&p));
    int ok = 1;
    for (int64_t b = 0; b < c.B; b++)
      for (int64_t l = 0; l < c.Lq; l++)
        for (int64_t x = 0; x < 3 * p.W; x++) {
          int64_t i = (b * c.Lq + l) * 3 * p.W + x;
          int in_dk = x >= p.W && x < 2 * p.W;
          if (in_dk ? p.dqbuf[i] != g0[i] : p.dqbuf[i] != 0.0f) ok = 0;
        }
    CHECK(ok, "%s backward with only dk: dk as before, dq/dv untouched", mode ? "ref" : "fast");
    free(g0); free(pre);
    inst_free(&p);
  }
}

/* ------------------------------------------------------------------ known values */
static void test_known_values(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    const char *m = mode ? "ref" : "fast";
    /* One key: every query's output is that key's value row. */
    {
      cfg c = {"one key", 2, 6, 1, 3, 5, 0, 0, 0, 50};
      inst p;
      inst_init(&p, &c);
      inst_forward(&p);
      double e = 0;
      for (int64_t b = 0; b < c.B; b++)
        for (int64_t i = 0; i < c.Lq; i++)
          for (int64_t x = 0; x < p.W; x++)
            e = fmax(e, fabs(p.out[(b * c.Lq + i) * p.W + x] - p.vbuf[b * p.W + x]));
      CHECK(e < 1e-6, "%s: one key: out == v (error %.3g)", m, e);
      inst_free(&p);
    }
    /* q = 0: all scores equal, out is the mean of the visible v rows (causal: of v_0..v_i). */
    for (int causal = 0; causal < 2; causal++) {
      cfg c = {"equal scores", 2, 7, 7, 2, 4, causal, 0, 0, 51};
      inst p;
      inst_init(&p, &c);
      memset(p.qbuf, 0, (size_t)p.n_qbuf * sizeof(float));
      inst_forward(&p);
      double e = 0;
      for (int64_t b = 0; b < c.B; b++)
        for (int64_t i = 0; i < c.Lq; i++)
          for (int64_t x = 0; x < p.W; x++) {
            int64_t n = causal ? i + 1 : c.Lk;
            double mean = 0;
            for (int64_t j = 0; j < n; j++) mean += p.vbuf[(b * c.Lk + j) * p.W + x];
            e = fmax(e, fabs(p.out[(b * c.Lq + i) * p.W + x] - mean / n));
          }
      CHECK(e < 1e-6, "%s: equal scores%s: out == mean of v rows (error %.3g)", m, causal ? " (causal)" : "", e);
      inst_free(&p);
    }
    /* No keys at all (Lk = 0): zero output, gradients untouched. */
    {
      cfg c = {"no keys", 2, 3, 0, 2, 4, 0, 0, 0, 53};
      inst p;
      inst_init(&p, &c);
      vt_fill_normal(p.out, c.B * c.Lq * p.W, 54, 1.0f);
      inst_forward(&p);
      int nz = 0;
      for (int64_t i = 0; i < c.B * c.Lq * p.W; i++) nz += p.out[i] != 0.0f;
      memset(p.dqbuf, 0, (size_t)p.n_qbuf * sizeof(float));
      inst_backward(&p);
      for (int64_t i = 0; i < p.n_qbuf; i++) nz += p.dqbuf[i] != 0.0f;
      CHECK(nz == 0, "%s: Lk = 0 gives zero output and zero dq (%d nonzero)", m, nz);
      inst_free(&p);
    }
    /* A large score gap: attention picks one key (tests the stable softmax). */
    {
      cfg c = {"peaked", 1, 1, 3, 1, 2, 0, 0, 0, 52};
      inst p;
      inst_init(&p, &c);
      float qv[2] = {100, 0}, kv[6] = {0, 1, 3, 0, -3, 0};
      memcpy(p.qbuf, qv, sizeof qv);
      memcpy(p.kbuf, kv, sizeof kv);
      inst_forward(&p);
      /* scores (scale 1/sqrt 2): 0, 212, -212 -> probabilities 0, 1, 0 */
      CHECK(fabsf(p.probs[1] - 1.0f) < 1e-6f && p.probs[0] < 1e-30f && p.probs[2] < 1e-30f &&
                fabsf(p.out[0] - p.vbuf[2]) < 1e-6f && fabsf(p.out[1] - p.vbuf[3]) < 1e-6f,
            "%s: peaked softmax picks key 1 (p = %g %g %g)", m, p.probs[0], p.probs[1], p.probs[2]);
      inst_free(&p);
    }
  }
}

/* ------------------------------------------------------------------ gradient checks */
typedef struct { inst *p; } gc_ctx;
static void gc_forward(void *ctx) { inst_forward(((gc_ctx *)ctx)->p); }
static void gc_backward(void *ctx) { inst_backward(((gc_ctx *)ctx)->p); }

static void gradcheck_case(const cfg *c) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    inst p;
    inst_init(&p, c);
    gc_ctx ctx = {&p};
    vt_gc_input in[3];
    int nin;
    if (c->packed) {
      in[0] = (vt_gc_input){"qkv", p.qbuf, p.dqbuf, p.n_qbuf};
      nin = 1;
    } else {
      in[0] = (vt_gc_input){"q", p.qbuf, p.dqbuf, p.n_qbuf};
      in[1] = (vt_gc_input){"k", p.kbuf, p.dkbuf, p.n_kbuf};
      in[2] = (vt_gc_input){"v", p.vbuf, p.dvbuf, p.n_kbuf};
      nin = 3;
    }
    vt_gradcheck g;
    memset(&g, 0, sizeof g);
    g.forward = gc_forward;
    g.backward = gc_backward;
    g.ctx = &ctx;
    g.out = p.out;
    g.dout = p.dout;
    g.n_out = c->B * c->Lq * p.W;
    g.inputs = in;
    g.n_inputs = nin;
    g.seed = c->seed + 100;
    char what[96];
    snprintf(what, sizeof what, "%s (%s)", c->name, mode ? "ref" : "fast");
    vt_gradcheck_run(what, &g);
    inst_free(&p);
  }
}

static void test_gradcheck(void) {
  static const cfg cases[] = {
      {"gc self packed", 2, 5, 5, 2, 3, 0, 0, 1, 60},
      {"gc self", 1, 4, 4, 2, 4, 0, 0, 0, 61},
      {"gc causal", 2, 5, 5, 2, 3, 1, 0, 0, 62},
      {"gc causal packed", 1, 6, 6, 1, 4, 1, 0, 1, 63},
      {"gc padded", 3, 5, 5, 2, 3, 0, 1, 0, 64},
      {"gc causal+coca-pad packed", 2, 6, 6, 2, 3, 1, 2, 1, 65},
      {"gc cross 3x7", 2, 3, 7, 2, 3, 0, 0, 0, 66},
      {"gc cross 3x7 padded", 2, 3, 7, 1, 4, 0, 1, 0, 67},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) gradcheck_case(&cases[i]);
}

/* ------------------------------------------------------------------ inference: probs = NULL */
static void test_no_probs(void) {
  cfg c = {"no probs", 2, 9, 9, 3, 8, 1, 1, 1, 90};
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    inst p;
    inst_init(&p, &c);
    inst_forward(&p);
    const int64_t n = c.B * c.Lq * p.W;
    float *o = fdup(p.out, n);
    memset(p.out, 0xff, (size_t)n * sizeof(float));
    vlm_attention_forward(&p.tout, NULL, &p.q, &p.k, &p.v, (int)c.H, &p.tmask, c.causal, inst_scale(&p));
    CHECK(!memcmp(o, p.out, (size_t)n * sizeof(float)), "%s: forward without probs gives the same out",
          mode ? "ref" : "fast");
    free(o);
    inst_free(&p);
  }
}

/* bf16 storage (inference): q, k, v as BF16 views into a packed bf16 buffer give
 * exactly the F32 result of the same (rounded) values; a BF16 out is that result
 * rounded once. */
static void test_bf16_storage(void) {
  cfg c = {"bf16 storage", 2, 9, 9, 3, 8, 1, 1, 1, 95};
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    inst p;
    inst_init(&p, &c);
    const int64_t n = c.B * c.Lq * p.W, W = p.W;
    uint16_t *hb = malloc(sizeof(uint16_t) * (size_t)p.n_qbuf), *ob = malloc(sizeof(uint16_t) * (size_t)n);
    vlm_f32_to_bf16_array(hb, p.qbuf, (size_t)p.n_qbuf);
    vlm_bf16_to_f32_array(p.qbuf, hb, (size_t)p.n_qbuf); /* the f32 instance now holds the rounded values */
    vlm_attention_forward(&p.tout, NULL, &p.q, &p.k, &p.v, (int)c.H, &p.tmask, c.causal, inst_scale(&p));
    float *want = fdup(p.out, n);
    int64_t s3[3] = {c.B, c.Lq, 3 * W}, so[3] = {c.B, c.Lq, W};
    vlm_tensor all = vlm_tensor_make(hb, VLM_BF16, VLM_CPU, 3, s3);
    vlm_tensor q = vlm_narrow(&all, 2, 0, W), k = vlm_narrow(&all, 2, W, W), v = vlm_narrow(&all, 2, 2 * W, W);
    memset(p.out, 0xff, (size_t)n * sizeof(float));
    vlm_attention_forward(&p.tout, NULL, &q, &k, &v, (int)c.H, &p.tmask, c.causal, inst_scale(&p));
    CHECK(!memcmp(want, p.out, (size_t)n * sizeof(float)), "%s: bf16 q, k, v give the f32 result of their values",
          mode ? "ref" : "fast");
    vlm_tensor o16 = vlm_tensor_make(ob, VLM_BF16, VLM_CPU, 3, so);
    vlm_attention_forward(&o16, NULL, &q, &k, &v, (int)c.H, &p.tmask, c.causal, inst_scale(&p));
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += ob[i] != vlm_f32_to_bf16(want[i]);
    CHECK(bad == 0, "%s: a BF16 out is the f32 result rounded once (%lld of %lld differ)", mode ? "ref" : "fast",
          (long long)bad, (long long)n);
    free(hb), free(ob), free(want);
    inst_free(&p);
  }
}

/* ------------------------------------------------------------------ dispatcher checks */
/* Runs fn in a child process; returns 1 if it aborted (a VLM_CHECK fired).
 * fn must fail in the dispatcher: libgomp is not usable after fork. */
static int aborts(void (*fn)(inst *), inst *p) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (!getenv("VT_VERBOSE")) { FILE *f = freopen("/dev/null", "w", stderr); (void)f; }
    fn(p);
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static int g_bad_heads;
static void bad_heads(inst *p) {
  vlm_attention_forward(&p->tout, &p->tprobs, &p->q, &p->k, &p->v, g_bad_heads, NULL, 0, 1.0f);
}
static void bad_mask_shape(inst *p) {
  vlm_tensor m = p->tmask;
  m.shape[1] -= 1;
  vlm_attention_forward(&p->tout, &p->tprobs, &p->q, &p->k, &p->v, (int)p->c.H, &m, 0, 1.0f);
}
static void bad_mask_dtype(inst *p) {
  vlm_tensor m = p->tmask;
  m.dtype = VLM_I8;
  vlm_attention_forward(&p->tout, &p->tprobs, &p->q, &p->k, &p->v, (int)p->c.H, &m, 0, 1.0f);
}
static void bad_probs_shape(inst *p) {
  vlm_tensor pr = p->tprobs;
  pr.shape[3] -= 1;
  vlm_attention_forward(&p->tout, &pr, &p->q, &p->k, &p->v, (int)p->c.H, NULL, 0, 1.0f);
}
static void bad_probs_backward(inst *p) {
  vlm_tensor pr = p->tprobs;
  pr.shape[2] -= 1;
  vlm_attention_backward(&p->dq, &p->dk, &p->dv, &p->tdout, &pr, &p->q, &p->k, &p->v, (int)p->c.H, 1.0f);
}
static void bad_q_stride(inst *p) {
  vlm_tensor q = p->q;
  q.stride[2] = 2;
  vlm_attention_forward(&p->tout, &p->tprobs, &q, &p->k, &p->v, (int)p->c.H, NULL, 0, 1.0f);
}
static void bad_dk_shape(inst *p) {
  vlm_tensor dk = p->dk;
  dk.shape[1] -= 1;
  vlm_attention_backward(&p->dq, &dk, &p->dv, &p->tdout, &p->tprobs, &p->q, &p->k, &p->v, (int)p->c.H, 1.0f);
}
static void bad_v_length(inst *p) {
  vlm_tensor v = p->v;
  v.shape[1] -= 1;
  vlm_attention_forward(&p->tout, &p->tprobs, &p->q, &p->k, &v, (int)p->c.H, NULL, 0, 1.0f);
}
static void bad_out_strided(inst *p) {
  vlm_tensor o = p->q; /* a strided view into the packed buffer */
  vlm_attention_forward(&o, &p->tprobs, &p->q, &p->k, &p->v, (int)p->c.H, NULL, 0, 1.0f);
}
static void mixed_devices(inst *p) {
  vlm_tensor q = p->q;
  q.device = VLM_CUDA;  /* k, v, out stay on the CPU */
  vlm_attention_forward(&p->tout, &p->tprobs, &q, &p->k, &p->v, (int)p->c.H, NULL, 0, 1.0f);
}
static void bf16_with_probs(inst *p) {  /* bf16 storage is for inference only */
  vlm_tensor q = p->q, k = p->k, v = p->v;
  q.dtype = k.dtype = v.dtype = VLM_BF16;
  vlm_attention_forward(&p->tout, &p->tprobs, &q, &k, &v, (int)p->c.H, NULL, 0, 1.0f);
}
static void bf16_mixed(inst *p) {
  vlm_tensor q = p->q;
  q.dtype = VLM_BF16;  /* k, v stay F32 */
  vlm_attention_forward(&p->tout, NULL, &q, &p->k, &p->v, (int)p->c.H, NULL, 0, 1.0f);
}
static void bf16_backward(inst *p) {
  vlm_tensor q = p->q, k = p->k, v = p->v;
  q.dtype = k.dtype = v.dtype = VLM_BF16;
  vlm_attention_backward(&p->dq, &p->dk, &p->dv, &p->tdout, &p->tprobs, &q, &k, &v, (int)p->c.H, 1.0f);
}
static void ok_call(inst *p) {
  vlm_set_kernel_mode(VLM_KERNELS_REF); /* no OpenMP in the child */
  vlm_attention_forward(&p->tout, &p->tprobs, &p->q, &p->k, &p->v, (int)p->c.H, &p->tmask, 1, 1.0f);
  vlm_attention_backward(&p->dq, &p->dk, &p->dv, &p->tdout, &p->tprobs, &p->q, &p->k, &p->v, (int)p->c.H, 1.0f);
}

static void test_checks(void) {
  cfg c = {"checks", 2, 6, 6, 2, 4, 0, 1, 1, 80};
  inst p;
  inst_init(&p, &c);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  CHECK(aborts(ok_call, &p) == 0, "a valid call does not abort");
  g_bad_heads = 3;
  CHECK(aborts(bad_heads, &p) == 1, "W not divisible by heads is caught");
  g_bad_heads = 0;
  CHECK(aborts(bad_heads, &p) == 1, "heads = 0 is caught");
  CHECK(aborts(bad_mask_shape, &p) == 1, "mask shape is checked");
  CHECK(aborts(bad_mask_dtype, &p) == 1, "mask dtype is checked");
  CHECK(aborts(bad_probs_shape, &p) == 1, "probs shape is checked (forward)");
  CHECK(aborts(bad_probs_backward, &p) == 1, "probs shape is checked (backward)");
  CHECK(aborts(bad_q_stride, &p) == 1, "a non-contiguous last dim is caught");
  CHECK(aborts(bad_dk_shape, &p) == 1, "dk shape is checked");
  CHECK(aborts(bad_v_length, &p) == 1, "k and v lengths must agree");
  CHECK(aborts(bad_out_strided, &p) == 1, "out must be contiguous");
  CHECK(aborts(mixed_devices, &p) == 1, "q, k, v on different devices are caught");
  CHECK(aborts(bf16_with_probs, &p) == 1, "bf16 q, k, v with saved probabilities are refused");
  CHECK(aborts(bf16_mixed, &p) == 1, "q, k, v of different dtypes are caught");
  CHECK(aborts(bf16_backward, &p) == 1, "the backward takes f32 q, k, v only");
  inst_free(&p);
}

/* ------------------------------------------------------------------ speed (printed) */
#ifdef __OPTIMIZE__
/* Best of reps (the machine may be shared: the minimum is the least noisy). */
static void time_calls(inst *p, int reps, double *t_fwd, double *t_bwd) {
  *t_fwd = *t_bwd = INFINITY;
  for (int r = 0; r < reps; r++) {
    double t0 = vlm_now();
    inst_forward(p);
    double t1 = vlm_now();
    inst_backward(p);
    double t2 = vlm_now();
    *t_fwd = fmin(*t_fwd, t1 - t0);
    *t_bwd = fmin(*t_bwd, t2 - t1);
  }
}

#endif

static void bench(int base_threads) {
#ifndef __OPTIMIZE__
  (void)base_threads;
  printf("speed: not measured in an unoptimized (debug / sanitizer) build\n");
#else
  cfg c = {"vit-b32 B=8", 8, 50, 50, 12, 64, 0, 0, 1, 70};
  inst p;
  inst_init(&p, &c);
  const int reps = 30;
  /* forward: 2 GEMMs, backward: 4, each B*H*L*L*D multiply-adds */
  const double fl = 2.0 * c.B * c.H * c.Lq * c.Lk * c.D;
  double rf, rb;
  vlm_set_kernel_mode(VLM_KERNELS_REF);
  time_calls(&p, 1, &rf, &rb);
  printf("speed, ViT-B/32 attention B=%lld L=%lld H=%lld D=%lld (best of %d):\n", (long long)c.B,
         (long long)c.Lq, (long long)c.H, (long long)c.D, reps);
  printf("  reference          : forward %8.3f ms  backward %8.3f ms\n", rf * 1e3, rb * 1e3);
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  const int thr[2] = {1, base_threads};
  for (int ti = 0; ti < (base_threads > 1 ? 2 : 1); ti++) {
    vlm_threads_init(thr[ti]);
    double tf, tb;
    time_calls(&p, 2, &tf, &tb); /* warm up */
    time_calls(&p, reps, &tf, &tb);
    printf("  fast, %2d thread%s   : forward %8.3f ms (%5.1f GFLOP/s, %5.1fx)  backward %8.3f ms (%5.1f GFLOP/s, "
           "%5.1fx)\n",
           thr[ti], thr[ti] > 1 ? "s" : " ", tf * 1e3, 2 * fl / tf * 1e-9, rf / tf, tb * 1e3, 4 * fl / tb * 1e-9,
           rb / tb);
  }
  vlm_threads_init(base_threads);
  inst_free(&p);
#endif
}

#define TIMED(call)                                                            \
  do {                                                                         \
    double t0_ = vlm_now();                                                    \
    call;                                                                      \
    if (getenv("VT_VERBOSE")) printf("  [%s: %.2f s]\n", #call, vlm_now() - t0_); \
  } while (0)

int main(void) {
  const int base_threads = vlm_threads_get();
  TIMED(test_fast_vs_ref());
  TIMED(test_threads(base_threads));
  TIMED(test_accumulate());
  TIMED(test_known_values());
  TIMED(test_gradcheck());
  TIMED(test_no_probs());
  TIMED(test_bf16_storage());
  TIMED(test_checks());
  TIMED(bench(base_threads));
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  return vt_finish();
}
