/* BF16 weights for inference: the matrices that only feed matmuls are
 * converted once, everything else is shared with the F32 parameters. The
 * converted matrices are registered for packing (vlm_matmul_pack): the CPU
 * matmul keeps a copy in oneDNN's blocked layout, freed with the arena. */
#include <string.h>

#include "model/model.h"

static int is_matmul_weight(const char *name) {
  return vlm_name_ends(name, "attn.in_proj_weight") || vlm_name_ends(name, "attn.out_proj.weight") ||
         vlm_name_ends(name, "mlp.c_fc.weight") || vlm_name_ends(name, "mlp.c_proj.weight") ||
         !strcmp(name, "visual.conv1.weight") || !strcmp(name, "visual.proj") || !strcmp(name, "text_projection");
}

int vlm_param_to_bf16(vlm_arena *a, vlm_tensor *t, int drop_src) {
  vlm_tensor h = vlm_arena_tensor(a, VLM_BF16, t->ndim, t->shape);
  if (a->measuring) return 0;
  vlm_copy(&h, t);
  if (drop_src && t->device == VLM_CPU) vlm_host_release(t->data, vlm_nbytes(t));
  *t = h;
  return 1;
}

typedef struct {
  vlm_arena *a;
  int drop_src;
} conv_ctx;

/* The projections are used as [K,N] (x @ proj); every other matrix as a Linear
 * weight [N,K]; conv1 [W,3,P,P] as the matrix [W, 3*P*P]. */
static void pack(const char *name, const vlm_tensor *t) {
  int trans_b = strcmp(name, "visual.proj") && strcmp(name, "text_projection");
  int64_t shape[2] = {t->shape[0], vlm_numel(t) / (t->shape[0] ? t->shape[0] : 1)};
  vlm_tensor m = vlm_tensor_make(t->data, t->dtype, t->device, 2, shape);
  vlm_matmul_pack(&m, trans_b);
}

static void convert_one(void *ctx, const char *name, vlm_tensor *t) {
  conv_ctx *C = ctx;
  if (is_matmul_weight(name) && vlm_param_to_bf16(C->a, t, C->drop_src)) pack(name, t);
}

vlm_status vlm_clip_params_bf16(vlm_clip_params *dst, vlm_clip_params *src, const vlm_clip_config *c, int drop_src) {
  memset(dst, 0, sizeof *dst);
  vlm_status s = vlm_vit_params_alloc(&dst->visual, &c->vision);
  if (s == VLM_OK) s = vlm_text_params_alloc(&dst->text, &c->text);
  if (s != VLM_OK) {
    vlm_clip_params_free(dst);
    return s;
  }
  vlm_block_params *vb = dst->visual.blocks, *tb = dst->text.blocks;
  dst->visual = src->visual;
  dst->text = src->text;
  dst->logit_scale = src->logit_scale;
  dst->logit_bias = src->logit_bias;
  memcpy(vb, src->visual.blocks, (size_t)c->vision.layers * sizeof *vb);
  memcpy(tb, src->text.blocks, (size_t)c->text.layers * sizeof *tb);
  dst->visual.blocks = vb;
  dst->text.blocks = tb;
  vlm_arena m;
  vlm_arena_measure(&m, src->arena.device);  /* beside src: the CPU or a GPU */
  conv_ctx C = {&m, drop_src};
  vlm_clip_params_visit(dst, c, convert_one, &C);
  s = vlm_arena_init(&dst->arena, m.used, src->arena.device);
  if (s != VLM_OK) {
    vlm_clip_params_free(dst);
    return vlm_error_prefix(s, "BF16 weights (%zu bytes)", m.used);
  }
  C.a = &dst->arena;
  vlm_clip_params_visit(dst, c, convert_one, &C);
  return VLM_OK;
}
