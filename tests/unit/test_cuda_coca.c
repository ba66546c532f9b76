/* The whole CoCa model on the GPU against open_clip's tiny-coca fixture:
 * parameters, activations, images and ids in device arenas, the model code
 * unchanged (the text cls embedding and its mask, the attentional pooler, the
 * decoder, both losses). fp32: every output and every gradient within the
 * fixture tolerances (fixtures/README.md); I32 ids; the inference layout with
 * the text tower's pooled rows only (the cls path). bf16 matmuls: the errors are
 * printed (measurements) and checked against loose bounds. The trainer on the
 * GPU is checked against open_clip's CoCa trajectory by test_train_fixture
 * --device cuda (ctest train_tiny_coca_gpu). argv[1]: the shared folder. Skips
 * (77) without a GPU. `--cpu` as argv[2] runs the same checks with everything on
 * the CPU (to check the test itself where there is no GPU). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cuda/cuda.h"
#include "fixture.h"
#include "gradcheck.h"
#include "model/model.h"

/* fp32 (loose > 0): the fixture tolerances times loose; bf16 (loose == 0): the
 * error relative to the tensor's max magnitude, against 1e-1 (a wrong kernel is
 * off by ~100%). The figure is printed. */
static double compare_dev(const char *tag, const char *name, const vlm_tensor *d, const vlm_safetensors *ref, int kind,
                          double loose) {
  float *h = vt_host_f32(d);
  double w;
  if (loose > 0) {
    w = vt_fixture_compare(tag, name, h, vlm_numel(d), ref, kind, loose);
    printf("  %-34s %-24s max %s err %.3g\n", tag, name, kind == 2 ? "rel" : "abs", w);
  } else {
    const vlm_st_entry *e = vt_st_need(ref, name);
    int64_t n = 0;
    float *r = e ? vt_st_read_all(ref, e, &n) : NULL;
    CHECK(r && n == vlm_numel(d), "%s: %s: %lld elements, the fixture %lld", tag, name, (long long)vlm_numel(d),
          (long long)n);
    w = r && n == vlm_numel(d) ? vt_max_rel(h, r, n, 1e-30) : INFINITY;
    if (isnan(w)) w = INFINITY;
    CHECK(w <= 1e-1, "%s: %s differs from open_clip by %.3g of its max (bound 0.1)", tag, name, w);
    printf("  %-34s %-24s max err / max |ref| %.3g\n", tag, name, w);
    free(r);
  }
  free(h);
  return w;
}

/* A host tensor's copy in a device arena (images, ids). */
static vlm_tensor upload(vlm_arena *a, const vlm_tensor *h) {
  vlm_tensor d = vlm_arena_tensor(a, h->dtype, h->ndim, h->shape);
  if (!a->measuring) vlm_copy(&d, h);
  return d;
}

static vlm_device dev = VLM_CUDA;

static void run(const char *shared) {
  char dir[4096], path[4200];
  snprintf(dir, sizeof dir, "%s/fixtures/tiny-coca", shared);
  vlm_safetensors in, out, grads;
  if (!vt_fixture_open(dir, &in, &out, &grads)) return;
  vlm_coca_config c;
  vlm_coca_params ph, pd, gd, gh;
  CHECK(vlm_coca_load(dir, &c, &ph) == VLM_OK, "load %s: %s", dir, vlm_last_error());
  if (vt_failed) return;
  vlm_tensor images_h, text_h, text32_h;
  if (!vt_fixture_inputs(&in, &images_h, &text_h, &text32_h)) return;
  int64_t B = images_h.shape[0], L = text_h.shape[1];

  /* the inputs on the GPU: one arena, measured then filled */
  vlm_arena m, ia;
  vlm_arena_measure(&m, dev);
  upload(&m, &images_h);
  upload(&m, &text_h);
  upload(&m, &text32_h);
  CHECK(vlm_arena_init(&ia, m.used, dev) == VLM_OK, "input arena: %s", vlm_last_error());
  vlm_tensor images = upload(&ia, &images_h), text = upload(&ia, &text_h), text32 = upload(&ia, &text32_h);

  vlm_coca_acts s, si;
  CHECK(vlm_coca_params_init_on(&pd, &c, dev) == VLM_OK && vlm_coca_params_init_on(&gd, &c, dev) == VLM_OK &&
            vlm_coca_params_init(&gh, &c) == VLM_OK,
        "parameters: %s", vlm_last_error());
  CHECK(vlm_coca_acts_init_on(&s, &c, B, L, 1, dev) == VLM_OK, "acts: %s", vlm_last_error());
  CHECK(vlm_coca_acts_init_on(&si, &c, B, L, 0, dev) == VLM_OK, "inference acts: %s", vlm_last_error());
  if (vt_failed) return;
  vlm_coca_params_copy(&pd, &ph);

  for (int bf16 = 0; bf16 < 2; bf16++) {
    char tag[128];
    snprintf(tag, sizeof tag, "tiny-coca [%s %s]", dev == VLM_CUDA ? "gpu" : "cpu", bf16 ? "bf16" : "f32");
    double loose = bf16 ? 0.0 : 1.0;
    vlm_set_matmul_precision(bf16 ? VLM_PREC_BF16 : VLM_PREC_F32);
    if (bf16) printf("%s: the bf16 errors below are measurements; loose bounds: 1e-1 of the max\n", tag);
    double t0 = vlm_now();
    float loss = vlm_coca_forward(&c, &pd, &s, &images, &text);
    vlm_coca_params_zero(&gd);
    vlm_coca_backward(&c, &pd, &gd, &s, &text);
    if (dev == VLM_CUDA) vlm_cuda_sync(tag);
    printf("%s: loss %.7f (clip %.7f, caption %.7f; forward + backward %.1f ms)\n", tag, loss, s.clip_loss,
           s.caption_loss, (vlm_now() - t0) * 1e3);
    compare_dev(tag, "image_features_unnorm", &s.pool.features, &out, 0, loose);
    compare_dev(tag, "text_features_unnorm", &s.text.features, &out, 0, loose);
    compare_dev(tag, "image_features", &s.loss.img, &out, 0, loose);
    compare_dev(tag, "text_features", &s.loss.txt, &out, 0, loose);
    compare_dev(tag, "image_tokens", &s.pool.tokens, &out, 0, loose);
    compare_dev(tag, "text_tokens", &s.dec.xs[0], &out, 0, loose);
    compare_dev(tag, "logits_per_image", &s.loss.logits_per_image, &out, 1, loose);
    compare_dev(tag, "caption_logits", &s.dec.logits, &out, 1, loose);
    compare_dev(tag, "logit_scale", &s.loss.scale, &out, 2, loose);
    double lt = bf16 ? 5e-2 : 1.0;
    double e_cap = 0, e_tot = 0;
    {
      const vlm_st_entry *e1 = vt_st_need(&out, "caption_loss_unweighted"), *e2 = vt_st_need(&out, "loss");
      if (!e1 || !e2) return;
      int64_t n;
      float *r1 = vt_st_read_all(&out, e1, &n), *r2 = vt_st_read_all(&out, e2, &n);
      e_cap = fabs((double)s.caption_loss - r1[0]) / fabs(r1[0]);
      e_tot = fabs((double)loss - r2[0]) / fabs(r2[0]);
      free(r1);
      free(r2);
    }
    if (!bf16) {
      vt_fixture_compare(tag, "caption_loss_unweighted", &s.caption_loss, 1, &out, 2, 1.0);
      vt_fixture_compare(tag, "clip_loss_unweighted", &s.clip_loss, 1, &out, 2, 1.0);
      vt_fixture_compare(tag, "loss", &loss, 1, &out, 2, 1.0);
    } else {
      CHECK(e_cap <= lt && e_tot <= lt, "%s: caption loss %.3g, loss %.3g from open_clip's (bound %.2g)", tag, e_cap,
            e_tot, lt);
    }
    printf("%s: caption loss %.3g, loss %.3g relative to open_clip's\n", tag, e_cap, e_tot);
    vlm_coca_params_copy(&gh, &gd);
    vt_grad_ctx gc = {&grads, tag, bf16 ? 1e-1 : 1e-4, 0, 0, ""};
    vlm_coca_params_visit(&gh, &c, vt_fixture_compare_grad, &gc);
    CHECK(gc.checked == grads.n_entries, "%s: %d gradients compared, the fixture has %d", tag, gc.checked,
          grads.n_entries);
    printf("%s: %d gradients, worst %.3g of its max (%s)\n", tag, gc.checked, gc.worst, gc.worst_name);

    /* I32 ids give the same loss */
    float loss32 = vlm_coca_forward(&c, &pd, &s, &images, &text32);
    CHECK(fabsf(loss32 - loss) <= 1e-6f * fabsf(loss), "%s: I32 ids give loss %.8g, I64 %.8g", tag, loss32, loss);

    /* inference layout: the text tower's pooled rows only (the cls row after the
     * last non-pad key), then every row; features against the fixture */
    for (int rows = 1; rows >= 0; rows--) {
      char t2[200];
      snprintf(t2, sizeof t2, "%s inference%s", tag, rows ? ", pooled rows" : "");
      si.text.pooled_only = rows;
      vlm_text_forward(&c.text, &pd.text, &si.text, &text);
      compare_dev(t2, "text_features_unnorm", &si.text.features, &out, 0, loose);
      vlm_coca_vit_forward(&c.vision, &pd.visual, &pd.pool, &si.visual, &si.pool, &images);
      compare_dev(t2, "image_features_unnorm", &si.pool.features, &out, 0, loose);
    }
  }
  vlm_set_matmul_precision(VLM_PREC_F32);

  /* captioning on the device: greedy, sampling and beam search, cached and
   * uncached, give the CPU's tokens */
  {
    vlm_gen_options o;
    vlm_gen_options_default(&o);
    o.sot_id = c.text.vocab_size - 2;
    o.eot_id = c.text.vocab_size - 1;
    o.pad_id = c.text.pad_id;
    o.max_len = (int)(c.text.context_length < 12 ? c.text.context_length : 12);
    o.min_len = 3;
    const int variants = 5;
    for (int v = 0; v < variants; v++) {
      vlm_gen_options g = o;
      const char *what = "greedy";
      if (v == 1) { g.use_cache = 0; what = "greedy, no cache"; }
      if (v == 2) { g.beams = 3; what = "beams 3"; }
      if (v == 3) { g.beams = 3; g.use_cache = 0; what = "beams 3, no cache"; }
      if (v == 4) { g.top_k = 5; g.temperature = 0.7f; g.repetition_penalty = 1.3f; what = "top-k 5"; }
      int32_t *th = calloc((size_t)(B * g.max_len), sizeof *th), *td = calloc((size_t)(B * g.max_len), sizeof *td);
      int *lh = calloc((size_t)B, sizeof *lh), *ld = calloc((size_t)B, sizeof *ld);
      CHECK(vlm_coca_generate(&c, &ph, &images_h, &g, th, lh) == VLM_OK, "generate on the CPU: %s", vlm_last_error());
      CHECK(vlm_coca_generate(&c, &pd, &images, &g, td, ld) == VLM_OK, "generate on the device: %s", vlm_last_error());
      int same = !memcmp(th, td, (size_t)(B * g.max_len) * sizeof *th) && !memcmp(lh, ld, (size_t)B * sizeof *lh);
      CHECK(same, "captions (%s) on the device differ from the CPU's", what);
      printf("tiny-coca captions on the %s, %s: %s the CPU's (first row length %d)\n",
             dev == VLM_CUDA ? "GPU" : "CPU", what, same ? "equal to" : "DIFFERENT from", ld[0]);
      free(th); free(td); free(lh); free(ld);
    }
    if (dev != VLM_CPU)
      CHECK(vlm_coca_generate(&c, &pd, &images_h, &o, NULL, NULL) == VLM_ERR_ARG,
            "images on the host with weights on the device are refused");
  }

  /* a checkpoint written from the device reads back equal to the weights */
  snprintf(path, sizeof path, "/tmp/vlm_test_cuda_coca_%d.safetensors", (int)getpid());
  CHECK(vlm_coca_save_safetensors(&pd, &c, path) == VLM_OK, "save from the GPU: %s", vlm_last_error());
  vlm_coca_params back;
  CHECK(vlm_coca_params_init(&back, &c) == VLM_OK && vlm_coca_load_safetensors(&back, &c, path) == VLM_OK,
        "reload: %s", vlm_last_error());
  CHECK(back.arena.used == ph.arena.used && !memcmp(back.arena.base, ph.arena.base, ph.arena.used),
        "the checkpoint written from the GPU differs from the weights");
  remove(path);
  vlm_coca_params_free(&back);

  vlm_arena_free(&ia);
  vlm_coca_acts_free(&s);
  vlm_coca_acts_free(&si);
  vlm_coca_params_free(&pd);
  vlm_coca_params_free(&gd);
  vlm_coca_params_free(&gh);
  vlm_coca_params_free(&ph);
  vt_fixture_close(&in, &out, &grads);
}

int main(int argc, char **argv) {
  if (argc > 2 && !strcmp(argv[2], "--cpu")) dev = VLM_CPU;
  if (dev == VLM_CUDA && !vlm_cuda_available()) {
    char why[512];
    snprintf(why, sizeof why, "no CUDA GPU: skipped (%s)", vlm_cuda_describe());
    vt_skip(why);
  }
  const char *shared = vt_shared_dir(argc, argv);
  if (!shared) vt_skip("no shared folder (argv[1] or VLM_SHARED_DIR)");
  if (dev == VLM_CUDA) printf("GPU: %s\n", vlm_cuda_describe());
  else printf("--cpu: everything on the CPU\n");
  run(shared);
  return vt_finish();
}
