/* model: CLIP assembled from the towers — config (open_clip's model_cfg JSON
 * and Hugging Face CLIPConfig), the parameter layout in one arena with
 * open_clip's state_dict names, checkpoint loading (open_clip and HF names;
 * F32/F16/BF16), and the forward/backward of the whole model with its loss. */
#ifndef VLM_MODEL_H
#define VLM_MODEL_H
#include "contrastive/contrastive.h"
#include "core/core.h"
#include "fusion/fusion.h"
#include "text/text.h"
#include "vision/vision.h"

typedef struct {
  int64_t embed_dim;
  int quick_gelu;
  vlm_vit_config vision;
  vlm_text_config text;
  /* open_clip's model_cfg "init_logit_bias" (not null): the model has a learnable logit_bias
   * [] beside logit_scale, initialised to init_logit_bias, and is a SigLIP model: its loss is
   * the sigmoid loss (contrastive.h; vlm_clip_forward, `vlm train`). Hugging Face's CLIPConfig
   * has none. */
  int has_logit_bias;
  float init_logit_bias;
} vlm_clip_config;

/* Parse an open_clip model_cfg (or an object holding one under "model_cfg",
 * as open_clip_config.json does). `source` names the file in errors. */
vlm_status vlm_clip_config_parse(vlm_clip_config *c, const char *json, const char *source);
/* Parse a Hugging Face CLIPConfig (vision_config / text_config / projection_dim). */
vlm_status vlm_clip_config_parse_hf(vlm_clip_config *c, const char *json, const char *source);
/* Read a file and parse it with whichever schema it holds; *is_hf (may be NULL) tells which. */
vlm_status vlm_clip_config_load(vlm_clip_config *c, const char *path, int *is_hf);
vlm_status vlm_read_text_file(const char *path, char **out);   /* NUL-terminated; free() it */
/* The same, with its length (*len; the file may hold NUL bytes). At most 64 MiB. */
vlm_status vlm_read_file(const char *path, char **out, size_t *len);
/* Built-in configs: "ViT-B-32", "ViT-B-16", "ViT-L-14" (open_clip's numbers),
 * "small" (the benchmark training config), "tiny" (the fixtures' shape);
 * a "-quickgelu" suffix selects QuickGELU. vlm_clip_builtin_name(i) lists them (NULL past the end). */
vlm_status vlm_clip_config_builtin(vlm_clip_config *c, const char *name);
const char *vlm_clip_builtin_name(int i);
/* Their names, ", "-separated, into buf (n bytes). */
void vlm_clip_builtin_names(char *buf, size_t n);
/* Parameter count of a config without allocating the parameters. */
int64_t vlm_clip_config_num_params(const vlm_clip_config *c, int64_t *visual, int64_t *text);

/* All parameters (or gradients: the same layout) in one arena. */
typedef struct {
  vlm_arena arena;
  vlm_vit_params visual;
  vlm_text_params text;
  vlm_tensor logit_scale;    /* [] raw (before exp) */
  vlm_tensor logit_bias;     /* [] when the config has_logit_bias, else empty (data NULL) */
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
 * outlive dst. Forward only: gradients need F32 parameters.
 * drop_src (host parameters only): each F32 matrix's pages are given back as soon as
 * it is converted (vlm_host_release), so the process never holds both copies: it
 * peaks at the F32 parameters and then holds about half of them. src's matrices read
 * as zero afterwards; src then only stores the shared tensors for dst. */
vlm_status vlm_clip_params_bf16(vlm_clip_params *dst, vlm_clip_params *src, const vlm_clip_config *c, int drop_src);
/* One step of either conversion: a BF16 tensor of t's shape from arena a (only measured
 * while a is measuring: returns 0), t copied into it, t's pages given back when drop_src
 * (host memory), then t made to name the copy. Returns 1 when it converted. */
int vlm_param_to_bf16(vlm_arena *a, vlm_tensor *t, int drop_src);
/* Helpers of the initialisers and converters (model/init.c): whether a parameter name ends
 * with suffix; t filled from N(0, std) or U(-bound, bound) drawn from r. */
int vlm_name_ends(const char *name, const char *suffix);
void vlm_fill_normal(vlm_rng *r, vlm_tensor *t, double std);
void vlm_fill_uniform(vlm_rng *r, vlm_tensor *t, double bound);
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
/* The same, written into *staged and not yet renamed into place: the caller commits it with
 * the files that belong with it (vlm_atomic_commit_all) or aborts it. */
vlm_status vlm_clip_stage_safetensors(vlm_clip_params *p, const vlm_clip_config *c, const char *path,
                                      vlm_ckpt_format fmt, vlm_atomic_file *staged);
/* The same as a PyTorch checkpoint when torch (torch.save of the state dict: torch.load and
 * open_clip's pretrained= read it), else as safetensors. */
vlm_status vlm_clip_stage_weights(vlm_clip_params *p, const vlm_clip_config *c, const char *path,
                                  vlm_ckpt_format fmt, int torch, vlm_atomic_file *staged);
/* The config as open_clip_config.json ({"model_cfg", "preprocess_cfg"}) or as a
 * Hugging Face CLIPConfig; malloc'd, NULL on failure. */
char *vlm_clip_config_to_json(const vlm_clip_config *c, vlm_ckpt_format fmt);
/* VLM_OK when open_clip's model_cfg can describe c; else an error naming `what` and saying why (a
 * Hugging Face text tower that pools at an eos id other than the largest id). */
vlm_status vlm_clip_config_openclip_ok(const vlm_clip_config *c, const char *what);
/* VLM_OK when Hugging Face's CLIPConfig / CLIPModel can hold c; else an error naming `what` (a model
 * with a logit_bias: HF's CLIPModel has none, its SigLIP is another architecture). */
vlm_status vlm_clip_config_hf_ok(const vlm_clip_config *c, const char *what);
/* A loadable checkpoint directory (must exist): open_clip_config.json +
 * open_clip_model.safetensors (open_clip's `local-dir:`), or HF config.json +
 * model.safetensors. The two files are replaced together (vlm_atomic_commit_all): when either
 * cannot be written, neither is replaced. The open_clip layout refuses what
 * vlm_clip_config_openclip_ok refuses, before writing anything. */
vlm_status vlm_clip_save_dir(vlm_clip_params *p, const vlm_clip_config *c, const char *dir, vlm_ckpt_format fmt);
/* The same with the weights as a PyTorch checkpoint when torch (open_clip_pytorch_model.bin or
 * pytorch_model.bin, as hub repos name them). */
vlm_status vlm_clip_save_dir_as(vlm_clip_params *p, const vlm_clip_config *c, const char *dir, vlm_ckpt_format fmt,
                                int torch);
/* Load a model from a directory (open_clip_config.json + open_clip_model.safetensors or
 * open_clip_pytorch_model.bin; config.json + model.safetensors or pytorch_model.bin, in open_clip
 * or HF form; sharded saves of either), from a config file path (the weights beside it) or from a
 * weights file (a PyTorch checkpoint or .safetensors file; its config beside it, or for a
 * TorchScript archive read off its shapes: vlm_clip_config_resolve). */
vlm_status vlm_clip_load(const char *path, vlm_clip_config *c, vlm_clip_params *p, vlm_ckpt_format *fmt);
/* A load's "does not match the ... layout of this config" error (s) made to name the config
 * (label: the --config spec or the config file); any other status or message passes through. */
vlm_status vlm_ckpt_name_config(vlm_status s, const char *label);
/* The same as vlm_clip_load with the config named (config != NULL: vlm_clip_config_named)
 * instead of found. */
vlm_status vlm_clip_load_as(const char *path, const char *config, vlm_clip_config *c, vlm_clip_params *p,
                            vlm_ckpt_format *fmt);
/* The config and weights files of a model path, resolved as vlm_clip_load and
 * vlm_coca_load do (a directory: open_clip_config.json + its weights, else config.json + its
 * weights, safetensors before PyTorch pickles; a config file: the weights beside it; a weights file:
 * itself, and the config beside it, or cfg = "" when there is none). cfg and weights hold n
 * bytes. Errors when the path or the config is missing, and for a `vlm train` run directory
 * (RUN/checkpoints/ and no model files: the message names RUN/checkpoints/latest). */
vlm_status vlm_model_paths(const char *path, char *cfg, char *weights, size_t n);
/* Which weights vlm_model_paths(dir) would read once cfg_name and weights_name (file names, as a
 * save writes them) are written into dir: 0, those; 1, another weights file that would be read
 * with that config (e.g. open_clip_model.safetensors before a new open_clip_pytorch_model.bin,
 * or weights_name.index.json before weights_name); 2, another layout's complete pair, read
 * first (e.g. open_clip's before a new config.json + model.safetensors). other (n bytes) gets
 * that other weights file's path. */
int vlm_model_dir_shadow(const char *dir, const char *cfg_name, const char *weights_name, char *other, size_t n);
/* 1 when path names a weights file (a PyTorch checkpoint, a .safetensors file or a sharded save's
 * index) rather than a config file. */
int vlm_is_weights_file(const char *path);
/* VLM_OK when weights is a file, else an error naming it and its config. */
vlm_status vlm_model_weights_exist(const char *cfg, const char *weights);
/* open_clip's training log LOGS/RUN/params.txt (beside RUN/checkpoints/epoch_N.pt), whose "model"
 * line names the architecture: vlm_is_openclip_params tells such a path (its file name);
 * vlm_openclip_params_model gives the name, "-quickgelu" added for force_quick_gelu, and
 * *image_size from force_image_size (0: none; a non-square size is refused);
 * vlm_openclip_params_image_size puts that size into a vision config (it must be a multiple of
 * the patch). The config loaders (vlm_clip_config_load, vlm_coca_config_load) read it as that
 * built-in config. */
int vlm_is_openclip_params(const char *path);
vlm_status vlm_openclip_params_model(const char *path, char *name, size_t n, int64_t *image_size);
vlm_status vlm_openclip_params_image_size(vlm_vit_config *v, int64_t size, const char *path);
/* A checkpoint's weights (model/shards.c): one safetensors file, or a sharded save
 * (NAME.safetensors.index.json, transformers' save_pretrained with max_shard_size: its
 * "weight_map" names each tensor's shard file, beside the index). Every shard is mapped. */
typedef struct {
  char *name;
  int shard;
} vlm_weight_ref;
typedef struct {
  vlm_safetensors *shards;
  int n_shards;
  vlm_weight_ref *map;   /* sorted by name; NULL for a single file */
  int n_map;
} vlm_weights;
int vlm_weights_is_index(const char *path);
/* 1 for PyTorch's usual file name endings (.pt, .pth, .bin, .ckpt): such a file is read by the
 * torch reader even when it is no zip (its message names the legacy format). */
int vlm_is_torch_name(const char *path);   /* ends with ".index.json" */
vlm_status vlm_weights_open(vlm_weights *w, const char *path);
void vlm_weights_close(vlm_weights *w);
/* What a weights path holds, for messages: "safetensors", "PyTorch checkpoint", "TorchScript
 * archive" (", sharded" for an index), or "unreadable". From its name and its zip directory. */
const char *vlm_weights_kind(const char *path);
/* The config of a model whose files vlm_model_paths found: cfg read; cfg "" (a weights file with
 * no config beside it): inferred from a TorchScript archive's shapes (OpenAI's releases); any
 * other weights file gets an error saying how to name its config. *is_hf: the config's schema. */
vlm_status vlm_clip_config_resolve(vlm_clip_config *c, const char *cfg, const char *weights, const vlm_weights *w,
                                   int *is_hf);
/* A config named by the user (--config): a config file (open_clip or HF), a built-in name, or
 * "openai" (read off the weights' shapes by OpenAI's rule: vlm_clip_config_infer_openai). */
vlm_status vlm_clip_config_named(vlm_clip_config *c, const char *spec, const char *weights, const vlm_weights *w,
                                 int *is_hf);
/* 1 when resolving the config (cfg found beside the model, or spec named by the user when not
 * NULL) reads the weights (a shape inference); w in the two calls above: those weights already
 * open (NULL: opened there), so that a load opens them once. */
int vlm_clip_config_reads_weights(const char *cfg, const char *spec);
/* The entry `name` (and its shard's index in *shard), NULL when absent. */
const vlm_st_entry *vlm_weights_find(const vlm_weights *w, const char *name, int *shard);
/* The HF name of an open_clip parameter name; n_parts = 3 for q/k/v concatenations,
 * transpose = 1 for the projections. Returns 0 if the name is not known. */
int vlm_clip_hf_name(const char *name, char parts[3][256], int *n_parts, int *transpose);
/* open_clip's rule for OpenAI's checkpoints (build_model_from_openai_state_dict): a ViT CLIP
 * config read off the shapes of OpenAI-named weights; heads = width / 64 in both towers, QuickGELU,
 * LayerNorm eps 1e-5. Errors name path and what does not fit. */
vlm_status vlm_clip_config_infer_openai(vlm_clip_config *c, const vlm_weights *w, const char *path);

/* Activations of a whole CLIP forward/backward at batch B, text length L. */
typedef struct {
  vlm_arena arena;
  vlm_vit_acts visual;
  vlm_text_acts text;
  vlm_clip_loss_acts loss;           /* the ClipLoss (features, logits); not the loss of a SigLIP model */
  vlm_siglip_loss_acts siglip;        /* has_logit_bias: the loss (B rows against B) */
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

/* images [B,3,H,W] F32, ids [B,L] I32/I64. Returns the loss (the ClipLoss, or with has_logit_bias
 * the SigLIP loss, s->siglip); features, logits in s (s->loss: the ClipLoss's, for every model). */
float vlm_clip_forward(const vlm_clip_config *c, const vlm_clip_params *p, vlm_clip_acts *s,
                       const vlm_tensor *images, const vlm_tensor *ids);
/* d(loss)/d(params) accumulated into g (same config). */
void vlm_clip_backward(const vlm_clip_config *c, const vlm_clip_params *p, vlm_clip_params *g, vlm_clip_acts *s,
                       const vlm_tensor *ids);

/* Load / save every tensor a visitor visits, under the visited (open_clip) names;
 * errors list every missing, unexpected and mis-shaped tensor. */
typedef void (*vlm_visit_all_fn)(void *model, vlm_param_visit_fn fn, void *ctx);
vlm_status vlm_load_safetensors_visit(vlm_visit_all_fn visit, void *model, const char *path);
vlm_status vlm_save_safetensors_visit(vlm_visit_all_fn visit, void *model, const char *path);
vlm_status vlm_stage_safetensors_visit(vlm_visit_all_fn visit, void *model, const char *path,
                                       vlm_atomic_file *staged);
vlm_status vlm_stage_weights_visit(vlm_visit_all_fn visit, void *model, const char *path, int torch,
                                   vlm_atomic_file *staged);

/* ==================================================================== CoCa (model/coca*.c)
 * open_clip's CoCa: the ViT with the attentional pooler (image feature + image
 * tokens), the text tower with an appended cls embedding (pooled feature +
 * token states before ln_final), the multimodal decoder (fusion/) and the loss
 *   total = clip_w * ClipLoss + caption_w * CE(logits[:, :-1], ids[:, 1:], ignore pad_id)
 * (open_clip's CoCaLoss; defaults 1.0 and 2.0). Parameter names are open_clip's
 * state_dict names ("visual.*", "text.*", "text_decoder.*", "logit_scale"). */
typedef struct {
  int64_t embed_dim;
  int quick_gelu;
  vlm_vit_config vision;       /* attentional_pool = 1 */
  vlm_text_config text;        /* embed_cls = 1 */
  vlm_decoder_config decoder;  /* multimodal_cfg; vocab_size = text's */
  float clip_loss_weight;      /* 1.0 */
  float caption_loss_weight;   /* 2.0 */
} vlm_coca_config;

/* open_clip model_cfg JSON with multimodal_cfg (or an object holding it under "model_cfg"). */
vlm_status vlm_coca_config_parse(vlm_coca_config *c, const char *json, const char *source);
vlm_status vlm_coca_config_load(vlm_coca_config *c, const char *path);
/* Built-ins: "coca_ViT-B-32" (open_clip's numbers), "coca-small", "coca-shapes" (the shapes captioning demo),
 * "coca-tiny" (the fixture's shape). */
vlm_status vlm_coca_config_builtin(vlm_coca_config *c, const char *name);
const char *vlm_coca_builtin_name(int i);
/* The config as open_clip_config.json ({"model_cfg", "preprocess_cfg"}); malloc'd. */
char *vlm_coca_config_to_json(const vlm_coca_config *c);
/* 1 when the model at path (a directory or a config file, as vlm_clip_load takes)
 * has a CoCa config (multimodal_cfg), 0 when not, -1 when no config can be read. */
int vlm_model_is_coca(const char *path);

typedef struct {
  vlm_arena arena;
  vlm_vit_params visual;
  vlm_attn_pool_params pool;   /* visual.attn_pool.* */
  vlm_text_params text;        /* text.* */
  vlm_decoder_params decoder;  /* text_decoder.* */
  vlm_tensor logit_scale;      /* [] raw */
} vlm_coca_params;

vlm_status vlm_coca_params_init(vlm_coca_params *p, const vlm_coca_config *c);   /* zeroed */
/* The same on a device (one arena there, the same layout on every device). */
vlm_status vlm_coca_params_init_on(vlm_coca_params *p, const vlm_coca_config *c, vlm_device dev);
/* dst = src, between any devices (the arena copied whole; same config). */
void vlm_coca_params_copy(vlm_coca_params *dst, const vlm_coca_params *src);
void vlm_coca_params_free(vlm_coca_params *p);
/* Same visit function type as CLIP: open_clip names, fixed order. */
void vlm_coca_params_visit(vlm_coca_params *p, const vlm_coca_config *c, vlm_param_visit_fn fn, void *ctx);
int64_t vlm_coca_params_count(vlm_coca_params *p, const vlm_coca_config *c);
void vlm_coca_params_zero(vlm_coca_params *p);
/* open_clip's initialisation (model/coca_init.c lists it), text_decoder.text_projection
 * included: normal(std = width^-0.5). Deterministic for a seed. */
void vlm_coca_params_init_openclip(vlm_coca_params *p, const vlm_coca_config *c, uint64_t seed);
/* Inference weights with BF16 matmul matrices (as vlm_clip_params_bf16, drop_src
 * included): converted once into dst's own arena, everything else shared with src
 * (which must outlive dst). Use with vlm_set_matmul_precision(VLM_PREC_BF16); forward /
 * generation only. */
vlm_status vlm_coca_params_bf16(vlm_coca_params *dst, vlm_coca_params *src, const vlm_coca_config *c, int drop_src);
vlm_status vlm_coca_load_safetensors(vlm_coca_params *p, const vlm_coca_config *c, const char *path);
vlm_status vlm_coca_save_safetensors(vlm_coca_params *p, const vlm_coca_config *c, const char *path);
vlm_status vlm_coca_stage_safetensors(vlm_coca_params *p, const vlm_coca_config *c, const char *path,
                                      vlm_atomic_file *staged);
/* open_clip_config.json + open_clip_model.safetensors into an existing dir, replaced together
 * (neither when either cannot be written). */
vlm_status vlm_coca_save_dir(vlm_coca_params *p, const vlm_coca_config *c, const char *dir);
vlm_status vlm_coca_save_dir_as(vlm_coca_params *p, const vlm_coca_config *c, const char *dir, int torch);
vlm_status vlm_coca_stage_weights(vlm_coca_params *p, const vlm_coca_config *c, const char *path, int torch,
                                  vlm_atomic_file *staged);
/* As vlm_clip_load: a directory or a config file (weights beside it). */
vlm_status vlm_coca_load(const char *path, vlm_coca_config *c, vlm_coca_params *p);
/* The same with the config named (config != NULL: a CoCa config file or built-in name). */
vlm_status vlm_coca_load_as(const char *path, const char *config, vlm_coca_config *c, vlm_coca_params *p);
/* 1 when a --config value names a CoCa model (a CoCa built-in, or a config file with multimodal_cfg). */
int vlm_coca_config_spec_is_coca(const char *spec);

typedef struct {
  vlm_arena arena;
  int64_t B, L;
  vlm_vit_acts visual;
  vlm_attn_pool_acts pool;      /* features [B,E], tokens [B,Q-1,E] */
  vlm_text_acts text;           /* features [B,E] */
  vlm_decoder_acts dec;         /* xs[0] = text tokens [B,L,W]; logits [B,L,V] */
  vlm_clip_loss_acts loss;
  vlm_tensor targets;           /* [B*L] I64: ids[:, 1:], pad at each row's last position */
  vlm_tensor cap_probs;         /* [B*L, V] */
  vlm_tensor cap_loss;          /* [1] unweighted caption CE */
  vlm_tensor d_cap;             /* [1] = caption weight */
  vlm_tensor d_img_feat, d_txt_feat; /* [B, E] */
  vlm_tensor d_logits;          /* [B, L, V] */
  vlm_tensor d_text_tokens;     /* [B, L, W] */
  vlm_tensor d_img_tokens;      /* [B, Q-1, E] */
  float clip_loss, caption_loss, total; /* unweighted parts and the weighted total */
  int with_backward;
} vlm_coca_acts;

vlm_status vlm_coca_acts_init(vlm_coca_acts *s, const vlm_coca_config *c, int64_t B, int64_t L, int with_backward);
/* On a device: the model code runs unchanged on parameters, activations, images
 * and ids that live there (ids are read back for the targets and masks). */
vlm_status vlm_coca_acts_init_on(vlm_coca_acts *s, const vlm_coca_config *c, int64_t B, int64_t L, int with_backward,
                                 vlm_device dev);
void vlm_coca_acts_free(vlm_coca_acts *s);
/* images [B,3,H,W] F32, ids [B,L] I32/I64 (L <= both context lengths). Returns the
 * total loss; the parts, features, tokens and caption logits stay in s. */
float vlm_coca_forward(const vlm_coca_config *c, const vlm_coca_params *p, vlm_coca_acts *s,
                       const vlm_tensor *images, const vlm_tensor *ids);
/* d(total)/d(params) accumulated into g. */
void vlm_coca_backward(const vlm_coca_config *c, const vlm_coca_params *p, vlm_coca_params *g, vlm_coca_acts *s,
                       const vlm_tensor *ids);
/* The backward below the losses, for the trainer's accumulation and locking:
 * the feature gradients are s->d_img_feat and s->d_txt_feat as the caller left
 * them, and the caption loss (this batch's mean) has gradient w_cap. With
 * no_image the image tower (the attentional pooler included) gets no
 * gradients, with no_text the text tower (LiT locking); the decoder always does. */
void vlm_coca_backward_towers(const vlm_coca_config *c, const vlm_coca_params *p, vlm_coca_params *g,
                              vlm_coca_acts *s, const vlm_tensor *ids, float w_cap, int no_image, int no_text);
/* How many caption targets of ids [B, L] the loss counts (teacher forcing:
 * ids[b, l+1] for l < L-1, the pad id ignored). */
int64_t vlm_coca_caption_targets(const vlm_coca_config *c, const vlm_tensor *ids);

/* Captioning: images [B,3,H,W] -> out [B, o->max_len] token ids (sot first; after
 * EOT, pad_id), lens[b] = ids written up to and including EOT. */
vlm_status vlm_coca_generate(const vlm_coca_config *c, const vlm_coca_params *p, const vlm_tensor *images,
                             const vlm_gen_options *o, int32_t *out, int *lens);
/* ---- training (model/train.c, model/train_ckpt.c) ----
 * open_clip's training step for CLIP: lr from the schedule; zero grads; forward
 * + ClipLoss; backward; global-norm clip (only when grad_clip_norm > 0); AdamW
 * (decoupled decay, no decay for tensors with ndim <= 1 and the positional
 * embeddings); clamp logit_scale to [0, ln 100].
 * A SigLIP model (config has_logit_bias; open_clip's --siglip) trains the same way with
 * SigLIP's sigmoid loss in place of the ClipLoss (each micro-batch's images against all
 * K*B texts, and every rank's, as open_clip's SigLipLoss with accumulation and ranks);
 * logit_bias is a trainable parameter without weight decay (ndim 0, as open_clip's rule),
 * left out of neither tower's LiT lock; logit_scale is clamped as for CLIP.
 * accum_freq K > 1 is open_clip's contrastive accumulation: the features of the
 * K micro-batches are computed without gradients first; then each micro-batch's
 * forward is redone with gradients and its loss takes its fresh features with
 * the cached features of the others, over the whole K*B batch. The tower
 * gradients equal those of one K*B batch; logit_scale receives one gradient per
 * micro-batch (K times the K*B one), as in open_clip.
 * precision BF16: matmul inputs rounded to bf16 (forward and backward), fp32
 * master weights, gradients, moments and accumulation.
 * lock_image / lock_text (LiT): the locked tower's parameters get no update, no
 * moments and no backward pass; its features are computed once per step.
 * CoCa (open_clip's CoCaLoss) takes both too: with K > 1 the caption loss is the
 * mean over the targets of all K micro-batches (each micro-batch's tokens weigh
 * caption_w / n_all), so the tower and decoder gradients equal one K*B batch's;
 * locking freezes "visual." (the attentional pooler included) or "text." (the
 * unimodal text tower; the decoder trains). */
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
  vlm_device device;                /* where parameters, optimizer state and activations live (CPU) */
  int64_t seed;                     /* the run's seed (the loader's order and augmentation), recorded in
                                       train_state for a resume */
} vlm_train_config;
void vlm_train_config_default(vlm_train_config *t);

/* The trainer is one loop over a small model interface (model/train.c:
 * vlm_train_ops — visit the parameter sets, forward + backward one batch, save /
 * load the weights), implemented for CLIP and for CoCa. Schedule, clipping,
 * AdamW, the logit_scale clamp, checkpoints and resume are shared. CoCa trains
 * with open_clip's CoCaLoss (the config's clip_loss_weight / caption_loss_weight). */
typedef struct vlm_train_ops vlm_train_ops;
typedef struct {
  vlm_clip_config model;            /* CLIP; for CoCa: embed_dim, vision and text copied from coca.model */
  vlm_train_config cfg;
  const vlm_train_ops *ops;         /* the model interface (CLIP or CoCa) */
  int is_coca;
  int rank, world;                  /* data parallel (vlm_comm_*, at init): this process's part of the
                                       global batch of world x batch_size (accum_freq 1) */
  vlm_tensor *logit_scale;          /* [] the raw parameter of whichever model */
  struct {
    vlm_coca_config model;
    vlm_coca_params p, g, m, v;     /* as p, g, m, v below, on cfg.device */
    vlm_coca_params host;           /* cfg.device a GPU: a host copy of p (as host below) */
    vlm_coca_acts acts;             /* one batch B, with backward */
  } coca;                           /* is_coca only */
  float last_clip_loss, last_caption_loss; /* CoCa: the unweighted parts of the last step's loss */
  vlm_clip_params p, g, m, v;       /* CLIP: parameters, gradients, exp_avg, exp_avg_sq (one arena each),
                                       on cfg.device */
  vlm_clip_params host;             /* cfg.device a GPU: a host copy of p (init, loading, evaluation) */
  vlm_clip_batch batch;             /* cfg.device a GPU: the step's K*B batch, uploaded once a step (CLIP, CoCa) */
  vlm_param_slot *slots;            /* every parameter in visit order (names owned) */
  int n_slots;
  vlm_param_slot *active;           /* the trainable ones (locked towers left out) */
  int n_active;
  vlm_clip_acts acts;               /* one micro-batch B, with backward */
  vlm_arena arena;                  /* the K*B loss and the feature caches below (CoCa: only when K > 1) */
  vlm_clip_loss_acts loss;          /* over K*B (not laid out for a SigLIP model) */
  vlm_siglip_loss_acts sloss;       /* a SigLIP model (model.has_logit_bias): its loss over K*B */
  vlm_tensor img_all, txt_all;      /* [K*B, E] features (cached, then the fresh micro-batch's rows) */
  vlm_tensor d_img_all, d_txt_all;  /* [K*B, E] */
  int64_t step;                     /* optimizer steps taken */
  int64_t epoch;                    /* current epoch (0-based) */
  int64_t epoch_batches;            /* micro-batches consumed in the current epoch (data position) */
  int64_t epoch_seq;                /* the loader's stream position after them (vlm_batch.seq_end: bad
                                       samples included, so a resume is exact past them); -1: unknown
                                       (a state from before 2026-11-28, or written by several ranks) */
  int64_t loaded_batch_size;        /* vlm_trainer_load: the train_state's micro-batch size, in which its */
  int64_t loaded_accum_freq;        /* epoch_batches counts, and accum-freq (0: no state / not recorded) */
  int64_t loaded_total_steps;       /* the state's run length (its schedule's total_steps; 0: not recorded) */
  int64_t loaded_world;             /* the ranks that wrote it (1: one process, or not recorded) */
  vlm_rng rng;                      /* the run's RNG (saved with checkpoints) */
  /* the last step */
  float last_loss, last_lr;
  double last_grad_norm, last_clip_coef;
} vlm_trainer;

/* Allocate everything for model config c and training config t; parameters zeroed
 * (set them with vlm_clip_params_init_openclip or a load). */
vlm_status vlm_trainer_init(vlm_trainer *tr, const vlm_clip_config *c, const vlm_train_config *t);
/* The same for a CoCa model (parameters zeroed: vlm_coca_params_init_openclip on
 * vlm_trainer_host_coca(tr) then vlm_trainer_upload_params, or a load). */
vlm_status vlm_trainer_init_coca(vlm_trainer *tr, const vlm_coca_config *c, const vlm_train_config *t);
/* The CLIP parameters on the host: tr->p itself when training on the CPU; on a
 * GPU the host copy tr->host, refreshed from the device. */
vlm_clip_params *vlm_trainer_host_params(vlm_trainer *tr);
/* The same for a CoCa trainer: tr->coca.p on the CPU, else tr->coca.host refreshed. */
vlm_coca_params *vlm_trainer_host_coca(vlm_trainer *tr);
/* Where the trainer's parameters, gradients, moments and activations live. */
vlm_device vlm_trainer_device(const vlm_trainer *tr);
/* After the caller changed the host parameters (an initialisation): copy them to
 * the device; nothing to do on the CPU. */
void vlm_trainer_upload_params(vlm_trainer *tr);
/* Fine-tuning from loaded weights: moments zeroed, step / epoch / data position 0. */
void vlm_trainer_reset_optimizer(vlm_trainer *tr);
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
 * model config must match (the caller loads it from the same dir). The state's
 * batch_size / accum_freq / total_steps go to loaded_batch_size / loaded_accum_freq /
 * loaded_total_steps (the caller converts epoch_batches when it trains with another batch
 * size, and keeps the run's length when it is not given a new one). */
vlm_status vlm_trainer_load(vlm_trainer *tr, const char *dir, int *had_state);
/* Ranks (vlm_comm_world() > 1): every rank takes rank 0's parameters (after init or load),
 * so they start, and stay, identical. A no-op in one process. */
vlm_status vlm_trainer_sync_params(vlm_trainer *tr);
/* Save into CK/<name> atomically: written to CK/.tmp-<name>-<pid>, then renamed
 * over (the old one moved aside and removed). */
vlm_status vlm_trainer_save_named(vlm_trainer *tr, const char *ck_dir, const char *name);
/* The "latest" pointer: CK/latest is a symlink to a checkpoint dir in CK, replaced
 * by an atomic rename of a new symlink after that dir is complete. Older
 * latest targets (step_*) not pointed at are removed. */
vlm_status vlm_trainer_save_latest(vlm_trainer *tr, const char *ck_dir);
#endif
