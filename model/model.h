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
/* The same on a device (VLM_CUDA: one device arena with the host layout). */
vlm_status vlm_clip_params_init_on(vlm_clip_params *p, const vlm_clip_config *c, vlm_device dev);
/* Copy every parameter from src to dst (same config; any devices: upload,
 * download, device to device): one copy of the arena. */
void vlm_clip_params_copy(vlm_clip_params *dst, const vlm_clip_params *src);
/* dst = a copy of src on dev (vlm_clip_params_init_on + vlm_clip_params_copy). */
vlm_status vlm_clip_params_to_device(vlm_clip_params *dst, const vlm_clip_params *src, const vlm_clip_config *c,
                                     vlm_device dev);
void vlm_clip_params_free(vlm_clip_params *p);
/* Visit every parameter under its open_clip state_dict name, in a fixed order. */
void vlm_clip_params_visit(vlm_clip_params *p, const vlm_clip_config *c, vlm_param_visit_fn fn, void *ctx);
int64_t vlm_clip_params_count(vlm_clip_params *p, const vlm_clip_config *c, int64_t *visual, int64_t *text);
void vlm_clip_params_zero(vlm_clip_params *p);
/* Inference weights with BF16 matmul matrices (attention/MLP weights, conv1,
 * the projections), converted once into dst's own arena (on src's device); every other tensor
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
/* The same with the activations in a device arena (the forward/backward then
 * runs on that device; images and ids must be there too: vlm_clip_batch_upload). */
vlm_status vlm_clip_acts_init_on(vlm_clip_acts *s, const vlm_clip_config *c, int64_t B, int64_t L, int with_backward,
                                 vlm_device dev);
void vlm_clip_acts_free(vlm_clip_acts *s);
/* A batch on a device: images [B,3,H,W] F32 and ids [B,L] (I32 or I64) in one
 * arena; vlm_clip_batch_upload copies a host batch in (one copy per tensor). */
typedef struct {
  vlm_arena arena;
  vlm_tensor images;  /* [B, 3, H, W] F32 */
  vlm_tensor ids;     /* [B, L] */
} vlm_clip_batch;
vlm_status vlm_clip_batch_init_on(vlm_clip_batch *b, const vlm_clip_config *c, int64_t B, int64_t L,
                                  vlm_dtype ids_dtype, vlm_device dev);
void vlm_clip_batch_upload(vlm_clip_batch *b, const vlm_tensor *images, const vlm_tensor *ids);
void vlm_clip_batch_free(vlm_clip_batch *b);

/* images [B,3,H,W] F32, ids [B,L] I32/I64. Returns the loss; features, logits in s. */
float vlm_clip_forward(const vlm_clip_config *c, const vlm_clip_params *p, vlm_clip_acts *s,
                       const vlm_tensor *images, const vlm_tensor *ids);
/* d(loss)/d(params) accumulated into g (same config). */
void vlm_clip_backward(const vlm_clip_config *c, const vlm_clip_params *p, vlm_clip_params *g, vlm_clip_acts *s,
                       const vlm_tensor *ids);
#endif
