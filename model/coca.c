/* CoCa assembled from the towers: parameters (one arena, open_clip names),
 * open_clip's initialisation, checkpoints, and the forward/backward of the
 * whole model with open_clip's CoCaLoss. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

/* ---------------------------------------------------------------- parameters */
static void layout(vlm_coca_params *p, vlm_arena *a, const vlm_coca_config *c) {
  vlm_vit_params_layout(&p->visual, a, &c->vision);
  vlm_attn_pool_params_layout(&p->pool, a, &c->vision);
  vlm_text_params_layout(&p->text, a, &c->text);
  vlm_decoder_params_layout(&p->decoder, a, &c->decoder);
  p->logit_scale = vlm_arena_tensor(a, VLM_F32, 0, NULL);
}

static vlm_status alloc_arrays(vlm_coca_params *p, const vlm_coca_config *c) {
  memset(p, 0, sizeof *p);
  vlm_status s = vlm_vit_params_alloc(&p->visual, &c->vision);
  if (s == VLM_OK) s = vlm_text_params_alloc(&p->text, &c->text);
  if (s == VLM_OK) s = vlm_decoder_params_alloc(&p->decoder, &c->decoder);
  if (s != VLM_OK) vlm_coca_params_free(p);
  return s;
}

vlm_status vlm_coca_params_init(vlm_coca_params *p, const vlm_coca_config *c) {
  return vlm_coca_params_init_on(p, c, VLM_CPU);
}

vlm_status vlm_coca_params_init_on(vlm_coca_params *p, const vlm_coca_config *c, vlm_device dev) {
  vlm_status s = alloc_arrays(p, c);
  if (s != VLM_OK) return s;
  vlm_arena m;
  vlm_arena_measure(&m, dev);
  layout(p, &m, c);
  s = vlm_arena_init(&p->arena, m.used, dev);
  if (s != VLM_OK) {
    vlm_coca_params_free(p);
    return vlm_error_prefix(s, "CoCa parameters (%zu bytes)", m.used);
  }
  layout(p, &p->arena, c);
  return VLM_OK;
}

void vlm_coca_params_free(vlm_coca_params *p) {
  vlm_vit_params_free(&p->visual);
  vlm_text_params_free(&p->text);
  vlm_decoder_params_free(&p->decoder);
  vlm_arena_free(&p->arena);
  memset(p, 0, sizeof *p);
}

void vlm_coca_params_visit(vlm_coca_params *p, const vlm_coca_config *c, vlm_param_visit_fn fn, void *ctx) {
  fn(ctx, "logit_scale", &p->logit_scale);
  vlm_text_params_visit(&p->text, &c->text, "text.", fn, ctx);
  vlm_vit_params_visit(&p->visual, &c->vision, "visual.", fn, ctx);
  vlm_attn_pool_params_visit(&p->pool, "visual.attn_pool.", fn, ctx);
  vlm_decoder_params_visit(&p->decoder, &c->decoder, "text_decoder.", fn, ctx);
}

static void count_one(void *ctx, const char *name, vlm_tensor *t) {
  (void)name;
  *(int64_t *)ctx += vlm_numel(t);
}

int64_t vlm_coca_params_count(vlm_coca_params *p, const vlm_coca_config *c) {
  int64_t n = 0;
  vlm_coca_params_visit(p, c, count_one, &n);
  return n;
}

void vlm_coca_params_zero(vlm_coca_params *p) {
  if (!p->arena.base) return;
  int64_t n = (int64_t)p->arena.used;
  vlm_tensor all = vlm_tensor_make(p->arena.base, VLM_U8, p->arena.device, 1, &n);
  vlm_zero(&all);
}

void vlm_coca_params_copy(vlm_coca_params *dst, const vlm_coca_params *src) {
  VLM_CHECK(dst->arena.used == src->arena.used, "coca params copy: layouts differ (%zu vs %zu bytes)",
            dst->arena.used, src->arena.used);
  vlm_memcpy(dst->arena.base, dst->arena.device, src->arena.base, src->arena.device, src->arena.used);
}

typedef struct { vlm_coca_params *p; const vlm_coca_config *c; } coca_model;

static void visit_all(void *model, vlm_param_visit_fn fn, void *ctx) {
  coca_model *m = model;
  vlm_coca_params_visit(m->p, m->c, fn, ctx);
}

vlm_status vlm_coca_load_safetensors(vlm_coca_params *p, const vlm_coca_config *c, const char *path) {
  coca_model m = {p, c};
  return vlm_load_safetensors_visit(visit_all, &m, path);
}

vlm_status vlm_coca_save_safetensors(vlm_coca_params *p, const vlm_coca_config *c, const char *path) {
  coca_model m = {p, c};
  return vlm_save_safetensors_visit(visit_all, &m, path);
}

vlm_status vlm_coca_stage_safetensors(vlm_coca_params *p, const vlm_coca_config *c, const char *path,
                                      vlm_atomic_file *staged) {
  return vlm_coca_stage_weights(p, c, path, 0, staged);
}

vlm_status vlm_coca_stage_weights(vlm_coca_params *p, const vlm_coca_config *c, const char *path, int torch,
                                  vlm_atomic_file *staged) {
  coca_model m = {p, c};
  return vlm_stage_weights_visit(visit_all, &m, path, torch, staged);
}

/* ---------------------------------------------------------------- initialisation
 * open_clip's CoCa from scratch (same distribution per tensor; vlm's own stream):
 *   text.*: TextTransformer.init_parameters (token_embedding N(0,0.02),
 *     positional_embedding N(0,0.01), cls_emb N(0,0.01), in_proj N(0,W^-1/2),
 *     out_proj / c_proj N(0, W^-1/2 (2 layers)^-1/2), c_fc N(0,(2W)^-1/2),
 *     text_projection N(0,W^-1/2)); biases keep PyTorch's defaults;
 *   visual.*: PyTorch defaults as in CLIP (class/positional embedding, proj
 *     N(0, W^-1/2) with W the ViT width); attn_pool.query N(0,1), q/k/v_proj_weight
 *     xavier-uniform each, in_proj_bias and out_proj.bias 0, out_proj.weight
 *     U(+-E^-1/2);
 *   text_decoder.*: PyTorch defaults (open_clip never calls the decoder's
 *     init_parameters): in_proj xavier U(+-sqrt(6/4W)), out_proj U(+-W^-1/2),
 *     c_fc / c_proj weight and bias U(+-fan_in^-1/2); text_projection N(0, W^-1/2)
 *     (torch.empty in open_clip, the fixture's fix-up);
 *   LayerNorms 1 / 0; logit_scale ln(1/0.07). */
typedef struct {
  const vlm_coca_config *c;
  uint64_t seed, index;
} init_ctx;

static void init_one(void *ctx, const char *name, vlm_tensor *t) {
  init_ctx *I = ctx;
  const vlm_coca_config *c = I->c;
  vlm_rng r;
  vlm_rng_seed_stream(&r, I->seed, I->index++);
  int text = !strncmp(name, "text.", 5), dec = !strncmp(name, "text_decoder.", 13);
  double W = (double)(text ? c->text.width : dec ? c->decoder.width : c->vision.width);
  double layers = (double)c->text.layers;
  int64_t mlp = text ? c->text.mlp_width : dec ? c->decoder.mlp_width : c->vision.mlp_width;
  int64_t fan_in = t->ndim == 2 ? t->shape[1] : 0;
  if (!strcmp(name, "logit_scale")) {
    vlm_fill(t, logf(1.0f / 0.07f));
  } else if (strstr(name, ".ln_")) {
    vlm_fill(t, vlm_name_ends(name, ".weight") ? 1.0f : 0.0f);
  } else if (!strcmp(name, "text.token_embedding.weight")) {
    vlm_fill_normal(&r, t, 0.02);
  } else if (!strcmp(name, "text.positional_embedding") || !strcmp(name, "text.cls_emb")) {
    vlm_fill_normal(&r, t, 0.01);
  } else if (!strcmp(name, "text.text_projection") || !strcmp(name, "text_decoder.text_projection") ||
             !strcmp(name, "visual.proj") || !strcmp(name, "visual.class_embedding") ||
             !strcmp(name, "visual.positional_embedding")) {
    vlm_fill_normal(&r, t, pow(W, -0.5));
  } else if (!strcmp(name, "visual.conv1.weight")) {
    vlm_fill_uniform(&r, t, 1.0 / sqrt((double)(t->shape[1] * t->shape[2] * t->shape[3])));
  } else if (!strcmp(name, "visual.attn_pool.query")) {
    vlm_fill_normal(&r, t, 1.0);
  } else if (vlm_name_ends(name, "_proj_weight") && strstr(name, "attn_pool")) {
    vlm_fill_uniform(&r, t, sqrt(6.0 / (double)(t->shape[0] + t->shape[1])));
  } else if (vlm_name_ends(name, "attn.in_proj_bias") || vlm_name_ends(name, "attn.out_proj.bias")) {
    vlm_fill(t, 0.0f);
  } else if (vlm_name_ends(name, "mlp.c_fc.bias") || vlm_name_ends(name, "mlp.c_proj.bias")) {
    vlm_fill_uniform(&r, t, 1.0 / sqrt(vlm_name_ends(name, "c_fc.bias") ? W : (double)mlp));
  } else if (vlm_name_ends(name, "attn.in_proj_weight")) {
    /* xavier over the packed [3W, W] matrix, as nn.MultiheadAttention */
    if (text) vlm_fill_normal(&r, t, pow(W, -0.5));
    else vlm_fill_uniform(&r, t, sqrt(6.0 / (double)(t->shape[0] + t->shape[1])));
  } else if (vlm_name_ends(name, "attn.out_proj.weight") || vlm_name_ends(name, "mlp.c_proj.weight")) {
    if (text) vlm_fill_normal(&r, t, pow(W, -0.5) * pow(2.0 * layers, -0.5));
    else vlm_fill_uniform(&r, t, 1.0 / sqrt((double)fan_in));
  } else if (vlm_name_ends(name, "mlp.c_fc.weight")) {
    if (text) vlm_fill_normal(&r, t, pow(2.0 * W, -0.5));
    else vlm_fill_uniform(&r, t, 1.0 / sqrt((double)fan_in));
  } else {
    VLM_CHECK(0, "coca init: no rule for %s", name);
  }
}

void vlm_coca_params_init_openclip(vlm_coca_params *p, const vlm_coca_config *c, uint64_t seed) {
  VLM_CHECK(p->arena.device == VLM_CPU, "coca init: parameters must be on the CPU");
  init_ctx I = {c, seed, 0};
  vlm_coca_params_visit(p, c, init_one, &I);
}

/* ---------------------------------------------------------------- activations */
static void acts_layout(vlm_coca_acts *s, vlm_arena *a, const vlm_coca_config *c, int64_t B, int64_t L, int bw) {
  int64_t E = c->embed_dim, N = c->vision.pool_queries - 1, V = c->decoder.vocab_size, W = c->decoder.width;
  s->B = B;
  s->L = L;
  s->with_backward = bw;
  vlm_vit_acts_layout(&s->visual, a, &c->vision, B, bw);
  vlm_attn_pool_acts_layout(&s->pool, a, &c->vision, B, bw);
  vlm_text_acts_layout(&s->text, a, &c->text, B, L, bw);
  s->text.pooled_only = 0;   /* the decoder reads the token states */
  vlm_decoder_acts_layout(&s->dec, a, &c->decoder, B, L, N, bw);
  vlm_clip_loss_layout(&s->loss, a, B, E);
  s->targets = vlm_arena_tensor1(a, VLM_I64, B * L);
  s->cap_probs = vlm_arena_tensor2(a, VLM_F32, B * L, V);
  s->cap_loss = vlm_arena_tensor1(a, VLM_F32, 1);
  s->d_cap = vlm_arena_tensor1(a, VLM_F32, 1);
  if (!bw) return;
  s->d_img_feat = vlm_arena_tensor2(a, VLM_F32, B, E);
  s->d_txt_feat = vlm_arena_tensor2(a, VLM_F32, B, E);
  s->d_logits = vlm_arena_tensor3(a, VLM_F32, B, L, V);
  s->d_text_tokens = vlm_arena_tensor3(a, VLM_F32, B, L, W);
  s->d_img_tokens = vlm_arena_tensor3(a, VLM_F32, B, N, E);
}

vlm_status vlm_coca_acts_init(vlm_coca_acts *s, const vlm_coca_config *c, int64_t B, int64_t L, int with_backward) {
  return vlm_coca_acts_init_on(s, c, B, L, with_backward, VLM_CPU);
}

vlm_status vlm_coca_acts_init_on(vlm_coca_acts *s, const vlm_coca_config *c, int64_t B, int64_t L, int with_backward,
                                 vlm_device dev) {
  memset(s, 0, sizeof *s);
  if (B < 1 || L < 1 || L > c->text.context_length || L > c->decoder.context_length)
    return vlm_error(VLM_ERR_ARG, "CoCa: batch %lld and text length %lld (context %lld) are not usable",
                     (long long)B, (long long)L, (long long)c->text.context_length);
  vlm_status st = vlm_vit_acts_alloc(&s->visual, &c->vision);
  if (st == VLM_OK) st = vlm_text_acts_alloc(&s->text, &c->text, B);
  if (st == VLM_OK) st = vlm_decoder_acts_alloc(&s->dec, &c->decoder);
  if (st != VLM_OK) {
    vlm_coca_acts_free(s);
    return st;
  }
  vlm_arena m;
  vlm_arena_measure(&m, dev);
  acts_layout(s, &m, c, B, L, with_backward);
  st = vlm_arena_init(&s->arena, m.used, dev);
  if (st != VLM_OK) {
    vlm_coca_acts_free(s);
    return vlm_error_prefix(st, "CoCa activations (%zu bytes)", m.used);
  }
  acts_layout(s, &s->arena, c, B, L, with_backward);
  return VLM_OK;
}

void vlm_coca_acts_free(vlm_coca_acts *s) {
  vlm_vit_acts_free(&s->visual);
  vlm_text_acts_free(&s->text);
  vlm_decoder_acts_free(&s->dec);
  vlm_arena_free(&s->arena);
  memset(s, 0, sizeof *s);
}

static int64_t id_at(const vlm_tensor *ids, int64_t i) {
  return ids->dtype == VLM_I64 ? ((const int64_t *)ids->data)[i] : ((const int32_t *)ids->data)[i];
}

/* ids [B, L] I32/I64 as a host tensor (read back from a GPU); *back to free. */
static vlm_tensor host_ids(const vlm_tensor *ids, void **back) {
  char sh[96];
  VLM_CHECK(ids->ndim == 2 && (ids->dtype == VLM_I64 || ids->dtype == VLM_I32),
            "coca: ids are %s, expected [B, L] I32/I64", vlm_shape_str(ids, sh, sizeof sh));
  return vlm_host_view(ids, back);
}

float vlm_coca_forward(const vlm_coca_config *c, const vlm_coca_params *p, vlm_coca_acts *s,
                       const vlm_tensor *images, const vlm_tensor *ids) {
  int64_t B = s->B, L = s->L, V = c->decoder.vocab_size;
  char sh[96];
  VLM_CHECK(ids->ndim == 2 && ids->shape[0] == B && ids->shape[1] == L &&
                (ids->dtype == VLM_I64 || ids->dtype == VLM_I32),
            "coca: ids are %s, expected [%lld, %lld] I32/I64", vlm_shape_str(ids, sh, sizeof sh), (long long)B,
            (long long)L);
  vlm_coca_vit_forward(&c->vision, &p->visual, &p->pool, &s->visual, &s->pool, images);
  vlm_text_forward(&c->text, &p->text, &s->text, ids);
  vlm_text_tokens(&c->text, &s->text, &s->dec.xs[0]);
  vlm_decoder_forward(&c->decoder, &p->decoder, &s->dec, &s->pool.tokens);
  vlm_clip_loss_forward(&s->loss, &s->pool.features, &s->text.features, &p->logit_scale);
  /* Teacher forcing: the logits at position l predict ids[l+1]; the last position has
   * no target and is ignored like the pad id (the mean is over the remaining ones).
   * Built on the host, one upload when the activations are on a GPU. */
  void *back;
  vlm_tensor h = host_ids(ids, &back);
  size_t tb = (size_t)(B * L) * sizeof(int64_t);
  int64_t *t = vlm_host_stage(&s->targets, tb);
  for (int64_t b = 0; b < B; b++)
    for (int64_t l = 0; l < L; l++) t[b * L + l] = l + 1 < L ? id_at(&h, b * L + l + 1) : c->text.pad_id;
  vlm_host_commit(&s->targets, t, tb);
  free(back);
  int64_t sh2[2] = {B * L, V};
  vlm_tensor logits = vlm_reshape(&s->dec.logits, 2, sh2);
  vlm_cross_entropy_forward(&s->cap_loss, &s->cap_probs, &logits, &s->targets, c->text.pad_id);
  s->clip_loss = vlm_get_f32(&s->loss.loss, 0);
  s->caption_loss = vlm_get_f32(&s->cap_loss, 0);
  s->total = c->clip_loss_weight * s->clip_loss + c->caption_loss_weight * s->caption_loss;
  return s->total;
}

int64_t vlm_coca_caption_targets(const vlm_coca_config *c, const vlm_tensor *ids) {
  void *back;
  vlm_tensor h = host_ids(ids, &back);
  int64_t B = h.shape[0], L = h.shape[1], n = 0;
  for (int64_t b = 0; b < B; b++)
    for (int64_t l = 1; l < L; l++) n += id_at(&h, b * L + l) != c->text.pad_id;
  free(back);
  return n;
}

void vlm_coca_backward(const vlm_coca_config *c, const vlm_coca_params *p, vlm_coca_params *g, vlm_coca_acts *s,
                       const vlm_tensor *ids) {
  VLM_CHECK(s->with_backward, "coca: activations were laid out for inference only");
  vlm_zero(&s->d_img_feat);
  vlm_zero(&s->d_txt_feat);
  vlm_clip_loss_backward(&s->loss, c->clip_loss_weight, &s->pool.features, &s->text.features, &s->d_img_feat,
                         &s->d_txt_feat, &g->logit_scale);
  vlm_coca_backward_towers(c, p, g, s, ids, c->caption_loss_weight, 0, 0);
}

void vlm_coca_backward_towers(const vlm_coca_config *c, const vlm_coca_params *p, vlm_coca_params *g,
                              vlm_coca_acts *s, const vlm_tensor *ids, float w_cap, int no_image, int no_text) {
  VLM_CHECK(s->with_backward, "coca: activations were laid out for inference only");
  int64_t B = s->B, L = s->L, V = c->decoder.vocab_size;
  vlm_fill(&s->d_cap, w_cap);
  vlm_zero(&s->d_logits);
  int64_t sh2[2] = {B * L, V};
  vlm_tensor dlogits = vlm_reshape(&s->d_logits, 2, sh2);
  vlm_cross_entropy_backward(&dlogits, &s->d_cap, &s->cap_probs, &s->targets, c->text.pad_id);
  vlm_zero(&s->d_text_tokens);
  vlm_zero(&s->d_img_tokens);
  vlm_decoder_backward(&c->decoder, &p->decoder, &g->decoder, &s->dec, &s->pool.tokens, &s->d_logits,
                       &s->d_text_tokens, &s->d_img_tokens);
  if (!no_text)
    vlm_text_backward_tokens(&c->text, &p->text, &g->text, &s->text, ids, &s->d_txt_feat, &s->d_text_tokens);
  if (!no_image)
    vlm_coca_vit_backward(&c->vision, &p->visual, &p->pool, &g->visual, &g->pool, &s->visual, &s->pool,
                          &s->d_img_feat, &s->d_img_tokens);
}

/* ---------------------------------------------------------------- captioning */
vlm_status vlm_coca_generate(const vlm_coca_config *c, const vlm_coca_params *p, const vlm_tensor *images,
                             const vlm_gen_options *o, int32_t *out, int *lens) {
  vlm_status st = vlm_gen_options_check(o, &c->text, &c->decoder);
  if (st != VLM_OK) return st;
  const vlm_device dev = p->arena.device;   /* the image activations and the generation buffers live there too */
  if (images->device != dev)
    return vlm_error(VLM_ERR_ARG, "captioning: the images must be on the weights' device");
  int64_t B = images->shape[0];
  vlm_vit_acts va;
  vlm_attn_pool_acts pa;
  vlm_arena a;
  memset(&a, 0, sizeof a);
  st = vlm_vit_acts_alloc(&va, &c->vision);
  if (st != VLM_OK) return st;
  vlm_arena m;
  vlm_arena_measure(&m, dev);
  vlm_vit_acts_layout(&va, &m, &c->vision, B, 0);
  vlm_attn_pool_acts_layout(&pa, &m, &c->vision, B, 0);
  st = vlm_arena_init(&a, m.used, dev);
  if (st == VLM_OK) {
    vlm_vit_acts_layout(&va, &a, &c->vision, B, 0);
    vlm_attn_pool_acts_layout(&pa, &a, &c->vision, B, 0);
    vlm_coca_vit_forward(&c->vision, &p->visual, &p->pool, &va, &pa, images);
    st = vlm_generate(&c->text, &p->text, &c->decoder, &p->decoder, &pa.tokens, o, out, lens);
  } else {
    st = vlm_error_prefix(st, "CoCa image activations (%zu bytes)", m.used);
  }
  vlm_arena_free(&a);
  vlm_vit_acts_free(&va);
  return st;
}

/* ---------------------------------------------------------------- bf16 inference weights */
static int ends_with_s(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

static int coca_matmul_weight(const char *name) {
  return ends_with_s(name, "attn.in_proj_weight") || ends_with_s(name, "attn.out_proj.weight") ||
         ends_with_s(name, "mlp.c_fc.weight") || ends_with_s(name, "mlp.c_proj.weight") ||
         ends_with_s(name, "attn.q_proj_weight") || ends_with_s(name, "attn.k_proj_weight") ||
         ends_with_s(name, "attn.v_proj_weight") || !strcmp(name, "visual.conv1.weight") ||
         !strcmp(name, "visual.proj") || !strcmp(name, "text.text_projection") ||
         !strcmp(name, "text_decoder.text_projection");
}

typedef struct {
  vlm_arena *a;
  int drop_src;
} bf16_ctx;

static void to_bf16(void *ctx, const char *name, vlm_tensor *t) {
  bf16_ctx *C = ctx;
  if (coca_matmul_weight(name)) vlm_param_to_bf16(C->a, t, C->drop_src);
}

vlm_status vlm_coca_params_bf16(vlm_coca_params *dst, vlm_coca_params *src, const vlm_coca_config *c, int drop_src) {
  vlm_status s = alloc_arrays(dst, c);
  if (s != VLM_OK) return s;
  vlm_block_params *vb = dst->visual.blocks, *tb = dst->text.blocks, *ds = dst->decoder.self;
  vlm_cross_params *dc = dst->decoder.cross;
  dst->visual = src->visual;
  dst->pool = src->pool;
  dst->text = src->text;
  dst->decoder = src->decoder;
  dst->logit_scale = src->logit_scale;
  memcpy(vb, src->visual.blocks, (size_t)c->vision.layers * sizeof *vb);
  memcpy(tb, src->text.blocks, (size_t)c->text.layers * sizeof *tb);
  memcpy(ds, src->decoder.self, (size_t)c->decoder.layers * sizeof *ds);
  memcpy(dc, src->decoder.cross, (size_t)c->decoder.layers * sizeof *dc);
  dst->visual.blocks = vb;
  dst->text.blocks = tb;
  dst->decoder.self = ds;
  dst->decoder.cross = dc;
  vlm_arena m;
  vlm_arena_measure(&m, VLM_CPU);
  bf16_ctx C = {&m, drop_src};
  vlm_coca_params_visit(dst, c, to_bf16, &C);
  s = vlm_arena_init(&dst->arena, m.used, VLM_CPU);
  if (s != VLM_OK) {
    vlm_coca_params_free(dst);
    return vlm_error_prefix(s, "CoCa BF16 weights (%zu bytes)", m.used);
  }
  C.a = &dst->arena;
  vlm_coca_params_visit(dst, c, to_bf16, &C);
  return VLM_OK;
}
