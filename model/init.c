/* open_clip's initialisation of a CLIP model trained from scratch (same
 * distribution per tensor; the random stream is vlm's own):
 *   text (TextTransformer.init_parameters): token_embedding N(0, 0.02),
 *     positional_embedding N(0, 0.01), per block in_proj_weight N(0, W^-1/2),
 *     out_proj.weight and c_proj.weight N(0, W^-1/2 (2 layers)^-1/2),
 *     c_fc.weight N(0, (2W)^-1/2), text_projection N(0, W^-1/2);
 *     biases keep PyTorch's defaults (in_proj/out_proj 0, c_fc/c_proj U(+-fan_in^-1/2));
 *   vision (VisionTransformer leaves PyTorch's defaults): class_embedding,
 *     positional_embedding, proj N(0, W^-1/2); conv1 U(+-(3P^2)^-1/2);
 *     in_proj_weight xavier U(+-sqrt(6 / 4W)), biases 0; out_proj.weight
 *     U(+-W^-1/2); c_fc / c_proj weight and bias U(+-fan_in^-1/2);
 *   LayerNorms weight 1, bias 0; logit_scale ln(1/0.07); logit_bias (a SigLIP model)
 *   the config's init_logit_bias. */
#include <math.h>
#include <string.h>

#include "model/model.h"

typedef struct {
  const vlm_clip_config *c;
  uint64_t seed, index;
} init_ctx;

int vlm_name_ends(const char *name, const char *suffix) {
  size_t n = strlen(name), k = strlen(suffix);
  return n >= k && !strcmp(name + n - k, suffix);
}

void vlm_fill_normal(vlm_rng *r, vlm_tensor *t, double std) {
  vlm_rng_fill_normal(r, vlm_f32(t), (size_t)vlm_numel(t), 0.0f, (float)std);
}

void vlm_fill_uniform(vlm_rng *r, vlm_tensor *t, double bound) {
  vlm_rng_fill_uniform(r, vlm_f32(t), (size_t)vlm_numel(t), (float)-bound, (float)bound);
}

static void init_one(void *ctx, const char *name, vlm_tensor *t) {
  init_ctx *I = ctx;
  vlm_rng r;
  vlm_rng_seed_stream(&r, I->seed, I->index++);   /* one stream per tensor, in visit order */
  int visual = !strncmp(name, "visual.", 7);
  double W = (double)(visual ? I->c->vision.width : I->c->text.width);
  double layers = (double)(visual ? I->c->vision.layers : I->c->text.layers);
  int64_t fan_in = t->ndim == 2 ? t->shape[1] : 0;
  if (!strcmp(name, "logit_scale")) {
    vlm_fill(t, logf(1.0f / 0.07f));
  } else if (!strcmp(name, "logit_bias")) {
    vlm_fill(t, I->c->init_logit_bias);
  } else if (strstr(name, "ln_") || strstr(name, "ln_final")) {
    vlm_fill(t, vlm_name_ends(name, ".weight") ? 1.0f : 0.0f);
  } else if (!strcmp(name, "token_embedding.weight")) {
    vlm_fill_normal(&r, t, 0.02);
  } else if (!strcmp(name, "positional_embedding")) {
    vlm_fill_normal(&r, t, 0.01);
  } else if (!strcmp(name, "text_projection") || !strcmp(name, "visual.proj") ||
             !strcmp(name, "visual.class_embedding") || !strcmp(name, "visual.positional_embedding")) {
    vlm_fill_normal(&r, t, pow(W, -0.5));
  } else if (!strcmp(name, "visual.conv1.weight")) {
    vlm_fill_uniform(&r, t, 1.0 / sqrt((double)(t->shape[1] * t->shape[2] * t->shape[3])));
  } else if (vlm_name_ends(name, "attn.in_proj_bias") || vlm_name_ends(name, "attn.out_proj.bias")) {
    vlm_fill(t, 0.0f);
  } else if (vlm_name_ends(name, "mlp.c_fc.bias") || vlm_name_ends(name, "mlp.c_proj.bias")) {
    /* the fan-in of the matching weight: c_fc W, c_proj mlp_width */
    int64_t fi = vlm_name_ends(name, "c_fc.bias") ? (int64_t)W
                                                  : (visual ? I->c->vision.mlp_width : I->c->text.mlp_width);
    vlm_fill_uniform(&r, t, 1.0 / sqrt((double)fi));
  } else if (vlm_name_ends(name, "attn.in_proj_weight")) {
    if (visual) vlm_fill_uniform(&r, t, sqrt(6.0 / (double)(t->shape[0] + t->shape[1])));
    else vlm_fill_normal(&r, t, pow(W, -0.5));
  } else if (vlm_name_ends(name, "attn.out_proj.weight") || vlm_name_ends(name, "mlp.c_proj.weight")) {
    if (visual) vlm_fill_uniform(&r, t, 1.0 / sqrt((double)fan_in));
    else vlm_fill_normal(&r, t, pow(W, -0.5) * pow(2.0 * layers, -0.5));
  } else if (vlm_name_ends(name, "mlp.c_fc.weight")) {
    if (visual) vlm_fill_uniform(&r, t, 1.0 / sqrt((double)fan_in));
    else vlm_fill_normal(&r, t, pow(2.0 * W, -0.5));
  } else {
    VLM_CHECK(0, "clip init: no rule for %s", name);
  }
}

void vlm_clip_params_init_openclip(vlm_clip_params *p, const vlm_clip_config *c, uint64_t seed) {
  VLM_CHECK(p->arena.device == VLM_CPU, "clip init: parameters must be on the CPU");
  init_ctx I = {c, seed, 0};
  vlm_clip_params_visit(p, c, init_one, &I);
}
