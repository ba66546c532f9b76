/* CLIP parameters (and gradients) in one arena, with open_clip's names. */
#include <string.h>

#include "model/model.h"

static void layout(vlm_clip_params *p, vlm_arena *a, const vlm_clip_config *c) {
  vlm_vit_params_layout(&p->visual, a, &c->vision);
  vlm_text_params_layout(&p->text, a, &c->text);
  p->logit_scale = vlm_arena_tensor(a, VLM_F32, 0, NULL);
  /* last in the arena: a model without it keeps the layout it always had */
  if (c->has_logit_bias) p->logit_bias = vlm_arena_tensor(a, VLM_F32, 0, NULL);
}

vlm_status vlm_clip_params_init(vlm_clip_params *p, const vlm_clip_config *c) {
  return vlm_clip_params_init_on(p, c, VLM_CPU);
}

vlm_status vlm_clip_params_init_on(vlm_clip_params *p, const vlm_clip_config *c, vlm_device dev) {
  memset(p, 0, sizeof *p);
  vlm_status s = vlm_vit_params_alloc(&p->visual, &c->vision);
  if (s == VLM_OK) s = vlm_text_params_alloc(&p->text, &c->text);
  if (s != VLM_OK) {
    vlm_clip_params_free(p);
    return s;
  }
  vlm_arena m;
  vlm_arena_measure(&m, dev);
  layout(p, &m, c);
  s = vlm_arena_init(&p->arena, m.used, dev);
  if (s != VLM_OK) {
    vlm_clip_params_free(p);
    return vlm_error_prefix(s, "CLIP parameters (%zu bytes)", m.used);
  }
  layout(p, &p->arena, c);
  return VLM_OK;
}

void vlm_clip_params_free(vlm_clip_params *p) {
  vlm_vit_params_free(&p->visual);
  vlm_text_params_free(&p->text);
  vlm_arena_free(&p->arena);
  memset(p, 0, sizeof *p);
}

void vlm_clip_params_visit(vlm_clip_params *p, const vlm_clip_config *c, vlm_param_visit_fn fn, void *ctx) {
  vlm_text_params_visit(&p->text, &c->text, "", fn, ctx);
  fn(ctx, "logit_scale", &p->logit_scale);
  if (c->has_logit_bias) fn(ctx, "logit_bias", &p->logit_bias);
  vlm_vit_params_visit(&p->visual, &c->vision, "visual.", fn, ctx);
}

typedef struct { int64_t visual, text, other; } counts;

static void count_one(void *ctx, const char *name, vlm_tensor *t) {
  counts *k = ctx;
  int64_t n = vlm_numel(t);
  if (!strncmp(name, "visual.", 7)) k->visual += n;
  else if (!strcmp(name, "logit_scale") || !strcmp(name, "logit_bias")) k->other += n;
  else k->text += n;
}

int64_t vlm_clip_params_count(vlm_clip_params *p, const vlm_clip_config *c, int64_t *visual, int64_t *text) {
  counts k = {0, 0, 0};
  vlm_clip_params_visit(p, c, count_one, &k);
  if (visual) *visual = k.visual;
  if (text) *text = k.text;
  return k.visual + k.text + k.other;
}

void vlm_clip_params_zero(vlm_clip_params *p) {
  if (!p->arena.base) return;
  int64_t n = (int64_t)p->arena.used;
  vlm_tensor all = vlm_tensor_make(p->arena.base, VLM_U8, p->arena.device, 1, &n);
  vlm_zero(&all);
}

int64_t vlm_clip_config_num_params(const vlm_clip_config *c, int64_t *visual, int64_t *text) {
  vlm_clip_params p;
  memset(&p, 0, sizeof p);
  if (vlm_vit_params_alloc(&p.visual, &c->vision) != VLM_OK || vlm_text_params_alloc(&p.text, &c->text) != VLM_OK) {
    vlm_clip_params_free(&p);
    return -1;
  }
  vlm_arena m;
  vlm_arena_measure(&m, VLM_CPU);
  layout(&p, &m, c);
  int64_t n = vlm_clip_params_count(&p, c, visual, text);
  vlm_clip_params_free(&p);
  return n;
}
