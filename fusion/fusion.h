/* fusion: cross-modal attention — open_clip's cross-attention block
 * (ResidualAttentionBlock with is_cross_attention), the CoCa multimodal text
 * decoder (MultimodalTransformer) and caption generation with a KV cache.
 * Written once over the core op set; names are open_clip's. */
#ifndef VLM_FUSION_H
#define VLM_FUSION_H
#include "core/core.h"
#include "text/text.h"

/* ---------------------------------------------------------------- cross-attention block
 *   x1 = x + out_proj(attn(q = ln_1(x), k = v = ln_1_kv(img)))   (no mask)
 *   y  = x1 + c_proj(act(c_fc(ln_2(x1))))
 * The packed in_proj_weight [3W, W] holds q, k, v rows as in nn.MultiheadAttention.
 * Names: ln_1.*, ln_1_kv.*, attn.in_proj_{weight,bias}, attn.out_proj.*, ln_2.*, mlp.* */
typedef struct {
  vlm_block_params b;              /* ln_1, attn, ln_2, mlp as in the self-attention block */
  vlm_tensor ln_1_kv_w, ln_1_kv_b; /* [W] */
} vlm_cross_params;

typedef struct {
  vlm_tensor ln_1;                 /* [B, L, W] */
  vlm_tensor ln_1_mean, ln_1_rstd; /* [B*L] */
  vlm_tensor kvn;                  /* [B, N, W] ln_1_kv(img) */
  vlm_tensor kvn_mean, kvn_rstd;   /* [B*N] */
  vlm_tensor q;                    /* [B, L, W] */
  vlm_tensor kv;                   /* [B, N, 2W] keys then values */
  vlm_tensor probs;                /* [B, H, L, N] */
  vlm_tensor attn;                 /* [B, L, W] */
  vlm_tensor x1;                   /* [B, L, W] */
  vlm_tensor ln_2;                 /* [B, L, W] */
  vlm_tensor ln_2_mean, ln_2_rstd; /* [B*L] */
  vlm_tensor fc, act;              /* [B, L, M] */
} vlm_cross_acts;

typedef struct {
  vlm_tensor d_ln, d_attn, d_x1, d_q; /* [B, L, W] */
  vlm_tensor d_kv;                    /* [B, N, 2W] */
  vlm_tensor d_kvn;                   /* [B, N, W] */
  vlm_tensor d_act, d_fc;             /* [B, L, M] */
} vlm_cross_scratch;

void vlm_cross_params_layout(vlm_cross_params *p, vlm_arena *a, const vlm_block_config *c);
void vlm_cross_params_visit_prefixed(vlm_cross_params *p, const char *prefix, vlm_param_visit_fn fn, void *ctx);
/* N = image tokens. with_probs = 0: inference (no probs saved). */
void vlm_cross_acts_layout(vlm_cross_acts *s, vlm_arena *a, const vlm_block_config *c, int64_t B, int64_t L,
                           int64_t N, int with_probs);
void vlm_cross_scratch_layout(vlm_cross_scratch *s, vlm_arena *a, const vlm_block_config *c, int64_t B, int64_t L,
                              int64_t N);
/* kv [B,N,2W] = ln_1_kv(img) @ W_kv^T + b_kv (kvn, mean, rstd saved when not NULL). */
void vlm_cross_kv(const vlm_block_config *c, const vlm_cross_params *p, vlm_tensor *kv, vlm_tensor *kvn,
                  vlm_tensor *mean, vlm_tensor *rstd, const vlm_tensor *img);
/* y [B,L,W] from x [B,L,W] and img [B,N,W]; y must not alias x. */
void vlm_cross_forward(const vlm_block_config *c, const vlm_cross_params *p, vlm_cross_acts *s, vlm_tensor *y,
                       const vlm_tensor *x, const vlm_tensor *img);
/* Accumulates into dx, d_img (may be NULL) and g. */
void vlm_cross_backward(const vlm_block_config *c, const vlm_cross_params *p, vlm_cross_params *g,
                        const vlm_cross_acts *s, vlm_cross_scratch *scr, vlm_tensor *dx, vlm_tensor *d_img,
                        const vlm_tensor *dy, const vlm_tensor *x, const vlm_tensor *img);

/* ---------------------------------------------------------------- multimodal decoder
 * Per layer: causal self-attention block (resblocks.i), then the cross block
 * (cross_attn.i) over the image tokens; then ln_final and @ text_projection
 * [W, V] -> logits [B, L, V]. Names relative to "text_decoder.". */
typedef struct {
  int64_t width, heads, layers, mlp_width;
  int64_t context_length;  /* multimodal_cfg.context_length: the longest text */
  int64_t vocab_size;      /* V: the output size (text_cfg.vocab_size) */
  vlm_act act;
  float ln_eps;
} vlm_decoder_config;

vlm_block_config vlm_decoder_block_config(const vlm_decoder_config *c);

typedef struct {
  vlm_block_params *self;           /* [layers] resblocks */
  vlm_cross_params *cross;          /* [layers] cross_attn */
  vlm_tensor ln_final_w, ln_final_b; /* [W] */
  vlm_tensor proj;                  /* [W, V] text_projection */
} vlm_decoder_params;

vlm_status vlm_decoder_params_alloc(vlm_decoder_params *p, const vlm_decoder_config *c);
void vlm_decoder_params_free(vlm_decoder_params *p);
void vlm_decoder_params_layout(vlm_decoder_params *p, vlm_arena *a, const vlm_decoder_config *c);
void vlm_decoder_params_visit(vlm_decoder_params *p, const vlm_decoder_config *c, const char *prefix,
                              vlm_param_visit_fn fn, void *ctx);

typedef struct {
  int64_t B, L, N;
  vlm_tensor *xs;                  /* [2 layers + 1] of [B, L, W]: xs[0] the text tokens (input),
                                      xs[2i+1] after self block i, xs[2i+2] after cross block i
                                      (inference: three buffers, xs[0] kept) */
  vlm_block_acts *self;            /* [layers] */
  vlm_cross_acts *cross;           /* [layers] */
  vlm_tensor ln_final;             /* [B, L, W] */
  vlm_tensor ln_mean, ln_rstd;     /* [B*L] */
  vlm_tensor logits;               /* [B, L, V] */
  vlm_block_scratch bscr;
  vlm_cross_scratch cscr;
  vlm_tensor dx_a, dx_b;           /* [B, L, W] */
  vlm_tensor d_ln;                 /* [B, L, W] */
  int with_backward;
} vlm_decoder_acts;

vlm_status vlm_decoder_acts_alloc(vlm_decoder_acts *s, const vlm_decoder_config *c);
void vlm_decoder_acts_free(vlm_decoder_acts *s);
void vlm_decoder_acts_layout(vlm_decoder_acts *s, vlm_arena *a, const vlm_decoder_config *c, int64_t B, int64_t L,
                             int64_t N, int with_backward);
/* s->xs[0] [B,L,W] must hold the text token states; img [B,N,W]. Result: s->logits. */
void vlm_decoder_forward(const vlm_decoder_config *c, const vlm_decoder_params *p, vlm_decoder_acts *s,
                         const vlm_tensor *img);
/* d_logits [B,L,V] -> d_text [B,L,W] (+=, may be NULL), d_img [B,N,W] (+=, may be NULL), g (+=). */
void vlm_decoder_backward(const vlm_decoder_config *c, const vlm_decoder_params *p, vlm_decoder_params *g,
                          vlm_decoder_acts *s, const vlm_tensor *img, const vlm_tensor *d_logits, vlm_tensor *d_text,
                          vlm_tensor *d_img);

/* ---------------------------------------------------------------- generation (fusion/generate.c)
 * Decoding options, as open_clip's generate / Hugging Face's processors:
 *   greedy (default), beam search (beams > 1; length_penalty on the
 *   finished hypotheses' sum of log-probs / length^penalty), sampling with top-k,
 *   top-p (nucleus) and temperature; repetition penalty (HF: logit / p if > 0 else
 *   * p for every id already in the sequence); min_len (EOT forbidden before) and
 *   max_len (greedy / sampling: EOT forced at the last position, as open_clip; beam
 *   search: Hugging Face's finalize, EOT appended to hypotheses shorter than max_len);
 *   a greedy / sampled row stops at EOT or the pad id (open_clip's rule). Beam search
 *   is one beam group with log-softmax scores (HF's BeamSearchScorer). */
typedef struct {
  int beams;               /* > 1: beam search */
  int top_k;               /* > 0: sample from the k best */
  float top_p;             /* > 0: sample from the nucleus (1: the whole distribution);
                              top_k and top_p both 0 and beams 1: greedy */
  float temperature;       /* sampling; 1 */
  float repetition_penalty; /* 1: off */
  float length_penalty;    /* beam search; 1 */
  int min_len, max_len;    /* generated tokens including sot and eot (open_clip's seq_len) */
  int64_t sot_id, eot_id, pad_id;
  uint64_t seed;           /* sampling: row b draws from stream (seed, first_row + b) */
  uint64_t first_row;      /* so a caption does not depend on how images are batched */
  int use_cache;           /* 1: KV cache; 0: re-run the whole prefix every step (reference) */
  int64_t n_ids;           /* > 0: only ids below it are generated (the tokenizer's vocabulary when it
                              is smaller than the model's); 0: every id of the model */
} vlm_gen_options;

void vlm_gen_options_default(vlm_gen_options *o);
/* Check the options against the model (lengths within both context lengths, ids in
 * the vocabulary, probabilities in range): VLM_ERR_ARG with a message. */
vlm_status vlm_gen_options_check(const vlm_gen_options *o, const vlm_text_config *tc, const vlm_decoder_config *dc);

/* Captions for B images from their tokens img [B,N,W] (the CoCa image tower's
 * output): the text tower (cls omitted: causal states do not see it) and the
 * decoder run one position per step with KV caches (o->use_cache) — the image
 * keys/values of every cross-attention layer computed once — or, as open_clip
 * does, over the whole prefix every step. out [B, o->max_len] (sot first, pad_id
 * after the end), lens[b] = ids up to and including EOT. */
vlm_status vlm_generate(const vlm_text_config *tc, const vlm_text_params *tp, const vlm_decoder_config *dc,
                        const vlm_decoder_params *dp, const vlm_tensor *img, const vlm_gen_options *o, int32_t *out,
                        int *lens);
#endif
