/* CoCa parity with open_clip: every output and every gradient against a
 * fixture directory made by the fixture generator (config.json with
 * multimodal_cfg, model/inputs/outputs/grads.safetensors), in both kernel modes.
 *
 * argv[1] is a fixture directory (parity only) or the ../shared folder (ctest's
 * unit_ entry: tiny-coca parity, config checks, finite-difference gradient checks
 * of the cross-attention block and the attentional pooler, save/load round trip).
 * `--compare DIR OUT [GRADS]` checks files written by `vlm forward`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "gradcheck.h"
#include "model/model.h"

/* A CoCa's parameters and config, for the fixture helpers' visitor. */
typedef struct {
  const vlm_coca_config *c;
  vlm_coca_params *p;
} coca_ref;

static void visit_coca(void *m, vlm_param_visit_fn fn, void *ctx) {
  coca_ref *r = m;
  vlm_coca_params_visit(r->p, r->c, fn, ctx);
}

/* One forward + backward on the fixture's inputs; every output and gradient compared. */
static void run_model(const char *dir, const vlm_coca_config *c, vlm_coca_params *p, const vlm_safetensors *in,
                      const vlm_safetensors *out, const vlm_safetensors *grads) {
  vlm_tensor images, text, text32;
  if (!vt_fixture_inputs(in, &images, &text, &text32)) return;
  int64_t B = images.shape[0], L = text.shape[1];
  vlm_coca_acts s;
  vlm_status st = vlm_coca_acts_init(&s, c, B, L, 1);
  CHECK(st == VLM_OK, "%s", vlm_last_error());
  if (st != VLM_OK) return;
  vlm_coca_params g;
  CHECK(vlm_coca_params_init(&g, c) == VLM_OK, "grads: %s", vlm_last_error());
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    char tag[256];
    snprintf(tag, sizeof tag, "%s [%s kernels]", dir, mode ? "ref" : "fast");
    float loss = vlm_coca_forward(c, p, &s, &images, &text);
    double w = 0;
#define CMP(name, t, kind)                                                                 \
    do {                                                                                   \
      double _e = vt_fixture_compare(tag, name, vlm_f32(t), vlm_numel(t), out, kind, 1.0); \
      if (kind != 2 && _e > w) w = _e;                                                     \
    } while (0)
    CMP("image_features_unnorm", &s.pool.features, 0);
    CMP("text_features_unnorm", &s.text.features, 0);
    CMP("image_features", &s.loss.img, 0);
    CMP("text_features", &s.loss.txt, 0);
    CMP("image_tokens", &s.pool.tokens, 0);
    CMP("text_tokens", &s.dec.xs[0], 0);
    CMP("logits_per_image", &s.loss.logits_per_image, 1);
    CMP("logits_per_text", &s.loss.logits_per_text, 1);
    CMP("caption_logits", &s.dec.logits, 1);
    CMP("logit_scale", &s.loss.scale, 2);
#undef CMP
    float clip_w = c->clip_loss_weight * s.clip_loss, cap_w = c->caption_loss_weight * s.caption_loss;
    double lw = 0;
    lw = fmax(lw, vt_fixture_compare(tag, "clip_loss", &clip_w, 1, out, 2, 1.0));
    lw = fmax(lw, vt_fixture_compare(tag, "caption_loss", &cap_w, 1, out, 2, 1.0));
    lw = fmax(lw, vt_fixture_compare(tag, "clip_loss_unweighted", &s.clip_loss, 1, out, 2, 1.0));
    lw = fmax(lw, vt_fixture_compare(tag, "caption_loss_unweighted", &s.caption_loss, 1, out, 2, 1.0));
    lw = fmax(lw, vt_fixture_compare(tag, "loss", &loss, 1, out, 2, 1.0));
    vlm_coca_params_zero(&g);
    vlm_coca_backward(c, p, &g, &s, &text);
    vt_grad_ctx gc = vt_fixture_compare_grads(grads, tag, visit_coca, &(coca_ref){c, &g});
    float loss32 = vlm_coca_forward(c, p, &s, &images, &text32);
    vt_fixture_compare(tag, "loss", &loss32, 1, out, 2, 1.0);
    printf("%s: loss %.7f; outputs within %.2g abs, losses %.2g rel; %d gradients within %.2g of their max "
           "(worst %s)\n", tag, loss, w, lw, gc.checked, gc.worst, gc.worst_name);
  }
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
  vlm_coca_params_free(&g);
  vlm_coca_acts_free(&s);
}

static void parity(const char *dir) {
  char path[4096];
  vlm_safetensors in, out, grads;
  if (!vt_fixture_open(dir, &in, &out, &grads)) return;
  vlm_coca_config c;
  vlm_coca_params p;
  snprintf(path, sizeof path, "%s/config.json", dir);
  CHECK(vlm_model_is_coca(path) == 1, "%s is a CoCa config", path);
  vlm_status s = vlm_coca_load(path, &c, &p);
  CHECK(s == VLM_OK, "load %s: %s", path, vlm_last_error());
  if (s == VLM_OK) {
    run_model(dir, &c, &p, &in, &out, &grads);
    vlm_coca_params_free(&p);
  }
  vt_fixture_close(&in, &out, &grads);
}

/* ---------------------------------------------------------------- gradient checks */
typedef struct {
  vlm_block_config bc;
  vlm_cross_params p, g;
  vlm_cross_acts s;
  vlm_cross_scratch scr;
  vlm_tensor x, img, y, dx, dimg, dy;
} cross_gc;

static void cross_fwd(void *ctx) {
  cross_gc *G = ctx;
  vlm_cross_forward(&G->bc, &G->p, &G->s, &G->y, &G->x, &G->img);
}

static void cross_bwd(void *ctx) {
  cross_gc *G = ctx;
  vlm_cross_forward(&G->bc, &G->p, &G->s, &G->y, &G->x, &G->img);
  vlm_cross_backward(&G->bc, &G->p, &G->g, &G->s, &G->scr, &G->dx, &G->dimg, &G->dy, &G->x, &G->img);
}

typedef struct { vt_gc_input *in; int n; vlm_cross_params *g; } collect_ctx;

static void collect(void *ctx, const char *name, vlm_tensor *t) {
  collect_ctx *C = ctx;
  (void)t;
  (void)name;
  C->n++;
}

static void cross_gradcheck(void) {
  const int64_t B = 2, L = 3, N = 5, W = 8, H = 2, M = 12;
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    cross_gc G;
    memset(&G, 0, sizeof G);
    G.bc = (vlm_block_config){W, H, M, VLM_ACT_GELU, 1e-5f};
    vlm_arena m, a;
    for (int pass = 0; pass < 2; pass++) {
      vlm_arena *ar = pass ? &a : &m;
      if (pass) CHECK(vlm_arena_init(&a, m.used, VLM_CPU) == VLM_OK, "arena");
      else vlm_arena_measure(&m, VLM_CPU);
      vlm_cross_params_layout(&G.p, ar, &G.bc);
      vlm_cross_params_layout(&G.g, ar, &G.bc);
      vlm_cross_acts_layout(&G.s, ar, &G.bc, B, L, N, 1);
      vlm_cross_scratch_layout(&G.scr, ar, &G.bc, B, L, N);
      G.x = vlm_arena_tensor3(ar, VLM_F32, B, L, W);
      G.img = vlm_arena_tensor3(ar, VLM_F32, B, N, W);
      G.y = vlm_arena_tensor3(ar, VLM_F32, B, L, W);
      G.dx = vlm_arena_tensor3(ar, VLM_F32, B, L, W);
      G.dimg = vlm_arena_tensor3(ar, VLM_F32, B, N, W);
      G.dy = vlm_arena_tensor3(ar, VLM_F32, B, L, W);
    }
    /* Parameters: random, LayerNorm weights around 1. */
    vt_gc_input ins[32];
    collect_ctx C = {ins, 0, NULL};
    vlm_cross_params_visit_prefixed(&G.p, "", collect, &C);
    /* Pair each parameter with its gradient by visiting both in the same order. */
    vlm_tensor *pt[32], *gt[32];
    int np = 0;
    {
      vlm_tensor *list[] = {&G.p.b.ln_1_w, &G.p.b.ln_1_b, &G.p.b.in_proj_w, &G.p.b.in_proj_b, &G.p.b.out_proj_w,
                            &G.p.b.out_proj_b, &G.p.b.ln_2_w, &G.p.b.ln_2_b, &G.p.b.fc_w, &G.p.b.fc_b,
                            &G.p.b.proj_w, &G.p.b.proj_b, &G.p.ln_1_kv_w, &G.p.ln_1_kv_b};
      vlm_tensor *glist[] = {&G.g.b.ln_1_w, &G.g.b.ln_1_b, &G.g.b.in_proj_w, &G.g.b.in_proj_b, &G.g.b.out_proj_w,
                             &G.g.b.out_proj_b, &G.g.b.ln_2_w, &G.g.b.ln_2_b, &G.g.b.fc_w, &G.g.b.fc_b,
                             &G.g.b.proj_w, &G.g.b.proj_b, &G.g.ln_1_kv_w, &G.g.ln_1_kv_b};
      np = (int)(sizeof list / sizeof list[0]);
      for (int i = 0; i < np; i++) { pt[i] = list[i]; gt[i] = glist[i]; }
    }
    CHECK(C.n == np, "cross block visits %d tensors, expected %d", C.n, np);
    for (int i = 0; i < np; i++) {
      int is_lnw = i == 0 || i == 6 || i == 12;
      vt_fill_normal(vlm_f32(pt[i]), vlm_numel(pt[i]), 100 + (uint64_t)i, is_lnw ? 0.2f : 0.4f);
      if (is_lnw)
        for (int64_t k = 0; k < vlm_numel(pt[i]); k++) vlm_f32(pt[i])[k] += 1.0f;
    }
    vt_fill_normal(vlm_f32(&G.x), B * L * W, 7, 1.0f);
    vt_fill_normal(vlm_f32(&G.img), B * N * W, 8, 1.0f);
    int n = 0;
    vt_gc_input gi[32];
    gi[n++] = (vt_gc_input){"x", vlm_f32(&G.x), vlm_f32(&G.dx), B * L * W};
    gi[n++] = (vt_gc_input){"image tokens", vlm_f32(&G.img), vlm_f32(&G.dimg), B * N * W};
    static const char *names[] = {"ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
                                  "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight", "ln_2.bias",
                                  "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
                                  "ln_1_kv.weight", "ln_1_kv.bias"};
    for (int i = 0; i < np; i++) gi[n++] = (vt_gc_input){names[i], vlm_f32(pt[i]), vlm_f32(gt[i]), vlm_numel(pt[i])};
    vt_gradcheck gc = {cross_fwd, cross_bwd, &G, vlm_f32(&G.y), vlm_f32(&G.dy), B * L * W, gi, n, 0, 0, 0, 11};
    vt_gradcheck_run(mode ? "cross-attention block (ref)" : "cross-attention block (fast)", &gc);
    vlm_arena_free(&a);
  }
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
}

/* The attentional pooler: x [B,T,W] -> out [B,Q,E]. */
typedef struct {
  vlm_vit_config c;
  vlm_attn_pool_params p, g;
  vlm_attn_pool_acts s;
  vlm_tensor x, dx, dout;
} pool_gc;

static void pool_fwd(void *ctx) {
  pool_gc *G = ctx;
  vlm_attn_pool_forward(&G->c, &G->p, &G->s, &G->x);
}

static void pool_bwd(void *ctx) {
  pool_gc *G = ctx;
  vlm_attn_pool_forward(&G->c, &G->p, &G->s, &G->x);
  vlm_attn_pool_backward(&G->c, &G->p, &G->g, &G->s, &G->x, &G->dout, &G->dx);
}

static void pool_gradcheck(void) {
  for (int mode = 0; mode < 2; mode++) {
    vlm_set_kernel_mode(mode ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
    pool_gc G;
    memset(&G, 0, sizeof G);
    /* image 8, patch 4: T = 5 tokens of width 6; E = 4, 3 queries, 2 heads */
    G.c = (vlm_vit_config){8, 4, 6, 0, 2, 12, 4, VLM_ACT_GELU, 1e-5f, 1, 3, 2, {0}, {0}, 0};
    int64_t B = 2, T = vlm_vit_tokens(&G.c), W = 6, E = 4, Q = 3;
    vlm_arena m, a;
    for (int pass = 0; pass < 2; pass++) {
      vlm_arena *ar = pass ? &a : &m;
      if (pass) CHECK(vlm_arena_init(&a, m.used, VLM_CPU) == VLM_OK, "arena");
      else vlm_arena_measure(&m, VLM_CPU);
      vlm_attn_pool_params_layout(&G.p, ar, &G.c);
      vlm_attn_pool_params_layout(&G.g, ar, &G.c);
      vlm_attn_pool_acts_layout(&G.s, ar, &G.c, B, 1);
      G.x = vlm_arena_tensor3(ar, VLM_F32, B, T, W);
      G.dx = vlm_arena_tensor3(ar, VLM_F32, B, T, W);
      G.dout = vlm_arena_tensor3(ar, VLM_F32, B, Q, E);
    }
    vlm_tensor *pl[] = {&G.p.query, &G.p.q_w, &G.p.k_w, &G.p.v_w, &G.p.in_b, &G.p.out_w, &G.p.out_b,
                        &G.p.ln_q_w, &G.p.ln_q_b, &G.p.ln_k_w, &G.p.ln_k_b};
    vlm_tensor *gl[] = {&G.g.query, &G.g.q_w, &G.g.k_w, &G.g.v_w, &G.g.in_b, &G.g.out_w, &G.g.out_b,
                        &G.g.ln_q_w, &G.g.ln_q_b, &G.g.ln_k_w, &G.g.ln_k_b};
    static const char *names[] = {"query", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
                                  "out_proj.weight", "out_proj.bias", "ln_q.weight", "ln_q.bias", "ln_k.weight",
                                  "ln_k.bias"};
    vt_gc_input gi[16];
    int n = 0;
    for (int i = 0; i < 11; i++) {
      int lnw = i == 7 || i == 9;
      vt_fill_normal(vlm_f32(pl[i]), vlm_numel(pl[i]), 200 + (uint64_t)i, lnw ? 0.2f : 0.5f);
      if (lnw)
        for (int64_t k = 0; k < vlm_numel(pl[i]); k++) vlm_f32(pl[i])[k] += 1.0f;
      /* The key part of in_proj_bias has an exactly zero gradient (softmax ignores it). */
      if (i != 4) gi[n++] = (vt_gc_input){names[i], vlm_f32(pl[i]), vlm_f32(gl[i]), vlm_numel(pl[i])};
    }
    vlm_tensor bq = vlm_narrow(&G.p.in_b, 0, 0, E), gbq = vlm_narrow(&G.g.in_b, 0, 0, E);
    vlm_tensor bv = vlm_narrow(&G.p.in_b, 0, 2 * E, E), gbv = vlm_narrow(&G.g.in_b, 0, 2 * E, E);
    gi[n++] = (vt_gc_input){"in_proj_bias (q)", vlm_f32(&bq), vlm_f32(&gbq), E};
    gi[n++] = (vt_gc_input){"in_proj_bias (v)", vlm_f32(&bv), vlm_f32(&gbv), E};
    vt_fill_normal(vlm_f32(&G.x), B * T * W, 9, 1.0f);
    gi[n++] = (vt_gc_input){"x", vlm_f32(&G.x), vlm_f32(&G.dx), B * T * W};
    vt_gradcheck gc = {pool_fwd, pool_bwd, &G, vlm_f32(&G.s.out), vlm_f32(&G.dout), B * Q * E, gi, n, 0, 0, 0, 13};
    vt_gradcheck_run(mode ? "attentional pooler (ref)" : "attentional pooler (fast)", &gc);
    /* the key bias: zero gradient */
    vlm_tensor gbk = vlm_narrow(&G.g.in_b, 0, E, E);
    vlm_zero(&G.g.in_b);
    pool_bwd(&G);
    double mk = 0;
    for (int64_t k = 0; k < E; k++) mk = fmax(mk, fabs(vlm_f32(&gbk)[k]));
    CHECK(mk < 1e-5, "attentional pooler: key bias gradient %.3g should be 0", mk);
    vlm_arena_free(&a);
  }
  vlm_set_kernel_mode(VLM_KERNELS_FAST);
}

/* ---------------------------------------------------------------- configs, round trip */
static void config_checks(const char *shared) {
  vlm_coca_config c;
  CHECK(vlm_coca_config_builtin(&c, "coca_ViT-B-32") == VLM_OK, "%s", vlm_last_error());
  CHECK(c.vision.width == 768 && c.vision.heads == 12 && c.vision.pool_queries == 256 && c.vision.pool_heads == 8 &&
            c.text.context_length == 76 && c.text.embed_cls && c.decoder.layers == 12 && c.decoder.heads == 8 &&
            c.decoder.vocab_size == 49408 && c.caption_loss_weight == 2.0f,
        "coca_ViT-B-32 values");
  vlm_coca_params p;
  memset(&p, 0, sizeof p);
  /* parameter counts of open_clip_torch 2.24's create_model(NAME) (sum of its state_dict's numel) */
  struct { const char *name; int64_t n; } counts[] = {{"coca_ViT-B-32", 253560065}, {"coca_ViT-L-14", 638450177}};
  for (int i = 0; i < 2; i++) {
    vlm_status s = vlm_coca_config_builtin(&c, counts[i].name);
    if (s == VLM_OK) s = vlm_coca_params_init(&p, &c);   /* mapped, not touched */
    CHECK(s == VLM_OK, "%s: %s", counts[i].name, vlm_last_error());
    if (s != VLM_OK) continue;
    int64_t n = vlm_coca_params_count(&p, &c);
    CHECK(n == counts[i].n, "%s: %lld parameters, open_clip has %lld", counts[i].name, (long long)n,
          (long long)counts[i].n);
    vlm_coca_params_free(&p);
  }
  CHECK(vlm_coca_config_builtin(&c, "coca_ViT-L-14") == VLM_OK && c.vision.heads == 16 && c.vision.pool_heads == 8 &&
            c.text.heads == 12 && c.decoder.width == 768 && c.decoder.heads == 12 && c.embed_dim == 768,
        "coca_ViT-L-14 values");
  memset(&p, 0, sizeof p);
  CHECK(vlm_coca_config_builtin(&c, "coca-small") == VLM_OK && c.vision.image_size == 64 && c.vision.width == 256,
        "coca-small: %s", vlm_last_error());
  CHECK(vlm_coca_config_builtin(&c, "coca-nope") != VLM_OK && strstr(vlm_last_error(), "coca_ViT-B-32"),
        "unknown built-in lists the names");
  const char *bad[][2] = {
    {"{\"embed_dim\": 32, \"vision_cfg\": {}, \"text_cfg\": {}}", "multimodal_cfg"},
    {"{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, \"width\": 48, "
     "\"head_width\": 12, \"attentional_pool\": true}, \"text_cfg\": {\"width\": 32, \"heads\": 4, \"embed_cls\": true}, "
     "\"multimodal_cfg\": {\"width\": 64, \"heads\": 4}}", "multimodal_cfg.width"},
    {"{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, \"width\": 48, "
     "\"head_width\": 12, \"attentional_pool\": false}, \"text_cfg\": {}, \"multimodal_cfg\": {}}", "attentional_pool"},
    {"{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, \"width\": 48, "
     "\"head_width\": 12, \"attentional_pool\": true}, \"text_cfg\": {\"embed_cls\": false}, \"multimodal_cfg\": {}}",
     "embed_cls"},
    /* open_clip reads a missing attentional_pool / embed_cls (or null) as false: refused, not taken as true */
    {"{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, \"width\": 48, "
     "\"head_width\": 12}, \"text_cfg\": {\"embed_cls\": true}, \"multimodal_cfg\": {}}", "attentional_pool: missing"},
    {"{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, \"width\": 48, "
     "\"head_width\": 12, \"attentional_pool\": null}, \"text_cfg\": {\"embed_cls\": true}, \"multimodal_cfg\": {}}",
     "attentional_pool: not true"},
    {"{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, \"width\": 48, "
     "\"head_width\": 12, \"attentional_pool\": true}, \"text_cfg\": {}, \"multimodal_cfg\": {}}", "embed_cls: missing"},
    /* a CoCa needs 2 positions to caption (sot + one token) */
    {"{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, \"width\": 48, "
     "\"head_width\": 12, \"attentional_pool\": true}, \"text_cfg\": {\"embed_cls\": true, \"context_length\": 1}, "
     "\"multimodal_cfg\": {}}", "text_cfg.context_length: 1 is too short"},
    {"{\"embed_dim\": 512, \"vision_cfg\": {\"image_size\": 32, \"patch_size\": 8, \"layers\": 1, \"width\": 48, "
     "\"head_width\": 12, \"attentional_pool\": true}, \"text_cfg\": {\"embed_cls\": true}, "
     "\"multimodal_cfg\": {\"context_length\": 1}}", "multimodal_cfg.context_length: 1 is too short"},
    {"{\"embed_dim\": 32", "JSON"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    vlm_status s = vlm_coca_config_parse(&c, bad[i][0], "cfg.json");
    CHECK(s != VLM_OK && strstr(vlm_last_error(), "cfg.json") && strstr(vlm_last_error(), bad[i][1]),
          "config error %zu: '%s' (want '%s')", i, vlm_last_error(), bad[i][1]);
  }
  /* The CLIP parser still refuses CoCa configs, and tiny-clip is not CoCa. */
  char path[4096];
  snprintf(path, sizeof path, "%s/fixtures/tiny-clip", shared);
  CHECK(vlm_model_is_coca(path) == 0, "tiny-clip is not CoCa");
  CHECK(vlm_model_is_coca("/nonexistent/model") == -1, "missing model");
  /* Init + save dir + load: the same tensors, the decoder projection initialised. */
  CHECK(vlm_coca_config_builtin(&c, "coca-tiny") == VLM_OK, "%s", vlm_last_error());
  CHECK(vlm_coca_params_init(&p, &c) == VLM_OK, "%s", vlm_last_error());
  vlm_coca_params_init_openclip(&p, &c, 5);
  double ss = 0;
  const float *tp = vlm_f32(&p.decoder.proj);
  for (int64_t i = 0; i < vlm_numel(&p.decoder.proj); i++) ss += (double)tp[i] * tp[i];
  double sd = sqrt(ss / (double)vlm_numel(&p.decoder.proj)), want = 1.0 / sqrt((double)c.decoder.width);
  CHECK(fabs(sd - want) < 0.1 * want, "text_decoder.text_projection std %.4f, want %.4f", sd, want);
  char dir[256];
  snprintf(dir, sizeof dir, "/tmp/vlm_test_coca_%d", (int)getpid());
  char cmd[512];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
  CHECK(system(cmd) == 0, "mkdir");
  CHECK(vlm_coca_save_dir(&p, &c, dir) == VLM_OK, "%s", vlm_last_error());
  vlm_coca_config c2;
  vlm_coca_params p2;
  CHECK(vlm_coca_load(dir, &c2, &p2) == VLM_OK, "%s", vlm_last_error());
  CHECK(vlm_model_is_coca(dir) == 1, "saved dir is CoCa");
  CHECK(p2.arena.used == p.arena.used && !memcmp(p2.arena.base, p.arena.base, p.arena.used), "round trip exact");
  CHECK(vlm_coca_params_count(&p2, &c2) == vlm_coca_params_count(&p, &c), "param count");
  vlm_coca_params_free(&p2);
  vlm_coca_params_free(&p);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0, "rm");
  /* A CLIP checkpoint given to the CoCa loader: a clear error naming the file. */
  snprintf(path, sizeof path, "%s/fixtures/tiny-clip/config.json", shared);
  CHECK(vlm_coca_load(path, &c2, &p2) != VLM_OK && strstr(vlm_last_error(), "multimodal_cfg"),
        "CoCa loader on a CLIP config: %s", vlm_last_error());
}

/* BF16 inference weights: the matrices are BF16, the rest shared; features and
 * caption logits stay close to fp32. */
static void bf16_checks(const char *shared) {
  char dir[2048], path[4096];
  snprintf(dir, sizeof dir, "%s/fixtures/tiny-coca", shared);
  snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
  vlm_coca_config c;
  vlm_coca_params p, h;
  vlm_safetensors in;
  if (vlm_coca_load(dir, &c, &p) != VLM_OK || vlm_st_open(&in, path) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return;
  }
  vlm_tensor images = vlm_st_tensor(vlm_st_find(&in, "images")), text = vlm_st_tensor(vlm_st_find(&in, "text"));
  vlm_coca_acts a, b;
  CHECK(vlm_coca_acts_init(&a, &c, images.shape[0], text.shape[1], 0) == VLM_OK &&
            vlm_coca_acts_init(&b, &c, images.shape[0], text.shape[1], 0) == VLM_OK, "acts");
  CHECK(vlm_coca_params_bf16(&h, &p, &c, 0) == VLM_OK, "%s", vlm_last_error());
  CHECK(h.decoder.proj.dtype == VLM_BF16 && h.decoder.cross[1].b.in_proj_w.dtype == VLM_BF16 &&
            h.pool.k_w.dtype == VLM_BF16 && h.visual.conv1_w.dtype == VLM_BF16 && h.pool.query.dtype == VLM_F32 &&
            h.text.cls_emb.dtype == VLM_F32 && h.text.token_emb.dtype == VLM_F32 &&
            p.decoder.proj.dtype == VLM_F32,
        "which CoCa tensors are BF16");
  vlm_coca_forward(&c, &p, &a, &images, &text);
  vlm_set_matmul_precision(VLM_PREC_BF16);
  vlm_coca_forward(&c, &h, &b, &images, &text);
  vlm_set_matmul_precision(VLM_PREC_F32);
  double ci = vt_min_cosine(&a.pool.features, &b.pool.features), ct = vt_min_cosine(&a.text.features, &b.text.features);
  double cl = vt_min_cosine(&a.dec.logits, &b.dec.logits);
  CHECK(ci >= 0.999 && ct >= 0.999 && cl >= 0.999, "bf16: cosine to fp32: image %.6f, text %.6f, logits %.6f", ci, ct,
        cl);
  printf("CoCa bf16 inference weights: min cosine to fp32: image %.6f, text %.6f, caption logits %.6f\n", ci, ct, cl);
  /* drop_src (what `vlm caption --precision bf16` does): the same outputs to the bit from a
   * source whose F32 matrices were given back as they were converted */
  vlm_coca_params q, hd;
  CHECK(vlm_coca_params_init(&q, &c) == VLM_OK, "%s", vlm_last_error());
  vlm_coca_params_copy(&q, &p);
  CHECK(vlm_coca_params_bf16(&hd, &q, &c, 1) == VLM_OK, "%s", vlm_last_error());
  CHECK(vt_pages_released(&q.decoder.proj) == 1 && vt_pages_released(&p.decoder.proj) == 0,
        "drop_src: the converted F32 matrices' pages are given back (and only the source's)");
  vlm_set_matmul_precision(VLM_PREC_BF16);
  vlm_coca_forward(&c, &hd, &a, &images, &text);
  vlm_set_matmul_precision(VLM_PREC_F32);
  CHECK(!memcmp(a.pool.features.data, b.pool.features.data, vlm_nbytes(&a.pool.features)) &&
            !memcmp(a.text.features.data, b.text.features.data, vlm_nbytes(&a.text.features)) &&
            !memcmp(a.dec.logits.data, b.dec.logits.data, vlm_nbytes(&a.dec.logits)),
        "drop_src: the bf16 outputs differ from those without it");
  vlm_coca_params_free(&hd);
  vlm_coca_params_free(&q);
  vlm_coca_acts_free(&a);
  vlm_coca_acts_free(&b);
  vlm_coca_params_free(&h);
  vlm_coca_params_free(&p);
  vlm_st_close(&in);
}

/* CoCa's cls-pooled text through the pooled-rows path (vlm_text_forward on
 * inference activations: tokens cut after the last key the cls can see, the
 * last block for the cls row only) against the same activations running
 * every row, and the whole batch against open_clip's text features. Batches:
 * the fixture's 8 texts (no cut), rows whose last EOT is at 7 (n must stay
 * 16: the cls sees the pad key after the EOT), rows cut to 8 positions, and a
 * row with the pad id inside the text. fp32 fast and reference kernels, and
 * bf16 weights. */
static void pooled_text_checks(const char *shared) {
  char dir[2048], path[4096];
  snprintf(dir, sizeof dir, "%s/fixtures/tiny-coca", shared);
  vlm_coca_config c;
  vlm_coca_params p, h;
  vlm_safetensors in, out;
  snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
  int ok = vlm_coca_load(dir, &c, &p) == VLM_OK && vlm_st_open(&in, path) == VLM_OK;
  snprintf(path, sizeof path, "%s/outputs.safetensors", dir);
  if (ok) ok = vlm_st_open(&out, path) == VLM_OK;
  if (!ok) {
    CHECK(0, "%s", vlm_last_error());
    return;
  }
  CHECK(c.text.embed_cls, "tiny-coca's text has a cls token");
  CHECK(vlm_coca_params_bf16(&h, &p, &c, 0) == VLM_OK, "%s", vlm_last_error());
  vlm_tensor text = vlm_st_tensor(vlm_st_find(&in, "text"));
  int64_t L = text.shape[1];
  const int64_t *all = text.data;
  static const int64_t sets[4][8] = {{0, 1, 2, 3, 4, 5, 6, 7}, {0, 2, 4, 5, 7}, {0, 5, 7}, {0, 7, -1}};
  static const int64_t sizes[4] = {8, 5, 3, 3};
  for (int set = 0; set < 4; set++) {
    int64_t B = sizes[set], tsh[2] = {B, L};
    int64_t *ids = calloc((size_t)(B * L), sizeof *ids);
    for (int64_t i = 0; i < B; i++) {
      if (sets[set][i] >= 0) {
        memcpy(ids + i * L, all + sets[set][i] * L, (size_t)L * sizeof *ids);
      } else {  /* a text with the pad id (0) inside it: open_clip's mask hides the key after it */
        int64_t row[6] = {all[0], 241, c.text.pad_id, 300, 17, all[2]};
        memcpy(ids + i * L, row, sizeof row);
      }
    }
    vlm_tensor t = vlm_tensor_make(ids, VLM_I64, VLM_CPU, 2, tsh);
    vlm_text_acts a, b;
    vlm_arena m, aa, ba;
    CHECK(vlm_text_acts_alloc(&a, &c.text, B) == VLM_OK && vlm_text_acts_alloc(&b, &c.text, B) == VLM_OK, "acts");
    vlm_arena_measure(&m, VLM_CPU);
    vlm_text_acts_layout(&a, &m, &c.text, B, L, 0);
    CHECK(vlm_arena_init(&aa, m.used, VLM_CPU) == VLM_OK && vlm_arena_init(&ba, m.used, VLM_CPU) == VLM_OK, "arena");
    vlm_text_acts_layout(&a, &aa, &c.text, B, L, 0);
    vlm_text_acts_layout(&b, &ba, &c.text, B, L, 0);
    CHECK(b.pooled_only, "inference text acts default to pooled_only");
    a.pooled_only = 0;
    for (int v = 0; v < 3; v++) {
      int bf16 = v == 2;
      vlm_set_kernel_mode(v == 1 ? VLM_KERNELS_REF : VLM_KERNELS_FAST);
      vlm_set_matmul_precision(bf16 ? VLM_PREC_BF16 : VLM_PREC_F32);
      vlm_text_forward(&c.text, bf16 ? &h.text : &p.text, &a, &t);
      vlm_text_forward(&c.text, bf16 ? &h.text : &p.text, &b, &t);
      vlm_set_matmul_precision(VLM_PREC_F32);
      const float *x = b.features.data, *y = a.features.data;
      double d = 0, mx = 0;
      for (int64_t i = 0; i < vlm_numel(&a.features); i++) {
        d = fmax(d, fabs((double)x[i] - y[i]));
        mx = fmax(mx, fabs((double)y[i]));
      }
      double tol = bf16 ? 2e-3 : 2e-6;
      CHECK(d <= tol * mx, "CoCa text, set %d, variant %d: pooled rows differ from every row by %.3g of %.3g", set, v,
            d, mx);
      printf("CoCa text pooled rows vs every row, set %d, variant %d: largest difference %.2g of the max\n", set, v,
             d / (mx > 0 ? mx : 1));
      if (set == 0 && !bf16) {
        char tag[128];
        snprintf(tag, sizeof tag, "tiny-coca text, pooled rows (%s kernels)", v ? "ref" : "fast");
        vt_fixture_compare(tag, "text_features_unnorm", vlm_f32(&b.features), vlm_numel(&b.features), &out, 0, 1.0);
      }
    }
    vlm_set_kernel_mode(VLM_KERNELS_FAST);
    vlm_text_acts_free(&a);
    vlm_text_acts_free(&b);
    vlm_arena_free(&aa);
    vlm_arena_free(&ba);
    free(ids);
  }
  vlm_coca_params_free(&h);
  vlm_coca_params_free(&p);
  vlm_st_close(&in);
  vlm_st_close(&out);
}

/* --compare DIR OUT GRADS: GRADS into parameters of DIR's config. */
static void *load_grads(const char *dir, const char *grads_path) {
  static vlm_coca_config c;
  static vlm_coca_params g;
  static coca_ref r = {&c, &g};
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (vlm_coca_config_load(&c, path) != VLM_OK || vlm_coca_params_init(&g, &c) != VLM_OK) {
    CHECK(0, "%s", vlm_last_error());
    return NULL;
  }
  vlm_status st = vlm_coca_load_safetensors(&g, &c, grads_path);
  CHECK(st == VLM_OK, "%s: %s", grads_path, vlm_last_error());
  if (st == VLM_OK) return &r;
  vlm_coca_params_free(&g);
  return NULL;
}

static void free_grads(void *m) { vlm_coca_params_free(((coca_ref *)m)->p); }

/* ../shared: the unit checks, then the tiny-coca fixture. */
static void units(const char *shared) {
  cross_gradcheck();
  pool_gradcheck();
  config_checks(shared);
  bf16_checks(shared);
  pooled_text_checks(shared);
  char d[4096];
  snprintf(d, sizeof d, "%s/fixtures/tiny-coca", shared);
  parity(d);
}

int main(int argc, char **argv) {
  return vt_parity_main(argc, argv, "tiny-coca", parity, units, load_grads, visit_coca, free_grads);
}
