/* Saving CLIP parameters (or gradients: same layout) in open_clip or Hugging Face names. */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

typedef struct {
  vlm_st_writer *w;
  vlm_ckpt_format fmt;
  float **owned;     /* transposed copies, freed after the save */
  int n_owned;
  vlm_status st;
} save_ctx;

static void add_one(void *ctx, const char *name, vlm_tensor *t) {
  save_ctx *S = ctx;
  if (S->st != VLM_OK) return;
  if (S->fmt == VLM_CKPT_OPENCLIP) {
    S->st = vlm_st_writer_add_tensor(S->w, name, t);
    return;
  }
  char parts[3][256];
  int n_parts, transpose;
  if (!vlm_clip_hf_name(name, parts, &n_parts, &transpose)) {
    S->st = vlm_error(VLM_ERR_INTERNAL, "%s: no Hugging Face name", name);
    return;
  }
  if (transpose) {
    int64_t R = t->shape[0], C = t->shape[1], shape[2] = {C, R};
    float *tr = malloc((size_t)(R * C) * sizeof(float));
    float **o = realloc(S->owned, (size_t)(S->n_owned + 1) * sizeof *o);
    if (!tr || !o) {
      free(tr);
      if (o) S->owned = o;
      S->st = vlm_error(VLM_ERR_OOM, "out of memory");
      return;
    }
    S->owned = o;
    S->owned[S->n_owned++] = tr;
    const float *src = vlm_f32(t);
    for (int64_t r = 0; r < R; r++)
      for (int64_t c = 0; c < C; c++) tr[c * R + r] = src[r * C + c];
    S->st = vlm_st_writer_add(S->w, parts[0], VLM_F32, 2, shape, tr);
    return;
  }
  int64_t shape[VLM_MAX_DIMS];
  for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
  if (t->ndim) shape[0] /= n_parts;
  int64_t per = vlm_numel(t) / n_parts;
  for (int i = 0; i < n_parts && S->st == VLM_OK; i++)
    S->st = vlm_st_writer_add(S->w, parts[i], VLM_F32, t->ndim, shape, vlm_f32(t) + i * per);
}

typedef struct { vlm_clip_params *p; const vlm_clip_config *c; } clip_model;

static void clip_visit_all(void *model, vlm_param_visit_fn fn, void *ctx) {
  clip_model *m = model;
  vlm_clip_params_visit(m->p, m->c, fn, ctx);
}

/* staged NULL: saved (committed); else written into *staged for the caller to commit. torch: a
 * PyTorch checkpoint (torch.save of the state dict) instead of safetensors. */
static vlm_status save_visit(vlm_visit_all_fn visit, void *model, const char *path, vlm_ckpt_format fmt, int torch,
                             vlm_atomic_file *staged);

vlm_status vlm_clip_stage_weights(vlm_clip_params *p, const vlm_clip_config *c, const char *path,
                                  vlm_ckpt_format fmt, int torch, vlm_atomic_file *staged) {
  /* open_clip names: the writer reads device tensors where they are; the HF layout
   * transposes and splits on the host */
  VLM_CHECK(fmt == VLM_CKPT_OPENCLIP || p->arena.device == VLM_CPU,
            "clip save: the Hugging Face layout needs the parameters on the CPU");
  if (fmt == VLM_CKPT_HF) {
    vlm_status s = vlm_clip_config_hf_ok(c, path);
    if (s != VLM_OK) return s;
  }
  clip_model m = {p, c};
  return save_visit(clip_visit_all, &m, path, fmt, torch, staged);
}

vlm_status vlm_clip_stage_safetensors(vlm_clip_params *p, const vlm_clip_config *c, const char *path,
                                      vlm_ckpt_format fmt, vlm_atomic_file *staged) {
  return vlm_clip_stage_weights(p, c, path, fmt, 0, staged);
}

vlm_status vlm_clip_save_safetensors(vlm_clip_params *p, const vlm_clip_config *c, const char *path,
                                     vlm_ckpt_format fmt) {
  return vlm_clip_stage_safetensors(p, c, path, fmt, NULL);
}

vlm_status vlm_save_safetensors_visit(vlm_visit_all_fn visit, void *model, const char *path) {
  return save_visit(visit, model, path, VLM_CKPT_OPENCLIP, 0, NULL);
}

vlm_status vlm_stage_safetensors_visit(vlm_visit_all_fn visit, void *model, const char *path,
                                       vlm_atomic_file *staged) {
  return save_visit(visit, model, path, VLM_CKPT_OPENCLIP, 0, staged);
}

vlm_status vlm_stage_weights_visit(vlm_visit_all_fn visit, void *model, const char *path, int torch,
                                   vlm_atomic_file *staged) {
  return save_visit(visit, model, path, VLM_CKPT_OPENCLIP, torch, staged);
}

static vlm_status save_visit(vlm_visit_all_fn visit, void *model, const char *path, vlm_ckpt_format fmt, int torch,
                             vlm_atomic_file *staged) {
  save_ctx S = {vlm_st_writer_new(), fmt, NULL, 0, VLM_OK};
  if (staged) memset(staged, 0, sizeof *staged);
  if (!S.w) return vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  S.st = vlm_st_writer_meta(S.w, "format", "pt");
  if (S.st == VLM_OK) visit(model, add_one, &S);
  if (S.st == VLM_OK) {
    vlm_atomic_file af;
    S.st = torch ? vlm_st_writer_stage_torch(S.w, path, staged ? staged : &af)
                 : vlm_st_writer_stage(S.w, path, staged ? staged : &af);
    if (S.st == VLM_OK && !staged) S.st = vlm_atomic_commit(&af);
  }
  for (int i = 0; i < S.n_owned; i++) free(S.owned[i]);
  free(S.owned);
  vlm_st_writer_free(S.w);
  return S.st;
}
