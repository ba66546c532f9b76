/* model/encode: CLIP inference for the user's tools (zero-shot, index, search,
 * the C API): a loaded model with its tokenizer and inference-only activations,
 * embedding batches of images and texts into L2-normalized features.
 *
 * The tokenizer is found, in order: the explicit path; MODEL/tokenizer/
 * (vocab.json + merges.txt); MODEL/vocab.json + merges.txt (a Hugging Face
 * download); MODEL/../../tokenizer/ (a `vlm train` checkpoint, RUN/checkpoints/NAME,
 * whose run keeps its tokenizer in RUN/tokenizer/); MODEL/bpe_simple_vocab_16e6.txt(.gz). MODEL is the model directory
 * (or the directory of a config-file path). Texts are tokenized as open_clip does
 * (sot + BPE + eot, truncated to the context length, pad id 0) and run at the
 * batch's longest length: the text tower is causal and pools at the EOT token,
 * so the padding beyond it does not change the features. CoCa models (open_clip
 * checkpoints with multimodal_cfg) embed with their contrastive towers; their text
 * runs at the full context length, as open_clip (the cls token's key is masked
 * depending on the last position, so the padding matters there). The identity is
 * "coca-" + the hash.
 *
 * Not thread-safe: one encoder per thread. */
#ifndef VLM_MODEL_ENCODE_H
#define VLM_MODEL_ENCODE_H
#include "datasets/datasets.h"
#include "model/model.h"

typedef struct {
  vlm_clip_config cfg;
  vlm_clip_params params;
  vlm_clip_params params_bf16;   /* VLM_ENC_BF16: BF16 matmul weights (shares the rest with params, whose F32 matrices it gave back) */
  const vlm_clip_params *run;    /* the parameters the forward uses (CLIP) */
  /* CoCa (a config with multimodal_cfg): its contrastive towers embed (the image
   * feature of the attentional pooler, the text feature at the cls token); cfg holds
   * its embed_dim / vision / text so the accessors read the same fields. */
  int coca;
  vlm_coca_config ccfg;
  vlm_coca_params cparams, cparams_bf16;
  const vlm_coca_params *crun;
  /* VLM_ENC_CUDA: the weights (fp32; bf16 is the matmul precision there), the
   * activations and the input batch on the GPU; params / cparams (the host copy
   * the identity is hashed from) are freed after the upload. */
  vlm_device dev;
  vlm_precision prec;            /* the matmul precision its forwards run at (VLM_ENC_BF16: BF16) */
  vlm_clip_params dparams;
  vlm_coca_params dcparams;
  vlm_arena iarena;              /* dev != CPU: dimg [max_batch,3,S,S] F32, dids [max_batch, ctx] I32 */
  vlm_tensor dimg, dids;
  vlm_attn_pool_acts pacts;      /* laid out in varena after vacts */
  vlm_ckpt_format fmt;
  vlm_tokenizer *tok;            /* NULL until a tokenizer is loaded */
  char tokenizer_path[4096];     /* where it was found ("" if none) */
  char identity[40];             /* "clip-" + 16 hex digits: hash of the config and every weight */
  vlm_preprocess_cfg pre;        /* open_clip's eval preprocessing at the model's image size */
  int64_t max_batch;
  vlm_vit_acts vacts;  vlm_arena varena;  int64_t vB;       /* vB: batch laid out now (0: none) */
  vlm_text_acts tacts; vlm_arena tarena;  int64_t tB, tL;
  int32_t *ids;                  /* [max_batch, ctx] */
  float *feat;                   /* [max_batch, E] scratch */
} vlm_encoder;

#define VLM_ENC_TEXT 1           /* load a tokenizer now (an error if none is found) */
#define VLM_ENC_TEXT_IF_FOUND 2  /* load the tokenizer beside the model if there is one */
#define VLM_ENC_BF16 4           /* bf16 matmuls (f32 accumulation), weights converted once; the
                                    encoder's calls run at VLM_PREC_BF16 and restore the calling
                                    thread's precision after (other models keep theirs) */
#define VLM_ENC_CUDA 8           /* run on the GPU (an error when none is usable): each batch is
                                    uploaded, its features come back; bf16 there rounds the fp32
                                    weights per matmul, as training does */
/* The tokenizer beside model_path by the search above (without the explicit
 * path) into out[n]: 1 when found, 0 when there is none, -1 (message set) when the
 * path found does not fit in n bytes or memory runs out. */
int vlm_find_tokenizer(const char *model_path, char *out, size_t n);
/* The eval transform of a model's images: its config's image size, mean, std and resize mode
 * (open_clip's preprocess_cfg; OpenAI's and "shortest" when it names none). */
void vlm_vit_preprocess_cfg(const vlm_vit_config *v, vlm_preprocess_cfg *pre);
/* Load the model at model_path (see vlm_clip_load); tokenizer may be NULL (search
 * as above). max_batch bounds each forward pass (activations sized for it). */
vlm_status vlm_encoder_open(vlm_encoder *e, const char *model_path, const char *tokenizer, int64_t max_batch,
                            int flags);
void vlm_encoder_close(vlm_encoder *e);
int64_t vlm_encoder_dim(const vlm_encoder *e);          /* E */
int vlm_encoder_image_size(const vlm_encoder *e);       /* S */
/* Set the calling thread's matmul precision to the encoder's (e->prec) and return
 * the previous one, which the caller restores (vlm_set_matmul_precision) when done.
 * The vlm_encoder_* compute calls below do this themselves; other code running the
 * encoder's weights (CoCa generation over e->crun) wraps its calls with it. */
vlm_precision vlm_encoder_precision_enter(const vlm_encoder *e);
/* pixels [n,3,S,S] preprocessed -> out [n,E] unit rows. */
vlm_status vlm_encoder_images(vlm_encoder *e, const float *pixels, int64_t n, float *out);
/* texts -> out [n,E] unit rows (needs the tokenizer). */
vlm_status vlm_encoder_texts(vlm_encoder *e, const char *const *texts, int64_t n, float *out);
/* Token ids [n, L] (L <= context length, ids in [0, vocab)) -> out [n,E] unit rows. */
vlm_status vlm_encoder_ids(vlm_encoder *e, const int32_t *ids, int64_t n, int64_t L, float *out);
/* The vlm_text_encode_fn for vlm_zeroshot_classifier (ctx = the encoder). */
vlm_status vlm_encoder_text_cb(void *ctx, const char *const *texts, int n, float *out);
#endif
