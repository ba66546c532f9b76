/* bench_gpu: CLIP ViT-B/32 on the GPU.
 *
 *   bf16 GEMM rate: an N^3 (default 8192) bf16 x bf16 -> f32 matmul through
 *     vlm_matmul_forward (cuBLASLt), median of timed calls: the "peak" that
 *     model FLOPs utilization is measured against.
 *   Training step at batch B (default 256), context 77: zero grads, forward,
 *     loss, backward, AdamW over all parameters, logit_scale clamp; bf16
 *     matmul inputs, fp32 master weights, optimizer state and everything else.
 *   Image encoding at batch B (ViT forward only, bf16 weight matrices converted
 *     once, bf16 matmul inputs).
 * Model FLOPs per sample are counted from the config (matmuls and attention,
 * 2 FLOPs per multiply-add; a training step is 3x the forward), so MFU =
 * samples/s * FLOPs per sample / the measured bf16 GEMM rate. Training runs
 * each tower's last block for the pooled rows only, so it also prints MFU over
 * the FLOPs it runs (lower); the whole model's count is the one both sides share.
 * Prints "VLM key value" lines (for tests/gpu/run.sh) after the human-readable ones.
 * Usage: bench_gpu [--batch B] [--steps N] [--gemm N] [--quick] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda/cuda.h"
#include "model/model.h"

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

/* Forward FLOPs per sample of one tower's blocks: T tokens of width W, MLP M. */
static double blocks_flops(int64_t layers, int64_t T, int64_t W, int64_t M) {
  double per = 2.0 * T * W * (3.0 * W + W + 2.0 * M) + 2.0 * 2.0 * T * T * W;
  return per * (double)layers;
}

/* The forward FLOPs per sample that the pooled-rows last block does not run
 * (vlm_block_forward_rows: keys and values over all T tokens, the query,
 * attention, out_proj and MLP for the pooled token alone). */
static double last_block_saving(int64_t layers, int64_t T, int64_t W, int64_t M) {
  if (layers < 1) return 0;
  double rows = 2.0 * T * W * 2.0 * W + 2.0 * W * (W + W + 2.0 * M) + 2.0 * 2.0 * T * W;
  return blocks_flops(1, T, W, M) - rows;
}

/* Training runs each tower's last block for the pooled rows only: the forward
 * FLOPs per sample it skips (the backward skips twice as many). */
static double clip_rows_saving(const vlm_clip_config *c, int64_t L) {
  const vlm_vit_config *v = &c->vision;
  int64_t G = v->image_size / v->patch_size, T = G * G + 1;
  return last_block_saving(v->layers, T, v->width, v->mlp_width) +
         last_block_saving(c->text.layers, L, c->text.width, c->text.mlp_width);
}

static double clip_forward_flops(const vlm_clip_config *c, int64_t L, double *vision_only) {
  const vlm_vit_config *v = &c->vision;
  int64_t G = v->image_size / v->patch_size, T = G * G + 1;
  double fv = 2.0 * G * G * 3.0 * v->patch_size * v->patch_size * v->width + blocks_flops(v->layers, T, v->width, v->mlp_width) +
              2.0 * v->width * c->embed_dim;
  const vlm_text_config *t = &c->text;
  double ft = blocks_flops(t->layers, L, t->width, t->mlp_width) + 2.0 * t->width * c->embed_dim;
  if (vision_only) *vision_only = fv;
  return fv + ft;
}

/* (visit's names live only during the callback: copied) */
typedef struct { vlm_tensor *t[1024]; char name[1024][160]; int n; } tlist;
static void collect(void *ctx, const char *name, vlm_tensor *t) {
  tlist *l = ctx;
  if (l->n < 1024) {
    l->t[l->n] = t;
    snprintf(l->name[l->n], sizeof l->name[0], "%s", name);
    l->n++;
  }
}

static void fill_batch(float *img, int64_t nimg, int64_t *ids, int64_t B, int64_t L, int64_t V) {
  vlm_rng r;
  vlm_rng_seed(&r, 7);
  vlm_rng_fill_normal(&r, img, (size_t)nimg, 0.0f, 1.0f);
  for (int64_t b = 0; b < B; b++) {
    int64_t len = 5 + (int64_t)vlm_rng_below(&r, (uint64_t)(L - 6));
    for (int64_t l = 0; l < L; l++) {
      int64_t id = 0;
      if (l == 0) id = V - 2;
      else if (l < len) id = 1 + (int64_t)vlm_rng_below(&r, (uint64_t)(V - 3));
      else if (l == len) id = V - 1;
      ids[b * L + l] = id;
    }
  }
}

int main(int argc, char **argv) {
  int64_t B = 256, steps = 10, gemm_n = 8192;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--gemm") && i + 1 < argc) gemm_n = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--quick")) { steps = 5; gemm_n = 4096; }
    else {
      fprintf(stderr, "usage: bench_gpu [--batch B] [--steps N] [--gemm N] [--quick]\n");
      return 2;
    }
  }
  if (B < 2 || steps < 1 || gemm_n < 256) {
    fprintf(stderr, "bench_gpu: bad arguments\n");
    return 2;
  }
  if (!vlm_cuda_available()) {
    printf("bench_gpu: no CUDA GPU: skipped (%s)\n", vlm_cuda_describe());
    return 0;
  }
  printf("bench_gpu: %s\n", vlm_cuda_describe());
  fflush(stdout);

  /* ---------------------------------------------------------------- bf16 GEMM rate */
  double gemm_tflops = 0;
  {
    int64_t N = gemm_n;
    vlm_arena a;
    if (vlm_arena_init(&a, (size_t)N * N * (2 + 2 + 4) + 4096, VLM_CUDA) != VLM_OK) {
      fprintf(stderr, "bench_gpu: %s\n", vlm_last_error());
      return 1;
    }
    vlm_tensor x = vlm_arena_tensor2(&a, VLM_BF16, N, N), w = vlm_arena_tensor2(&a, VLM_BF16, N, N);
    vlm_tensor o = vlm_arena_tensor2(&a, VLM_F32, N, N);
    vlm_fill(&x, 0.01f);
    vlm_fill(&w, 0.02f);
    double t[16];
    for (int r = 0; r < 12; r++) {
      vlm_cuda_sync("gemm");
      double t0 = vlm_now();
      for (int k = 0; k < 5; k++) vlm_matmul_forward(&o, &x, &w, NULL, 0, 1);
      vlm_cuda_sync("gemm");
      t[r] = (vlm_now() - t0) / 5;
    }
    qsort(t + 2, 10, sizeof(double), cmp_double);
    gemm_tflops = 2.0 * N * N * N / t[2 + 5] / 1e12;
    printf("  bf16 GEMM %lld^3 (cuBLASLt, f32 out)            %8.1f TFLOP/s\n", (long long)N, gemm_tflops);
    vlm_arena_free(&a);
  }

  /* ---------------------------------------------------------------- model */
  vlm_clip_config c;
  if (vlm_clip_config_builtin(&c, "ViT-B-32") != VLM_OK) {
    fprintf(stderr, "bench_gpu: %s\n", vlm_last_error());
    return 1;
  }
  int64_t L = c.text.context_length, S = c.vision.image_size;
  vlm_clip_params ph, pd, gd, md, vd;
  double t0 = vlm_now();
  if (vlm_clip_params_init(&ph, &c) != VLM_OK) { fprintf(stderr, "bench_gpu: %s\n", vlm_last_error()); return 1; }
  vlm_clip_params_init_openclip(&ph, &c, 1);
  if (vlm_clip_params_to_device(&pd, &ph, &c, VLM_CUDA) != VLM_OK || vlm_clip_params_init_on(&gd, &c, VLM_CUDA) != VLM_OK ||
      vlm_clip_params_init_on(&md, &c, VLM_CUDA) != VLM_OK || vlm_clip_params_init_on(&vd, &c, VLM_CUDA) != VLM_OK) {
    fprintf(stderr, "bench_gpu: %s\n", vlm_last_error());
    return 1;
  }
  int64_t np = vlm_clip_params_count(&ph, &c, NULL, NULL);
  printf("  ViT-B-32: %.1f M parameters (init + upload %.1f s)\n", np / 1e6, vlm_now() - t0);

  /* batch */
  float *img = malloc(sizeof(float) * (size_t)(B * 3 * S * S));
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)(B * L));
  if (!img || !ids) { fprintf(stderr, "bench_gpu: out of memory\n"); return 1; }
  fill_batch(img, B * 3 * S * S, ids, B, L, c.text.vocab_size);
  int64_t si[4] = {B, 3, S, S}, st[2] = {B, L};
  vlm_tensor himg = vlm_tensor_make(img, VLM_F32, VLM_CPU, 4, si), hids = vlm_tensor_make(ids, VLM_I64, VLM_CPU, 2, st);
  vlm_clip_batch batch;
  if (vlm_clip_batch_init_on(&batch, &c, B, L, VLM_I64, VLM_CUDA) != VLM_OK) {
    fprintf(stderr, "bench_gpu: %s\n", vlm_last_error());
    return 1;
  }
  vlm_clip_batch_upload(&batch, &himg, &hids);

  double fwd_flops, vis_flops;
  fwd_flops = clip_forward_flops(&c, L, &vis_flops);

  /* ---------------------------------------------------------------- training step */
  vlm_set_matmul_precision(VLM_PREC_BF16);
  double train_sps = 0, train_mfu = 0, train_mfu_run = 0, loss_first = 0, loss_last = 0;
  double run_flops = fwd_flops - clip_rows_saving(&c, L);
  int64_t G = c.vision.image_size / c.vision.patch_size;
  double vis_run_flops =  /* the encoding runs the last block at the class token too */
      vis_flops - last_block_saving(c.vision.layers, G * G + 1, c.vision.width, c.vision.mlp_width);
  {
    vlm_clip_acts s;
    if (vlm_clip_acts_init_on(&s, &c, B, L, 1, VLM_CUDA) != VLM_OK) {
      fprintf(stderr, "bench_gpu: training activations: %s\n", vlm_last_error());
      return 1;
    }
    printf("  training activations: %.2f GB on the GPU\n", s.arena.capacity / 1e9);
    static tlist lp, lg, lm, lv;
    vlm_clip_params_visit(&pd, &c, collect, &lp);
    vlm_clip_params_visit(&gd, &c, collect, &lg);
    vlm_clip_params_visit(&md, &c, collect, &lm);
    vlm_clip_params_visit(&vd, &c, collect, &lv);
    vlm_param_slot *slots = calloc((size_t)lp.n, sizeof *slots);
    for (int i = 0; i < lp.n; i++) {
      int decay = lp.t[i]->ndim >= 2 && !strstr(lp.name[i], "embedding") && !strstr(lp.name[i], "class_embedding");
      slots[i] = (vlm_param_slot){lp.name[i], lp.t[i], lg.t[i], lm.t[i], lv.t[i], decay};
    }
    vlm_adamw_config ac = {0.9f, 0.98f, 1e-6f, 0.2f};
    int64_t warm = 2;
    double tstart = 0;
    for (int64_t it = 0; it < warm + steps; it++) {
      if (it == warm) {
        vlm_cuda_sync("train warm-up");
        tstart = vlm_now();
      }
      vlm_clip_params_zero(&gd);
      float loss = vlm_clip_forward(&c, &pd, &s, &batch.images, &batch.ids);
      vlm_clip_backward(&c, &pd, &gd, &s, &batch.ids);
      vlm_adamw_step(slots, lp.n, &ac, 5e-4f, it + 1);
      vlm_clip_logit_scale_clamp(&pd.logit_scale);
      if (it == 0) loss_first = loss;
      loss_last = loss;
    }
    vlm_cuda_sync("train");
    double dt = vlm_now() - tstart;
    train_sps = (double)(B * steps) / dt;
    train_mfu = train_sps * 3.0 * fwd_flops / (gemm_tflops * 1e12);
    train_mfu_run = train_sps * 3.0 * run_flops / (gemm_tflops * 1e12);
    printf("  training step, batch %lld, bf16 matmuls      %8.1f samples/s (%.1f ms/step)\n", (long long)B, train_sps,
           dt / steps * 1e3);
    printf("  model FLOPs utilization (vs bf16 GEMM)        %8.1f %%  (%.1f GFLOP/sample, the whole model)\n",
           train_mfu * 100, 3.0 * fwd_flops / 1e9);
    printf("  the same over the FLOPs run                   %8.1f %%  (%.1f GFLOP/sample: last blocks at the pooled rows)\n",
           train_mfu_run * 100, 3.0 * run_flops / 1e9);
    printf("  loss: first step %.4f, last step %.4f (ln B = %.4f)\n", loss_first, loss_last, log((double)B));
    /* One more step, phase by phase (a sync after each): where the time goes. */
    {
      double tp[8];
      const char *names[8] = {"zero grads", "vision forward", "text forward", "loss forward", "loss backward",
                              "text backward", "vision backward", "AdamW"};
      vlm_cuda_sync("breakdown");
      double t = vlm_now();
#define PHASE(k, call) do { call; vlm_cuda_sync(names[k]); double n_ = vlm_now(); tp[k] = n_ - t; t = n_; } while (0)
      PHASE(0, vlm_clip_params_zero(&gd));
      PHASE(1, vlm_vit_forward(&c.vision, &pd.visual, &s.visual, &batch.images));
      PHASE(2, vlm_text_forward(&c.text, &pd.text, &s.text, &batch.ids));
      PHASE(3, vlm_clip_loss_forward(&s.loss, &s.visual.features, &s.text.features, &pd.logit_scale));
      PHASE(4, (vlm_zero(&s.d_img_feat), vlm_zero(&s.d_txt_feat),
                vlm_clip_loss_backward(&s.loss, 1.0f, &s.visual.features, &s.text.features, &s.d_img_feat,
                                       &s.d_txt_feat, &gd.logit_scale)));
      PHASE(5, vlm_text_backward(&c.text, &pd.text, &gd.text, &s.text, &batch.ids, &s.d_txt_feat));
      PHASE(6, vlm_vit_backward(&c.vision, &pd.visual, &gd.visual, &s.visual, &s.d_img_feat));
      PHASE(7, vlm_adamw_step(slots, lp.n, &ac, 5e-4f, warm + steps + 1));
#undef PHASE
      double tot = 0;
      for (int k = 0; k < 8; k++) tot += tp[k];
      printf("  one step by phase (synchronized, %.1f ms):", tot * 1e3);
      for (int k = 0; k < 8; k++) printf(" %s %.1f ms;", names[k], tp[k] * 1e3);
      printf("\n");
    }
    /* The ops of one vision block at this batch (bf16 matmuls), each timed alone. */
    {
      vlm_block_acts *a = &s.visual.blocks[0];
      vlm_block_scratch *sc = &s.visual.scratch;
      vlm_block_params *bp = &pd.visual.blocks[0], *bg = &gd.visual.blocks[0];
      const vlm_tensor *x = &s.visual.xs[0];
      int64_t W = c.vision.width;
      int Hh = (int)c.vision.heads;
      float sc_att = 1.0f / sqrtf((float)(W / Hh));
      vlm_tensor q = vlm_narrow(&a->qkv, 2, 0, W), k = vlm_narrow(&a->qkv, 2, W, W), v = vlm_narrow(&a->qkv, 2, 2 * W, W);
      vlm_tensor dq = vlm_narrow(&sc->d_qkv, 2, 0, W), dk = vlm_narrow(&sc->d_qkv, 2, W, W);
      vlm_tensor dv = vlm_narrow(&sc->d_qkv, 2, 2 * W, W);
      double tb[12];
      const char *nb[12] = {"layernorm fwd", "layernorm bwd", "qkv matmul fwd", "qkv matmul bwd", "attention fwd",
                            "attention bwd", "fc matmul fwd", "fc matmul bwd", "gelu fwd", "gelu bwd",
                            "d_qkv zero + attention bwd", "attention bwd (set, as trained)"};
#define TIMED(k, call) do { call; /* warm-up: plans, scratch */ vlm_cuda_sync(nb[k]); double t_ = vlm_now(); for (int r_ = 0; r_ < 5; r_++) { call; } \
                            vlm_cuda_sync(nb[k]); tb[k] = (vlm_now() - t_) / 5; } while (0)
      TIMED(0, vlm_layernorm_forward(&a->ln_1, &a->ln_1_mean, &a->ln_1_rstd, x, &bp->ln_1_w, &bp->ln_1_b, 1e-5f));
      TIMED(1, vlm_layernorm_backward(&sc->d_ln, &bg->ln_1_w, &bg->ln_1_b, &sc->d_attn, x, &bp->ln_1_w, &a->ln_1_mean,
                                      &a->ln_1_rstd));
      TIMED(2, vlm_matmul_forward(&a->qkv, &a->ln_1, &bp->in_proj_w, &bp->in_proj_b, 0, 1));
      TIMED(3, vlm_matmul_backward(&sc->d_ln, &bg->in_proj_w, &bg->in_proj_b, &sc->d_qkv, &a->ln_1, &bp->in_proj_w, 0, 1));
      TIMED(4, vlm_attention_forward(&a->attn, &a->probs, &q, &k, &v, Hh, NULL, 0, sc_att));
      TIMED(5, vlm_attention_backward(&dq, &dk, &dv, &sc->d_attn, &a->probs, &q, &k, &v, Hh, sc_att));
      TIMED(6, vlm_matmul_forward(&a->fc, &a->ln_2, &bp->fc_w, &bp->fc_b, 0, 1));
      TIMED(7, vlm_matmul_backward(&sc->d_ln, &bg->fc_w, &bg->fc_b, &sc->d_fc, &a->ln_2, &bp->fc_w, 0, 1));
      TIMED(8, vlm_act_forward(c.vision.act, &a->act, &a->fc));
      TIMED(9, vlm_act_backward(c.vision.act, &sc->d_fc, &sc->d_act, &a->fc));
      /* what the training block runs: zero + accumulate before, the "set" form now */
      TIMED(10, (vlm_zero(&sc->d_qkv), vlm_attention_backward(&dq, &dk, &dv, &sc->d_attn, &a->probs, &q, &k, &v, Hh,
                                                               sc_att)));
      TIMED(11, vlm_cuda_attention_backward_set(&dq, &dk, &dv, &sc->d_attn, &a->probs, &q, &k, &v, Hh, sc_att));
      printf("  one vision block's ops at batch %lld (ms per call):", (long long)B);
      for (int k2 = 0; k2 < 12; k2++) printf("%s %s %.2f", k2 % 5 ? ";" : "\n   ", nb[k2], tb[k2] * 1e3);
      printf("\n");
      /* the text block's causal attention (L 77) */
      vlm_block_acts *ta = &s.text.blocks[0];
      vlm_block_scratch *ts = &s.text.scratch;
      int64_t TW = c.text.width;
      int TH = (int)c.text.heads;
      float tsc = 1.0f / sqrtf((float)(TW / TH));
      vlm_tensor tq = vlm_narrow(&ta->qkv, 2, 0, TW), tk = vlm_narrow(&ta->qkv, 2, TW, TW), tv = vlm_narrow(&ta->qkv, 2, 2 * TW, TW);
      vlm_tensor tdq = vlm_narrow(&ts->d_qkv, 2, 0, TW), tdk = vlm_narrow(&ts->d_qkv, 2, TW, TW);
      vlm_tensor tdv = vlm_narrow(&ts->d_qkv, 2, 2 * TW, TW);
      int64_t TL = ta->qkv.shape[1];
      int64_t ps4[4] = {B, TH, TL, TL}, as3[3] = {B, TL, TW};
      vlm_tensor tprobs = vlm_tensor_make(ta->probs.data, VLM_F32, VLM_CUDA, 4, ps4);
      vlm_tensor tattn = vlm_tensor_make(ta->attn.data, VLM_F32, VLM_CUDA, 3, as3);
      vlm_tensor tdattn = vlm_tensor_make(ts->d_attn.data, VLM_F32, VLM_CUDA, 3, as3);
      TIMED(0, vlm_attention_forward(&tattn, &tprobs, &tq, &tk, &tv, TH, NULL, 1, tsc));
      TIMED(1, vlm_attention_backward(&tdq, &tdk, &tdv, &tdattn, &tprobs, &tq, &tk, &tv, TH, tsc));
      printf("  one text block's causal attention at batch %lld, L %lld (ms per call): fwd %.2f; bwd %.2f\n",
             (long long)B, (long long)TL, tb[0] * 1e3, tb[1] * 1e3);
#undef TIMED
    }
    free(slots);
    vlm_clip_acts_free(&s);
  }

  /* ---------------------------------------------------------------- image encoding */
  double enc_sps = 0;
  {
    vlm_vit_acts va;
    vlm_arena m, a;
    if (vlm_vit_acts_alloc(&va, &c.vision) != VLM_OK) { fprintf(stderr, "bench_gpu: %s\n", vlm_last_error()); return 1; }
    vlm_arena_measure(&m, VLM_CUDA);
    vlm_vit_acts_layout(&va, &m, &c.vision, B, 0);
    if (vlm_arena_init(&a, m.used, VLM_CUDA) != VLM_OK) { fprintf(stderr, "bench_gpu: %s\n", vlm_last_error()); return 1; }
    vlm_vit_acts_layout(&va, &a, &c.vision, B, 0);
    int reps = (int)steps * 2;
    vlm_clip_params hb; /* bf16 weight matrices converted once (as vlm forward --precision bf16) */
    if (vlm_clip_params_bf16(&hb, &pd, &c, 0) != VLM_OK) { fprintf(stderr, "bench_gpu: %s\n", vlm_last_error()); return 1; }
    for (int it = 0; it < 2; it++) vlm_vit_forward(&c.vision, &hb.visual, &va, &batch.images);
    vlm_cuda_sync("encode warm-up");
    double ts = vlm_now();
    for (int it = 0; it < reps; it++) vlm_vit_forward(&c.vision, &hb.visual, &va, &batch.images);
    vlm_cuda_sync("encode");
    double dt = vlm_now() - ts;
    enc_sps = (double)(B * reps) / dt;
    printf("  image encoding, batch %lld, bf16 matmuls     %8.1f images/s (%.1f ms/batch, MFU %.1f %% of FLOPs run)\n",
           (long long)B, enc_sps, dt / reps * 1e3, enc_sps * vis_run_flops / (gemm_tflops * 1e12) * 100);
    /* One vision block's inference ops at this batch (bf16 weights and matmuls), each
     * timed alone, as block_forward_inference runs them; then the f32-qkv forms. */
    {
      vlm_block_acts *ba = &va.blocks[0];
      vlm_block_params *bp = &hb.visual.blocks[0];
      const vlm_tensor *x = &va.xs[0];
      vlm_tensor *y = &va.xs[1];
      int64_t W = c.vision.width;
      int Hh = (int)c.vision.heads;
      float sc_att = 1.0f / sqrtf((float)(W / Hh));
#define BF(t) vlm_tensor_make((t).data, VLM_BF16, (t).device, (t).ndim, (t).shape)
      vlm_tensor ln1 = BF(ba->ln_1), ln2 = BF(ba->ln_2), qkv16 = BF(ba->qkv), attn16 = BF(ba->attn), act16 = BF(ba->act);
#undef BF
      vlm_tensor q16 = vlm_narrow(&qkv16, 2, 0, W), k16 = vlm_narrow(&qkv16, 2, W, W), v16 = vlm_narrow(&qkv16, 2, 2 * W, W);
      vlm_tensor q = vlm_narrow(&ba->qkv, 2, 0, W), k = vlm_narrow(&ba->qkv, 2, W, W), v = vlm_narrow(&ba->qkv, 2, 2 * W, W);
      double tb[11];
      const char *nb[11] = {"ln_1", "qkv (bf16 out)", "attention (bf16)", "out_proj + res", "ln_2", "fc + gelu",
                            "c_proj + res", "qkv (f32 out)", "attention (f32 qkv)", "attention (bf16, own kernel)",
                            "attention (f32 qkv, own kernel)"};
      long long dnn0 = vlm_cuda_attention_cudnn_runs();
#define TIMED(k_, call) do { call; vlm_cuda_sync(nb[k_]); double t_ = vlm_now(); for (int r_ = 0; r_ < 10; r_++) { call; } \
                             vlm_cuda_sync(nb[k_]); tb[k_] = (vlm_now() - t_) / 10; } while (0)
      TIMED(0, vlm_layernorm_forward(&ln1, NULL, NULL, x, &bp->ln_1_w, &bp->ln_1_b, 1e-5f));
      TIMED(1, vlm_linear_forward(&qkv16, &ln1, &bp->in_proj_w, &bp->in_proj_b, NULL, NULL));
      TIMED(2, vlm_attention_forward(&attn16, NULL, &q16, &k16, &v16, Hh, NULL, 0, sc_att));
      TIMED(3, vlm_linear_forward(&ba->x1, &attn16, &bp->out_proj_w, &bp->out_proj_b, NULL, x));
      TIMED(4, vlm_layernorm_forward(&ln2, NULL, NULL, &ba->x1, &bp->ln_2_w, &bp->ln_2_b, 1e-5f));
      TIMED(5, vlm_linear_forward(&act16, &ln2, &bp->fc_w, &bp->fc_b, &c.vision.act, NULL));
      TIMED(6, vlm_linear_forward(y, &act16, &bp->proj_w, &bp->proj_b, NULL, &ba->x1));
      TIMED(7, vlm_matmul_forward(&ba->qkv, &ln1, &bp->in_proj_w, &bp->in_proj_b, 0, 1));
      TIMED(8, vlm_attention_forward(&ba->attn, NULL, &q, &k, &v, Hh, NULL, 0, sc_att));
      long long dnn = vlm_cuda_attention_cudnn_runs() - dnn0;
      vlm_cuda_attention_set_cudnn(0);
      TIMED(9, vlm_attention_forward(&attn16, NULL, &q16, &k16, &v16, Hh, NULL, 0, sc_att));
      TIMED(10, vlm_attention_forward(&ba->attn, NULL, &q, &k, &v, Hh, NULL, 0, sc_att));
      vlm_cuda_attention_set_cudnn(1);
#undef TIMED
      double tot = 0;
      for (int k2 = 0; k2 < 7; k2++) tot += tb[k2];
      printf("  one vision block's inference ops at batch %lld (ms per call; the block's %.2f ms x %lld layers):",
             (long long)B, tot * 1e3, (long long)c.vision.layers);
      for (int k2 = 0; k2 < 11; k2++) printf("%s %s %.3f", k2 % 5 ? ";" : "\n   ", nb[k2], tb[k2] * 1e3);
      char dnn_msg[256];
      vlm_cuda_cudnn_probe(dnn_msg, sizeof dnn_msg);
      printf("\n  attention through cuDNN: %s, %lld of the timed forwards above ran there (%s; VLM_LOG=debug says "
             "why not)\n", dnn ? "yes" : "no", dnn, dnn_msg);
    }
    vlm_clip_params_free(&hb);
    vlm_arena_free(&a);
    vlm_vit_acts_free(&va);
  }
  vlm_set_matmul_precision(VLM_PREC_F32);

  printf("VLM gemm_bf16_tflops %.6g\n", gemm_tflops);
  printf("VLM train_samples_per_s %.6g\n", train_sps);
  printf("VLM train_mfu %.6g\n", train_mfu);
  printf("VLM train_mfu_run %.6g\n", train_mfu_run);
  printf("VLM encode_images_per_s %.6g\n", enc_sps);
  printf("VLM train_gflop_per_sample %.6g\n", 3.0 * fwd_flops / 1e9);
  printf("VLM loss_first %.6g\nVLM loss_last %.6g\n", loss_first, loss_last);
  vlm_clip_batch_free(&batch);
  vlm_clip_params_free(&ph); vlm_clip_params_free(&pd); vlm_clip_params_free(&gd);
  vlm_clip_params_free(&md); vlm_clip_params_free(&vd);
  free(img);
  free(ids);
  return 0;
}
