/* The CLIP training step (open_clip's train_one_epoch for one optimizer step):
 * schedule, forward, loss, backward, clip, AdamW, logit_scale clamp; open_clip's
 * contrastive gradient accumulation; LiT tower locking; bf16 matmuls. */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "model/train_ops.h"

int vlm_lr_scheduler_parse(const char *s, vlm_lr_scheduler *out) {
  if (!strcmp(s, "cosine")) *out = VLM_SCHED_COSINE;
  else if (!strcmp(s, "const")) *out = VLM_SCHED_CONST;
  else if (!strcmp(s, "const-cooldown")) *out = VLM_SCHED_CONST_COOLDOWN;
  else return 0;
  return 1;
}

const char *vlm_lr_scheduler_name(vlm_lr_scheduler s) {
  return s == VLM_SCHED_CONST ? "const" : s == VLM_SCHED_CONST_COOLDOWN ? "const-cooldown" : "cosine";
}

void vlm_train_config_default(vlm_train_config *t) {
  memset(t, 0, sizeof *t);
  t->lr = 5e-4f;
  t->beta1 = 0.9f;
  t->beta2 = 0.98f;
  t->eps = 1e-6f;
  t->wd = 0.2f;
  t->warmup = 10000;
  t->total_steps = 1;
  t->scheduler = VLM_SCHED_COSINE;
  t->cooldown_power = 1.0f;
  t->cooldown_end_lr = 0.0f;
  t->grad_clip_norm = 0;
  t->accum_freq = 1;
  t->batch_size = 8;
  t->context_length = 0;
  t->precision = VLM_PREC_F32;
}

float vlm_trainer_lr(const vlm_train_config *t, int64_t s) {
  switch (t->scheduler) {
    case VLM_SCHED_CONST: return vlm_lr_const(t->lr, t->warmup, s);
    case VLM_SCHED_CONST_COOLDOWN:
      return vlm_lr_const_cooldown(t->lr, t->warmup, t->total_steps, s, t->cooldown_steps, t->cooldown_power,
                                   t->cooldown_end_lr);
    default: return vlm_lr_cosine(t->lr, t->warmup, t->total_steps, s);
  }
}

int vlm_param_decays(const char *name, const vlm_tensor *t) {
  /* open_clip: exclude = ndim < 2 or "bn"/"ln"/"bias"/"logit_scale" in the name, plus
   * the model's no_weight_decay() set (the positional embeddings). */
  return t->ndim >= 2 && !strstr(name, "positional_embedding");
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static int is_image_param(const char *name) { return !strncmp(name, "visual.", 7); }
/* CLIP: everything but the image tower, logit_scale and logit_bias; CoCa: the text tower
 * ("text."), not the multimodal decoder ("text_decoder."), as open_clip's
 * lock_text_tower locks CoCa's self.text. */
static int is_text_param(const vlm_trainer *tr, const char *name) {
  if (tr->is_coca) return !strncmp(name, "text.", 5);
  return !is_image_param(name) && strcmp(name, "logit_scale") && strcmp(name, "logit_bias");
}

typedef struct { vlm_trainer *tr; int i, which; } slot_ctx;

static void count_slot(void *ctx, const char *name, vlm_tensor *t) { (void)name; (void)t; ((slot_ctx *)ctx)->i++; }
static void fill_slot(void *ctx, const char *name, vlm_tensor *t) {
  slot_ctx *s = ctx;
  vlm_param_slot *sl = &s->tr->slots[s->i++];
  switch (s->which) {
    case VLM_SET_PARAMS:
      sl->name = dup_str(name);
      sl->param = t;
      sl->decay = vlm_param_decays(name, t);
      break;
    case VLM_SET_GRADS: sl->grad = t; break;
    case VLM_SET_EXP_AVG: sl->m = t; break;
    default: sl->v = t; break;
  }
}

/* Rows [j*B, (j+1)*B) of a [K*B, ...] tensor. */
static vlm_tensor rows(const vlm_tensor *t, int64_t j, int64_t B) { return vlm_narrow(t, 0, j * B, B); }

static void copy_rows(vlm_tensor *all, int64_t j, int64_t B, const vlm_tensor *src) {
  vlm_tensor r = rows(all, j, B);
  vlm_copy(&r, src);
}

/* Ranks: every rank's blocks of the image and text feature rows. */
static void gather_features(vlm_trainer *tr) {
  VLM_CHECK(vlm_comm_allgather_rows(&tr->img_all) == VLM_OK && vlm_comm_allgather_rows(&tr->txt_all) == VLM_OK,
            "trainer: %s", vlm_last_error());
}

/* ================================================================ CLIP */
static void clip_visit(vlm_trainer *tr, int set, vlm_param_visit_fn fn, void *ctx) {
  vlm_clip_params *sets[4] = {&tr->p, &tr->g, &tr->m, &tr->v};
  vlm_clip_params_visit(sets[set], &tr->model, fn, ctx);
}

/* open_clip's contrastive accumulation and LiT locking (see model.h). Across ranks: this
 * rank's K micro-batches fill blocks rank*K .. rank*K+K-1 of the world x K*B rows, the
 * others come from the other ranks (allgather: once after pass 1 when K > 1, since pass 2's
 * fresh rows hold the same values; before the loss when K = 1), this rank's local loss at
 * dloss = 1 / world gives its share of the global loss's gradient for every row, and the
 * shares summed over ranks (allreduce) are the gradient of its own rows. */
static float clip_forward_backward(vlm_trainer *tr, const vlm_tensor *images, const vlm_tensor *ids) {
  const vlm_clip_config *c = &tr->model;
  const int64_t K = tr->cfg.accum_freq, B = tr->cfg.batch_size, j0 = (int64_t)tr->rank * K;
  const int dist = tr->world > 1;
  const int lock_i = tr->cfg.lock_image, lock_t = tr->cfg.lock_text;
  vlm_vit_acts *va = &tr->acts.visual;
  vlm_text_acts *ta = &tr->acts.text;
  /* 1. Features of every micro-batch without gradients (only when they are
   *    needed: accumulation, or a locked tower whose features are then final). */
  if (K > 1 || lock_i || lock_t) {
    for (int64_t j = 0; j < K; j++) {
      vlm_tensor im = rows(images, j, B), tx = rows(ids, j, B);
      if (K > 1 || lock_i) {
        vlm_vit_forward(&c->vision, &tr->p.visual, va, &im);
        copy_rows(&tr->img_all, j0 + j, B, &va->features);
      }
      if (K > 1 || lock_t) {
        vlm_text_forward(&c->text, &tr->p.text, ta, &tx);
        copy_rows(&tr->txt_all, j0 + j, B, &ta->features);
      }
    }
    if (dist && K > 1) gather_features(tr);
  }
  /* 2. Per micro-batch: fresh forward with gradients of the trainable towers, the
   *    loss over all K*B features, backward into this micro-batch's rows. */
  float loss = 0;
  for (int64_t j = 0; j < K; j++) {
    vlm_tensor im = rows(images, j, B), tx = rows(ids, j, B);
    if (!lock_i) {
      vlm_vit_forward(&c->vision, &tr->p.visual, va, &im);
      copy_rows(&tr->img_all, j0 + j, B, &va->features);
    }
    if (!lock_t) {
      vlm_text_forward(&c->text, &tr->p.text, ta, &tx);
      copy_rows(&tr->txt_all, j0 + j, B, &ta->features);
    }
    if (dist && K == 1) gather_features(tr);
    vlm_zero(&tr->d_img_all);
    vlm_zero(&tr->d_txt_all);
    if (c->has_logit_bias) {   /* SigLIP: this rank's K*B images against every text */
      vlm_siglip_loss_forward(&tr->sloss, &tr->img_all, &tr->txt_all, &tr->p.logit_scale, &tr->p.logit_bias);
      loss = vlm_get_f32(&tr->sloss.loss, 0);
      vlm_siglip_loss_backward(&tr->sloss, 1.0f / (float)tr->world, &tr->img_all, &tr->txt_all,
                               lock_i ? NULL : &tr->d_img_all, lock_t ? NULL : &tr->d_txt_all, &tr->g.logit_scale,
                               &tr->g.logit_bias);
    } else {
      vlm_clip_loss_forward(&tr->loss, &tr->img_all, &tr->txt_all, &tr->p.logit_scale);
      loss = vlm_get_f32(&tr->loss.loss, 0);
      vlm_clip_loss_backward(&tr->loss, 1.0f / (float)tr->world, &tr->img_all, &tr->txt_all,
                             lock_i ? NULL : &tr->d_img_all, lock_t ? NULL : &tr->d_txt_all, &tr->g.logit_scale);
    }
    if (dist) {
      VLM_CHECK((lock_i || vlm_comm_allreduce_sum(&tr->d_img_all) == VLM_OK) &&
                    (lock_t || vlm_comm_allreduce_sum(&tr->d_txt_all) == VLM_OK),
                "trainer: %s", vlm_last_error());
    }
    if (!lock_t) {
      vlm_tensor d = rows(&tr->d_txt_all, j0 + j, B);
      vlm_text_backward(&c->text, &tr->p.text, &tr->g.text, ta, &tx, &d);
    }
    if (!lock_i) {
      vlm_tensor d = rows(&tr->d_img_all, j0 + j, B);
      vlm_vit_backward(&c->vision, &tr->p.visual, &tr->g.visual, va, &d);
    }
  }
  tr->last_clip_loss = loss;
  return loss;
}

static vlm_status clip_save_dir(vlm_trainer *tr, const char *dir) {
  return vlm_clip_save_dir(&tr->p, &tr->model, dir, VLM_CKPT_OPENCLIP);
}
static vlm_status clip_load_weights(vlm_trainer *tr, const char *path) {
  if (tr->p.arena.device == VLM_CPU) return vlm_clip_load_safetensors(&tr->p, &tr->model, path, VLM_CKPT_OPENCLIP);
  vlm_status s = vlm_clip_load_safetensors(&tr->host, &tr->model, path, VLM_CKPT_OPENCLIP);
  if (s == VLM_OK) vlm_clip_params_copy(&tr->p, &tr->host);   /* the host copy, then one upload */
  return s;
}
static void clip_free(vlm_trainer *tr) {
  vlm_clip_params_free(&tr->host);
  vlm_clip_batch_free(&tr->batch);
  vlm_clip_params_free(&tr->p);
  vlm_clip_params_free(&tr->g);
  vlm_clip_params_free(&tr->m);
  vlm_clip_params_free(&tr->v);
  vlm_clip_acts_free(&tr->acts);
  vlm_arena_free(&tr->arena);
}

static const vlm_train_ops k_clip_ops = {"CLIP", clip_visit, clip_forward_backward, clip_save_dir, clip_load_weights,
                                         clip_free};

/* ================================================================ CoCa */
static void coca_visit(vlm_trainer *tr, int set, vlm_param_visit_fn fn, void *ctx) {
  vlm_coca_params *sets[4] = {&tr->coca.p, &tr->coca.g, &tr->coca.m, &tr->coca.v};
  vlm_coca_params_visit(sets[set], &tr->coca.model, fn, ctx);
}

/* open_clip's CoCaLoss = clip_w * ClipLoss + caption_w * caption CE, with its
 * accumulation and LiT locking. Accumulating K micro-batches (open_clip's
 * train_one_epoch with accum_freq: every micro-batch's outputs without
 * gradients, then per micro-batch a fresh forward and the loss over all K of
 * them with the others' outputs held fixed):
 * - contrastive: over the K*B cached features, this micro-batch's rows fresh,
 *   backward into them (as CLIP; logit_scale gets K such gradients);
 * - caption: the mean over the targets of all K micro-batches, so micro-batch
 *   j's tokens get weight caption_w / n_all, i.e. its own mean's gradient times
 *   n_j / n_all. The others' cached logits would get no gradient, so only the
 *   target counts are needed up front (from the ids), and pass 1 runs the two
 *   towers alone, not the decoder.
 * The tower gradients then equal one K*B batch's. A locked tower gets no
 * gradients (and its parameters are not in the optimizer's set). */
static float coca_forward_backward(vlm_trainer *tr, const vlm_tensor *images, const vlm_tensor *ids) {
  const vlm_coca_config *c = &tr->coca.model;
  const vlm_coca_params *p = &tr->coca.p;
  vlm_coca_params *g = &tr->coca.g;
  vlm_coca_acts *s = &tr->coca.acts;
  const int64_t K = tr->cfg.accum_freq, B = tr->cfg.batch_size;
  const int lock_i = tr->cfg.lock_image, lock_t = tr->cfg.lock_text;
  if (K == 1 && tr->world > 1) {
    /* Across ranks: the contrastive part as CLIP's (this rank's block of the gathered
     * features, its local loss at dloss clip_w / world, the feature gradients summed); the
     * caption CE is the mean over every rank's targets, so this rank's own mean gets the
     * weight of its share of them. The loss returned is the global one on every rank. */
    vlm_coca_forward(c, p, s, images, ids);
    copy_rows(&tr->img_all, tr->rank, B, &s->pool.features);
    copy_rows(&tr->txt_all, tr->rank, B, &s->text.features);
    gather_features(tr);
    vlm_clip_loss_forward(&tr->loss, &tr->img_all, &tr->txt_all, &p->logit_scale);
    vlm_zero(&tr->d_img_all);
    vlm_zero(&tr->d_txt_all);
    vlm_clip_loss_backward(&tr->loss, c->clip_loss_weight / (float)tr->world, &tr->img_all, &tr->txt_all,
                           lock_i ? NULL : &tr->d_img_all, lock_t ? NULL : &tr->d_txt_all, &g->logit_scale);
    VLM_CHECK((lock_i || vlm_comm_allreduce_sum(&tr->d_img_all) == VLM_OK) &&
                  (lock_t || vlm_comm_allreduce_sum(&tr->d_txt_all) == VLM_OK),
              "trainer: %s", vlm_last_error());
    vlm_tensor di = rows(&tr->d_img_all, tr->rank, B), dt = rows(&tr->d_txt_all, tr->rank, B);
    vlm_copy(&s->d_img_feat, &di);
    vlm_copy(&s->d_txt_feat, &dt);
    const int64_t n = vlm_coca_caption_targets(c, ids);
    /* [the local clip loss / world, the caption CE summed over the targets, the target count] */
    float sums[3] = {vlm_get_f32(&tr->loss.loss, 0) / (float)tr->world, s->caption_loss * (float)n, (float)n};
    VLM_CHECK(vlm_comm_allreduce_sum_buf(sums, 3) == VLM_OK, "trainer: %s", vlm_last_error());
    const float w_cap = sums[2] > 0 ? c->caption_loss_weight * (float)n / sums[2] : 0.0f;
    vlm_coca_backward_towers(c, p, g, s, ids, w_cap, lock_i, lock_t);
    tr->last_clip_loss = sums[0];
    tr->last_caption_loss = sums[2] > 0 ? sums[1] / sums[2] : 0.0f;
    return c->clip_loss_weight * tr->last_clip_loss + c->caption_loss_weight * tr->last_caption_loss;
  }
  if (K == 1) {
    float loss = vlm_coca_forward(c, p, s, images, ids);
    vlm_zero(&s->d_img_feat);
    vlm_zero(&s->d_txt_feat);
    vlm_clip_loss_backward(&s->loss, c->clip_loss_weight, &s->pool.features, &s->text.features,
                           lock_i ? NULL : &s->d_img_feat, lock_t ? NULL : &s->d_txt_feat, &g->logit_scale);
    vlm_coca_backward_towers(c, p, g, s, ids, c->caption_loss_weight, lock_i, lock_t);
    tr->last_clip_loss = s->clip_loss;
    tr->last_caption_loss = s->caption_loss;
    return loss;
  }
  /* 1. both towers' features of every micro-batch, and the caption target count (every
   *    rank's: the caption CE is the mean over all of them) */
  const int64_t j0 = (int64_t)tr->rank * K;
  const int dist = tr->world > 1;
  float n_all_f = (float)vlm_coca_caption_targets(c, ids);
  VLM_CHECK(vlm_comm_allreduce_sum_buf(&n_all_f, 1) == VLM_OK, "trainer: %s", vlm_last_error());
  const int64_t n_all = (int64_t)n_all_f;
  for (int64_t j = 0; j < K; j++) {
    vlm_tensor im = rows(images, j, B), tx = rows(ids, j, B);
    vlm_coca_vit_forward(&c->vision, &p->visual, &p->pool, &s->visual, &s->pool, &im);
    copy_rows(&tr->img_all, j0 + j, B, &s->pool.features);
    vlm_text_forward(&c->text, &p->text, &s->text, &tx);
    copy_rows(&tr->txt_all, j0 + j, B, &s->text.features);
  }
  if (dist) gather_features(tr);   /* pass 2's fresh rows hold the same values */
  /* 2. per micro-batch: the whole forward, the losses over all K, backward */
  float clip = 0;
  double cap_sum = 0;   /* the caption CE summed over the targets of the micro-batches done */
  for (int64_t j = 0; j < K; j++) {
    vlm_tensor im = rows(images, j, B), tx = rows(ids, j, B);
    vlm_coca_forward(c, p, s, &im, &tx);
    copy_rows(&tr->img_all, j0 + j, B, &s->pool.features);
    copy_rows(&tr->txt_all, j0 + j, B, &s->text.features);
    vlm_clip_loss_forward(&tr->loss, &tr->img_all, &tr->txt_all, &p->logit_scale);
    clip = vlm_get_f32(&tr->loss.loss, 0);
    vlm_zero(&tr->d_img_all);
    vlm_zero(&tr->d_txt_all);
    vlm_clip_loss_backward(&tr->loss, c->clip_loss_weight / (float)tr->world, &tr->img_all, &tr->txt_all,
                           lock_i ? NULL : &tr->d_img_all, lock_t ? NULL : &tr->d_txt_all, &g->logit_scale);
    if (dist) {
      VLM_CHECK((lock_i || vlm_comm_allreduce_sum(&tr->d_img_all) == VLM_OK) &&
                    (lock_t || vlm_comm_allreduce_sum(&tr->d_txt_all) == VLM_OK),
                "trainer: %s", vlm_last_error());
    }
    vlm_tensor di = rows(&tr->d_img_all, j0 + j, B), dt = rows(&tr->d_txt_all, j0 + j, B);
    vlm_copy(&s->d_img_feat, &di);
    vlm_copy(&s->d_txt_feat, &dt);
    const int64_t n_j = vlm_coca_caption_targets(c, &tx);
    if (n_j > 0) cap_sum += (double)s->caption_loss * (double)n_j;
    float w_cap = n_all > 0 ? c->caption_loss_weight * (float)((double)n_j / (double)n_all) : 0.0f;
    vlm_coca_backward_towers(c, p, g, s, &tx, w_cap, lock_i, lock_t);
  }
  /* every rank's: the mean of the local contrastive losses, the caption CE over all targets */
  float sums[2] = {clip / (float)tr->world, (float)cap_sum};
  VLM_CHECK(vlm_comm_allreduce_sum_buf(sums, 2) == VLM_OK, "trainer: %s", vlm_last_error());
  tr->last_clip_loss = sums[0];
  tr->last_caption_loss = n_all > 0 ? (float)((double)sums[1] / (double)n_all) : 0.0f;
  return c->clip_loss_weight * tr->last_clip_loss + c->caption_loss_weight * tr->last_caption_loss;
}

static vlm_status coca_save_dir(vlm_trainer *tr, const char *dir) {
  return vlm_coca_save_dir(&tr->coca.p, &tr->coca.model, dir);
}
static vlm_status coca_load_weights(vlm_trainer *tr, const char *path) {
  if (tr->coca.p.arena.device == VLM_CPU) return vlm_coca_load_safetensors(&tr->coca.p, &tr->coca.model, path);
  vlm_status s = vlm_coca_load_safetensors(&tr->coca.host, &tr->coca.model, path);
  if (s == VLM_OK) vlm_coca_params_copy(&tr->coca.p, &tr->coca.host);   /* the host copy, then one upload */
  return s;
}
static void coca_free(vlm_trainer *tr) {
  vlm_arena_free(&tr->arena);
  vlm_clip_batch_free(&tr->batch);
  vlm_coca_params_free(&tr->coca.host);
  vlm_coca_params_free(&tr->coca.p);
  vlm_coca_params_free(&tr->coca.g);
  vlm_coca_params_free(&tr->coca.m);
  vlm_coca_params_free(&tr->coca.v);
  vlm_coca_acts_free(&tr->coca.acts);
}

static const vlm_train_ops k_coca_ops = {"CoCa", coca_visit, coca_forward_backward, coca_save_dir, coca_load_weights,
                                         coca_free};

/* ================================================================ the shared trainer */
static vlm_status check_cfg(const vlm_train_config *t) {
  if (t->accum_freq < 1 || t->batch_size < 1)
    return vlm_error(VLM_ERR_ARG, "training: batch size %d and accum-freq %d must be >= 1", t->batch_size,
                     t->accum_freq);
  if (t->lock_image && t->lock_text)
    return vlm_error(VLM_ERR_ARG, "training: --lock-image and --lock-text together leave only logit_scale to train");
  return VLM_OK;
}

/* The parameter slots over the model's sets, the trainable subset, the RNG. */
static vlm_status setup_slots(vlm_trainer *tr) {
  slot_ctx s = {tr, 0, 0};
  tr->ops->visit(tr, VLM_SET_PARAMS, count_slot, &s);
  tr->n_slots = s.i;
  tr->slots = calloc((size_t)tr->n_slots, sizeof *tr->slots);
  tr->active = calloc((size_t)tr->n_slots, sizeof *tr->active);
  if (!tr->slots || !tr->active) return vlm_error(VLM_ERR_OOM, "training: out of memory");
  for (int k = 0; k < 4; k++) {
    s.i = 0;
    s.which = k;
    tr->ops->visit(tr, k, fill_slot, &s);
  }
  for (int i = 0; i < tr->n_slots; i++) {
    const char *n = tr->slots[i].name;
    if (!n) return vlm_error(VLM_ERR_OOM, "training: out of memory");
    if (!strcmp(n, "logit_scale")) tr->logit_scale = tr->slots[i].param;
    if ((tr->cfg.lock_image && is_image_param(n)) || (tr->cfg.lock_text && is_text_param(tr, n))) continue;
    tr->active[tr->n_active++] = tr->slots[i];
  }
  if (!tr->logit_scale) return vlm_error(VLM_ERR_ARG, "training: the model has no logit_scale");
  vlm_rng_seed(&tr->rng, 0);
  return VLM_OK;
}

static void layout_extra(vlm_trainer *tr, vlm_arena *a) {
  const int64_t n = (int64_t)tr->cfg.accum_freq * tr->cfg.batch_size, N = n * tr->world, E = tr->model.embed_dim;
  if (!tr->is_coca && tr->model.has_logit_bias) vlm_siglip_loss_layout_local(&tr->sloss, a, n, N, n * tr->rank, E);
  else vlm_clip_loss_layout_local(&tr->loss, a, n, N, n * tr->rank, E);
  tr->img_all = vlm_arena_tensor2(a, VLM_F32, N, E);
  tr->txt_all = vlm_arena_tensor2(a, VLM_F32, N, E);
  tr->d_img_all = vlm_arena_tensor2(a, VLM_F32, N, E);
  tr->d_txt_all = vlm_arena_tensor2(a, VLM_F32, N, E);
}

vlm_status vlm_trainer_init(vlm_trainer *tr, const vlm_clip_config *c, const vlm_train_config *t) {
  memset(tr, 0, sizeof *tr);
  tr->model = *c;
  tr->cfg = *t;
  tr->ops = &k_clip_ops;
  tr->rank = vlm_comm_rank();
  tr->world = vlm_comm_world();
  if (tr->cfg.context_length <= 0) tr->cfg.context_length = c->text.context_length;
  vlm_status st = check_cfg(t);
  if (st != VLM_OK) return st;
  /* checkpoints are open_clip's layout: refuse a model it cannot describe before any step */
  if ((st = vlm_clip_config_openclip_ok(c, "training")) != VLM_OK) return st;
  const vlm_device dev = t->device;
  if (dev == VLM_CUDA && !vlm_cuda_available())
    return vlm_error(VLM_ERR_UNSUPPORTED, "training on the GPU: no usable GPU (or a build without CUDA)");
  /* Everything the step touches lives on dev; on a GPU the host keeps a copy of
   * the parameters (init, loading, evaluation) and the batch is uploaded once a step. */
  st = vlm_clip_params_init_on(&tr->p, c, dev);
  if (st == VLM_OK) st = vlm_clip_params_init_on(&tr->g, c, dev);
  if (st == VLM_OK) st = vlm_clip_params_init_on(&tr->m, c, dev);
  if (st == VLM_OK) st = vlm_clip_params_init_on(&tr->v, c, dev);
  if (st == VLM_OK) st = vlm_clip_acts_init_on(&tr->acts, c, t->batch_size, tr->cfg.context_length, 1, dev);
  if (st == VLM_OK && dev != VLM_CPU) st = vlm_clip_params_init(&tr->host, c);
  if (st != VLM_OK) goto fail;
  vlm_arena meas;
  vlm_arena_measure(&meas, dev);
  layout_extra(tr, &meas);
  st = vlm_arena_init(&tr->arena, meas.used, dev);
  if (st != VLM_OK) goto fail;
  layout_extra(tr, &tr->arena);
  st = setup_slots(tr);
  if (st != VLM_OK) goto fail;
  return VLM_OK;
fail:
  vlm_trainer_free(tr);
  return st;
}

vlm_status vlm_trainer_init_coca(vlm_trainer *tr, const vlm_coca_config *c, const vlm_train_config *t) {
  memset(tr, 0, sizeof *tr);
  tr->coca.model = *c;
  tr->is_coca = 1;
  tr->model.embed_dim = c->embed_dim;
  tr->model.quick_gelu = c->quick_gelu;
  tr->model.vision = c->vision;
  tr->model.text = c->text;
  tr->cfg = *t;
  tr->ops = &k_coca_ops;
  tr->rank = vlm_comm_rank();
  tr->world = vlm_comm_world();
  if (tr->cfg.context_length <= 0) tr->cfg.context_length = c->text.context_length;
  vlm_status st = check_cfg(t);
  if (st != VLM_OK) return st;
  const vlm_device dev = t->device;
  if (dev == VLM_CUDA && !vlm_cuda_available())
    return vlm_error(VLM_ERR_UNSUPPORTED, "training on the GPU: no usable GPU (or a build without CUDA)");
  /* As CLIP: everything the step touches on dev, a host copy of the parameters. */
  st = vlm_coca_params_init_on(&tr->coca.p, c, dev);
  if (st == VLM_OK) st = vlm_coca_params_init_on(&tr->coca.g, c, dev);
  if (st == VLM_OK) st = vlm_coca_params_init_on(&tr->coca.m, c, dev);
  if (st == VLM_OK) st = vlm_coca_params_init_on(&tr->coca.v, c, dev);
  if (st == VLM_OK) st = vlm_coca_acts_init_on(&tr->coca.acts, c, t->batch_size, tr->cfg.context_length, 1, dev);
  if (st == VLM_OK && dev != VLM_CPU) st = vlm_coca_params_init(&tr->coca.host, c);
  if (st == VLM_OK && (t->accum_freq > 1 || tr->world > 1)) {   /* the K*B (x world) loss and feature caches */
    vlm_arena meas;
    vlm_arena_measure(&meas, dev);
    layout_extra(tr, &meas);
    st = vlm_arena_init(&tr->arena, meas.used, dev);
    if (st == VLM_OK) layout_extra(tr, &tr->arena);
  }
  if (st == VLM_OK) st = setup_slots(tr);
  if (st != VLM_OK) vlm_trainer_free(tr);
  return st;
}

void vlm_trainer_free(vlm_trainer *tr) {
  if (tr->slots)
    for (int i = 0; i < tr->n_slots; i++) free((char *)tr->slots[i].name);
  free(tr->slots);
  free(tr->active);
  if (tr->ops) tr->ops->free(tr);
  memset(tr, 0, sizeof *tr);
}

vlm_clip_params *vlm_trainer_host_params(vlm_trainer *tr) {
  VLM_CHECK(!tr->is_coca, "trainer: vlm_trainer_host_params is for CLIP (CoCa: vlm_trainer_host_coca)");
  if (tr->p.arena.device == VLM_CPU) return &tr->p;
  vlm_clip_params_copy(&tr->host, &tr->p);
  return &tr->host;
}

vlm_coca_params *vlm_trainer_host_coca(vlm_trainer *tr) {
  VLM_CHECK(tr->is_coca, "trainer: vlm_trainer_host_coca is for CoCa (CLIP: vlm_trainer_host_params)");
  if (tr->coca.p.arena.device == VLM_CPU) return &tr->coca.p;
  vlm_coca_params_copy(&tr->coca.host, &tr->coca.p);
  return &tr->coca.host;
}

vlm_device vlm_trainer_device(const vlm_trainer *tr) {
  return tr->is_coca ? tr->coca.p.arena.device : tr->p.arena.device;
}

void vlm_trainer_upload_params(vlm_trainer *tr) {
  if (vlm_trainer_device(tr) == VLM_CPU) return;
  if (tr->is_coca) vlm_coca_params_copy(&tr->coca.p, &tr->coca.host);
  else vlm_clip_params_copy(&tr->p, &tr->host);
}

void vlm_trainer_reset_optimizer(vlm_trainer *tr) {
  for (int i = 0; i < tr->n_slots; i++) {
    vlm_zero(tr->slots[i].m);
    vlm_zero(tr->slots[i].v);
  }
  tr->step = tr->epoch = tr->epoch_batches = tr->epoch_seq = 0;
}

/* A parameter set's whole arena (its tensors and the zeroed padding between them) as one
 * F32 tensor, for collectives. */
static vlm_tensor arena_f32(const vlm_arena *a) {
  int64_t n = (int64_t)(a->used / sizeof(float));
  return vlm_tensor_make(a->base, VLM_F32, a->device, 1, &n);
}

vlm_status vlm_trainer_sync_params(vlm_trainer *tr) {
  if (tr->world <= 1) return VLM_OK;
  const vlm_arena *a = tr->is_coca ? &tr->coca.p.arena : &tr->p.arena;
  /* Every rank must run the same step: the same model layout, batch, accumulation, run
   * length and precision (ranks started by hand with different flags would otherwise
   * exchange mismatched buffers). A hash of them, its minimum and maximum over the ranks. */
  const uint64_t v[7] = {(uint64_t)a->used, (uint64_t)tr->cfg.batch_size, (uint64_t)tr->cfg.accum_freq,
                         (uint64_t)tr->cfg.total_steps, (uint64_t)tr->cfg.precision, (uint64_t)tr->is_coca,
                         (uint64_t)tr->cfg.context_length};
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < 7; i++) h = (h ^ v[i]) * 1099511628211ull;
  int64_t lo = (int64_t)(h >> 2), neg_hi = -(int64_t)(h >> 2);
  vlm_status st = vlm_comm_allreduce_min_i64(&lo);
  if (st == VLM_OK) st = vlm_comm_allreduce_min_i64(&neg_hi);
  if (st != VLM_OK) return st;
  if (lo != -neg_hi)
    return vlm_error(VLM_ERR_ARG, "the %d ranks were started with different settings (model, --batch-size, "
                     "--accum-freq, --steps / --epochs, --precision or the data's epoch length): give every rank "
                     "the same command and data", tr->world);
  return vlm_comm_bcast_bytes(a->base, a->device, a->used, 0);
}

float vlm_trainer_step(vlm_trainer *tr, const vlm_tensor *images, const vlm_tensor *ids) {
  const int64_t K = tr->cfg.accum_freq, B = tr->cfg.batch_size;
  VLM_CHECK(images->ndim == 4 && images->shape[0] == K * B && ids->ndim == 2 && ids->shape[0] == K * B &&
                ids->shape[1] == tr->cfg.context_length,
            "trainer: expected %lld images and ids of length %lld", (long long)(K * B),
            (long long)tr->cfg.context_length);
  const vlm_device dev = vlm_trainer_device(tr);
  if (dev != VLM_CPU && images->device == VLM_CPU) {
    /* One upload of the K*B batch (the device batch is made for the ids' dtype;
     * tr->model holds a CoCa's vision and text configs too) */
    if (!tr->batch.arena.base || tr->batch.ids.dtype != ids->dtype) {
      vlm_clip_batch_free(&tr->batch);
      VLM_CHECK(vlm_clip_batch_init_on(&tr->batch, &tr->model, K * B, tr->cfg.context_length, ids->dtype,
                                       dev) == VLM_OK,
                "trainer: %s", vlm_last_error());
    }
    vlm_clip_batch_upload(&tr->batch, images, ids);
    images = &tr->batch.images;
    ids = &tr->batch.ids;
  }
  vlm_precision saved = vlm_get_matmul_precision();
  vlm_set_matmul_precision(tr->cfg.precision);
  float lr = vlm_trainer_lr(&tr->cfg, tr->step);
  for (int i = 0; i < tr->n_slots; i++) vlm_zero(tr->slots[i].grad);
  float loss = tr->ops->forward_backward(tr, images, ids);
  vlm_set_matmul_precision(saved);
  if (tr->world > 1) {
    /* every rank's share of the global loss's gradient, summed: the same on every rank;
     * the logged loss is the mean of the ranks' local losses, the global batch's */
    vlm_tensor g = arena_f32(tr->is_coca ? &tr->coca.g.arena : &tr->g.arena);
    float lsum = loss / (float)tr->world;
    VLM_CHECK(vlm_comm_allreduce_sum(&g) == VLM_OK && vlm_comm_allreduce_sum_buf(&lsum, 1) == VLM_OK,
              "trainer: %s", vlm_last_error());
    loss = lsum;
  }
  double coef = 1.0;
  double norm = vlm_grad_clip(tr->active, tr->n_active, tr->cfg.grad_clip_norm, &coef);
  vlm_adamw_config ac = {tr->cfg.beta1, tr->cfg.beta2, tr->cfg.eps, tr->cfg.wd};
  vlm_adamw_step(tr->active, tr->n_active, &ac, lr, tr->step + 1);
  vlm_clip_logit_scale_clamp(tr->logit_scale);
  tr->step++;
  tr->last_loss = loss;
  tr->last_lr = lr;
  tr->last_grad_norm = norm;
  tr->last_clip_coef = coef;
  return loss;
}
