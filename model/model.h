/* model: CLIP assembled from the towers — config (open_clip's model_cfg JSON
 * and Hugging Face CLIPConfig), the parameter layout in one arena with
 * open_clip's state_dict names, checkpoint loading (open_clip and HF names;
 * F32/F16/BF16), and the forward/backward of the whole model with its loss. */
#ifndef VLM_MODEL_H
#define VLM_MODEL_H
#include "contrastive/contrastive.h"
#include "core/core.h"
#include "text/text.h"
#include "vision/vision.h"

typedef struct {
  int64_t embed_dim;
  int quick_gelu;
  vlm_vit_config vision;
  vlm_text_config text;
} vlm_clip_config;

/* Parse an open_clip model_cfg (or an object holding one under "model_cfg",
 * as open_clip_config.json does). `source` names the file in errors. */
vlm_status vlm_clip_config_parse(vlm_clip_config *c, const char *json, const char *source);
/* Parse a Hugging Face CLIPConfig (vision_config / text_config / projection_dim). */
vlm_status vlm_clip_config_parse_hf(vlm_clip_config *c, const char *json, const char *source);
/* Read a file and parse it with whichever schema it holds; *is_hf (may be NULL) tells which. */
vlm_status vlm_clip_config_load(vlm_clip_config *c, const char *path, int *is_hf);
vlm_status vlm_read_text_file(const char *path, char **out);   /* NUL-terminated; free() it */
/* Built-in configs: "ViT-B-32", "ViT-B-16", "ViT-L-14" (open_clip's numbers),
 * "small" (the benchmark training config), "tiny" (the fixtures' shape);
 * a "-quickgelu" suffix selects QuickGELU. vlm_clip_builtin_name(i) lists them (NULL past the end). */
vlm_status vlm_clip_config_builtin(vlm_clip_config *c, const char *name);
const char *vlm_clip_builtin_name(int i);
/* Parameter count of a config without allocating the parameters. */
int64_t vlm_clip_config_num_params(const vlm_clip_config *c, int64_t *visual, int64_t *text);

/* All parameters (or gradients: the same layout) in one arena. */
typedef struct {
  vlm_arena arena;
  vlm_vit_params visual;
  vlm_text_params text;
  vlm_tensor logit_scale;    /* [] raw (before exp) */
} vlm_clip_params;

vlm_status vlm_clip_params_init(vlm_clip_params *p, const vlm_clip_config *c);  /* zeroed */
void vlm_clip_params_free(vlm_clip_params *p);
/* Visit every parameter under its open_clip state_dict name, in a fixed order. */
void vlm_clip_params_visit(vlm_clip_params *p, const vlm_clip_config *c, vlm_param_visit_fn fn, void *ctx);
int64_t vlm_clip_params_count(vlm_clip_params *p, const vlm_clip_config *c, int64_t *visual, int64_t *text);
void vlm_clip_params_zero(vlm_clip_params *p);
/* Inference weights with BF16 matmul matrices (attention/MLP weights, conv1,
 * the projections), converted once into dst's own arena; every other tensor
 * (embeddings, LayerNorms, biases, logit_scale) is shared with src, which must
 * outlive dst. Forward only: gradients need F32 parameters. */
vlm_status vlm_clip_params_bf16(vlm_clip_params *dst, vlm_clip_params *src, const vlm_clip_config *c);
/* open_clip's initialisation for training from scratch (model/init.c lists the
 * distributions); deterministic for a seed. */
void vlm_clip_params_init_openclip(vlm_clip_params *p, const vlm_clip_config *c, uint64_t seed);

/* Checkpoint formats. */
typedef enum { VLM_CKPT_OPENCLIP = 0, VLM_CKPT_HF = 1 } vlm_ckpt_format;
const char *vlm_ckpt_format_name(vlm_ckpt_format f);
/* Load tensors from a safetensors file into p (already laid out for c). On a
 * mismatch the error lists every missing, unexpected and mis-shaped tensor. */
vlm_status vlm_clip_load_safetensors(vlm_clip_params *p, const vlm_clip_config *c, const char *path,
                                     vlm_ckpt_format fmt);
/* Write p (parameters or gradients) to path atomically under the names of fmt
 * (HF: q/k/v split, projections transposed). */
vlm_status vlm_clip_save_safetensors(vlm_clip_params *p, const vlm_clip_config *c, const char *path,
                                     vlm_ckpt_format fmt);
/* The config as open_clip_config.json ({"model_cfg", "preprocess_cfg"}) or as a
 * Hugging Face CLIPConfig; malloc'd, NULL on failure. */
char *vlm_clip_config_to_json(const vlm_clip_config *c, vlm_ckpt_format fmt);
/* A loadable checkpoint directory (must exist): open_clip_config.json +
 * open_clip_model.safetensors (open_clip's `local-dir:`), or HF config.json +
 * model.safetensors. Each file is written atomically. */
vlm_status vlm_clip_save_dir(vlm_clip_params *p, const vlm_clip_config *c, const char *dir, vlm_ckpt_format fmt);
/* Load a model from a directory (open_clip_config.json + open_clip_model.safetensors;
 * config.json + model.safetensors in open_clip or HF form) or from a config
 * file path (the weights beside it: model.safetensors / open_clip_model.safetensors). */
vlm_status vlm_clip_load(const char *path, vlm_clip_config *c, vlm_clip_params *p, vlm_ckpt_format *fmt);
/* The HF name of an open_clip parameter name; n_parts = 3 for q/k/v concatenations,
 * transpose = 1 for the projections. Returns 0 if the name is not known. */
int vlm_clip_hf_name(const char *name, char parts[3][256], int *n_parts, int *transpose);

/* Activations of a whole CLIP forward/backward at batch B, text length L. */
typedef struct {
  vlm_arena arena;
  vlm_vit_acts visual;
  vlm_text_acts text;
  vlm_clip_loss_acts loss;
  vlm_tensor d_img_feat, d_txt_feat;  /* [B, E] */
} vlm_clip_acts;

vlm_status vlm_clip_acts_init(vlm_clip_acts *s, const vlm_clip_config *c, int64_t B, int64_t L, int with_backward);
void vlm_clip_acts_free(vlm_clip_acts *s);
/* images [B,3,H,W] F32, ids [B,L] I32/I64. Returns the loss; features, logits in s. */
float vlm_clip_forward(const vlm_clip_config *c, const vlm_clip_params *p, vlm_clip_acts *s,
                       const vlm_tensor *images, const vlm_tensor *ids);
/* d(loss)/d(params) accumulated into g (same config). */
void vlm_clip_backward(const vlm_clip_config *c, const vlm_clip_params *p, vlm_clip_params *g, vlm_clip_acts *s,
                       const vlm_tensor *ids);
/* ---- training (model/train.c, model/train_ckpt.c) ----
 * open_clip's training step for CLIP: lr from the schedule; zero grads; forward
 * + ClipLoss; backward; global-norm clip (only when grad_clip_norm > 0); AdamW
 * (decoupled decay, no decay for tensors with ndim <= 1 and the positional
 * embeddings); clamp logit_scale to [0, ln 100].
 * accum_freq K > 1 is open_clip's contrastive accumulation: the features of the
 * K micro-batches are computed without gradients first; then each micro-batch's
 * forward is redone with gradients and its loss takes its fresh features with
 * the cached features of the others, over the whole K*B batch. The tower
 * gradients equal those of one K*B batch; logit_scale receives one gradient per
 * micro-batch (K times the K*B one), as in open_clip.
 * precision BF16: matmul inputs rounded to bf16 (forward and backward), fp32
 * master weights, gradients, moments and accumulation.
 * lock_image / lock_text (LiT): the locked tower's parameters get no update, no
 * moments and no backward pass; its features are computed once per step. */
typedef enum { VLM_SCHED_COSINE = 0, VLM_SCHED_CONST, VLM_SCHED_CONST_COOLDOWN } vlm_lr_scheduler;
int vlm_lr_scheduler_parse(const char *s, vlm_lr_scheduler *out);   /* cosine|const|const-cooldown; 1 if known */
const char *vlm_lr_scheduler_name(vlm_lr_scheduler s);

typedef struct {
  float lr, beta1, beta2, eps, wd;  /* open_clip: 5e-4, 0.9, 0.98, 1e-6, 0.2 */
  int64_t warmup;                   /* steps */
  int64_t total_steps;              /* optimizer steps of the whole run (schedule length) */
  vlm_lr_scheduler scheduler;
  int64_t cooldown_steps;           /* const-cooldown: the last cooldown_steps decay */
  float cooldown_power, cooldown_end_lr; /* 1.0, 0.0 */
  double grad_clip_norm;            /* <= 0: no clipping (open_clip's default) */
  int accum_freq;                   /* K >= 1 */
  int batch_size;                   /* micro-batch B; one optimizer step sees K*B samples */
  int64_t context_length;           /* text length L of the batches (<= the model's) */
  vlm_precision precision;
  int lock_image, lock_text;
} vlm_train_config;
void vlm_train_config_default(vlm_train_config *t);

typedef struct {
  vlm_clip_config model;
  vlm_train_config cfg;
  vlm_clip_params p, g, m, v;       /* parameters, gradients, exp_avg, exp_avg_sq (one arena each) */
  vlm_param_slot *slots;            /* every parameter in visit order (names owned) */
  int n_slots;
  vlm_param_slot *active;           /* the trainable ones (locked towers left out) */
  int n_active;
  vlm_clip_acts acts;               /* one micro-batch B, with backward */
  vlm_arena arena;                  /* the K*B loss and the feature caches below */
  vlm_clip_loss_acts loss;          /* over K*B */
  vlm_tensor img_all, txt_all;      /* [K*B, E] features (cached, then the fresh micro-batch's rows) */
  vlm_tensor d_img_all, d_txt_all;  /* [K*B, E] */
  int64_t step;                     /* optimizer steps taken */
  int64_t epoch;                    /* current epoch (0-based) */
  int64_t epoch_batches;            /* micro-batches consumed in the current epoch (data position) */
  vlm_rng rng;                      /* the run's RNG (saved with checkpoints) */
  /* the last step */
  float last_loss, last_lr;
  double last_grad_norm, last_clip_coef;
} vlm_trainer;

/* Allocate everything for model config c and training config t; parameters zeroed
 * (set them with vlm_clip_params_init_openclip or a load). */
vlm_status vlm_trainer_init(vlm_trainer *tr, const vlm_clip_config *c, const vlm_train_config *t);
void vlm_trainer_free(vlm_trainer *tr);
/* Learning rate of (0-based) optimizer step s under the schedule. */
float vlm_trainer_lr(const vlm_train_config *t, int64_t s);
/* open_clip's weight-decay rule for a parameter. */
int vlm_param_decays(const char *name, const vlm_tensor *t);
/* One optimizer step on K*B samples: images [K*B,3,S,S] F32, ids [K*B,L] I32/I64.
 * Returns the loss (of the last micro-batch's backward, as open_clip logs it). */
float vlm_trainer_step(vlm_trainer *tr, const vlm_tensor *images, const vlm_tensor *ids);

/* Checkpoints (train_ckpt.c). A checkpoint directory holds open_clip_config.json +
 * open_clip_model.safetensors (loadable by vlm_clip_load and open_clip's
 * local-dir:) and train_state.safetensors: "<param>.exp_avg" / "<param>.exp_avg_sq"
 * F32 per parameter, metadata step, epoch, epoch_batches, rng (hex) and the
 * training config. Every file is written to a temporary name and renamed. */
vlm_status vlm_trainer_save(vlm_trainer *tr, const char *dir);
/* Load the weights and (when present) train_state.safetensors from dir. The
 * model config must match (the caller loads it from the same dir). */
vlm_status vlm_trainer_load(vlm_trainer *tr, const char *dir, int *had_state);
/* Save into CK/<name> atomically: written to CK/.tmp-<name>-<pid>, then renamed
 * over (the old one moved aside and removed). */
vlm_status vlm_trainer_save_named(vlm_trainer *tr, const char *ck_dir, const char *name);
/* The "latest" pointer: CK/latest is a symlink to a checkpoint dir in CK, replaced
 * by an atomic rename of a new symlink after that dir is complete. Older
 * latest targets (step_*) not pointed at are removed. */
vlm_status vlm_trainer_save_latest(vlm_trainer *tr, const char *ck_dir);
#endif
