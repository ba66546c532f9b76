/* vlm forward --model PATH --inputs FILE --out FILE [--grads FILE] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/apps.h"
#include "model/model.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm forward --model PATH --inputs FILE --out FILE [--grads FILE] [--precision f32|bf16]\n"
          "                   [--device cpu|cuda]\n"
          "\n"
          "Runs a CLIP or CoCa model (open_clip or Hugging Face checkpoint, see 'vlm info')\n"
          "on a batch and writes what open_clip computes, so vlm can be checked against any\n"
          "PyTorch model. FILE is safetensors:\n"
          "  --inputs  `images` [B,3,H,W] (F32/F16/BF16, already normalized) and `text`\n"
          "            [B,L] token ids (I64 or I32, L <= the context length)\n"
          "  --out     image_features_unnorm, text_features_unnorm, image_features,\n"
          "            text_features [B,E], logit_scale (exp'd), logits_per_image,\n"
          "            logits_per_text [B,B], clip_loss, loss; CoCa adds image_tokens,\n"
          "            text_tokens, caption_logits [B,L,V], caption_loss (weighted),\n"
          "            clip_loss_unweighted, caption_loss_unweighted; a SigLIP model (a\n"
          "            logit_bias, init_logit_bias in its config) has logit_bias too, its\n"
          "            logits are exp(logit_scale) * img @ txt^T + logit_bias (open_clip's\n"
          "            SigLipLoss.get_logits) and its loss, siglip_loss, is the sigmoid loss\n"
          "  --grads   d(loss)/d(parameter) for every parameter, under the checkpoint's\n"
          "            own names (open_clip or Hugging Face)\n"
          "  --precision  f32 (default) or bf16: bf16 matmul inputs with f32 accumulation\n"
          "            (without --grads the weight matrices are converted to bf16 once)\n"
          "  --device  cpu (default) or cuda: run on the GPU (weights, activations and\n"
          "            the batch are copied there; the outputs are copied back)\n"
          "\n"
          "Examples:\n"
          "  vlm forward --model ../shared/fixtures/tiny-clip \\\n"
          "      --inputs ../shared/fixtures/tiny-clip/inputs.safetensors --out out.safetensors\n"
          "  vlm forward --model my-hf-clip/ --inputs batch.safetensors --out out.safetensors \\\n"
          "      --grads grads.safetensors\n"
          "  vlm forward --model ../shared/fixtures/tiny-clip --device cuda \\\n"
          "      --inputs ../shared/fixtures/tiny-clip/inputs.safetensors --out out.safetensors\n");
}


/* s: host activations. A SigLIP model (c->has_logit_bias): its logits (bias included) both
 * ways, logit_bias, and its loss as siglip_loss and loss; otherwise CLIP's outputs. */
static vlm_status write_outputs(const char *path, const vlm_clip_config *c, vlm_clip_acts *s, float *loss,
                                vlm_atomic_file *staged) {
  vlm_st_writer *w = vlm_st_writer_new();
  if (!w) return vlm_error(VLM_ERR_OOM, "out of memory");
  const int siglip = c->has_logit_bias;
  const int64_t B = s->loss.B;
  float *lpt = NULL;   /* SigLIP: logits_per_text, the transpose of its [B, B] logits */
  vlm_tensor t_lpt;
  vlm_status st = VLM_OK;
  if (siglip) {
    lpt = malloc((size_t)(B * B) * sizeof(float));
    if (!lpt) st = vlm_error(VLM_ERR_OOM, "out of memory");
    const float *l = vlm_f32(&s->siglip.logits);
    for (int64_t i = 0; lpt && i < B; i++)
      for (int64_t j = 0; j < B; j++) lpt[j * B + i] = l[i * B + j];
    int64_t sh[2] = {B, B};
    t_lpt = vlm_tensor_cpu_f32(lpt, 2, sh);
  }
  struct { const char *name; vlm_tensor *t; } outs[] = {
    {"image_features_unnorm", &s->visual.features}, {"text_features_unnorm", &s->text.features},
    {"image_features", &s->loss.img}, {"text_features", &s->loss.txt},
    {"logits_per_image", siglip ? &s->siglip.logits : &s->loss.logits_per_image},
    {"logits_per_text", siglip ? &t_lpt : &s->loss.logits_per_text},
  };
  for (size_t i = 0; i < sizeof outs / sizeof outs[0] && st == VLM_OK; i++)
    st = vlm_st_writer_add_tensor(w, outs[i].name, outs[i].t);
  if (st == VLM_OK) st = vlm_st_writer_add(w, "logit_scale", VLM_F32, 0, NULL, s->loss.scale.data);
  if (st == VLM_OK && siglip) st = vlm_st_writer_add(w, "logit_bias", VLM_F32, 0, NULL, s->siglip.bias.data);
  if (st == VLM_OK) st = vlm_st_writer_add(w, siglip ? "siglip_loss" : "clip_loss", VLM_F32, 0, NULL, loss);
  if (st == VLM_OK) st = vlm_st_writer_add(w, "loss", VLM_F32, 0, NULL, loss);
  if (st == VLM_OK) st = vlm_st_writer_stage(w, path, staged);
  vlm_st_writer_free(w);
  free(lpt);
  return st;
}

int vlm_cmd_forward(int argc, char **argv) {
  const char *model = NULL, *inputs = NULL, *out = NULL, *grads = NULL, *precision = "f32", *device = "cpu";
  for (int i = 1; i < argc; i++) {
    if (vlm_app_is_help(argv[i])) { usage(stdout); return 0; }
    const char **slot = !strcmp(argv[i], "--model")  ? &model
                      : !strcmp(argv[i], "--inputs") ? &inputs
                      : !strcmp(argv[i], "--out")    ? &out
                      : !strcmp(argv[i], "--grads")  ? &grads
                      : !strcmp(argv[i], "--precision") ? &precision
                      : !strcmp(argv[i], "--device") ? &device : NULL;
    if (!slot) return vlm_app_bad_arg("vlm forward", argv[i]);
    if (!(*slot = vlm_app_value("vlm forward", argc, argv, &i))) return 2;
  }
  if (!model || !inputs || !out) {
    fprintf(stderr, "vlm forward: --model, --inputs and --out are required (see 'vlm forward --help')\n");
    return 2;
  }
  /* the outputs may not overwrite each other, the inputs or the checkpoint's own files (its
   * config and weights as loading finds them; a missing model is reported by the load) */
  char mcfg[4200] = "", mweights[4200] = "";
  if (vlm_model_paths(model, mcfg, mweights, sizeof mcfg) != VLM_OK) mcfg[0] = mweights[0] = 0;
  const char *reads[3] = {inputs, mcfg, mweights};
  for (int o = 0; o < 2; o++) {
    const char *w = o ? grads : out;
    if (!w) continue;
    for (int k = 0; k < 3; k++)
      if (reads[k][0] && vlm_app_same_file(w, reads[k])) {
        fprintf(stderr, "vlm forward: --%s %s would overwrite %s: choose another file\n", o ? "grads" : "out", w,
                reads[k]);
        return 2;
      }
  }
  if (grads && vlm_app_same_file(out, grads)) {
    fprintf(stderr, "vlm forward: --out and --grads are the same file (%s): choose two\n", out);
    return 2;
  }
  int bf16 = !strcmp(precision, "bf16");
  if (!bf16 && strcmp(precision, "f32") && strcmp(precision, "fp32")) {
    fprintf(stderr, "vlm forward: --precision must be f32 or bf16, got '%s'\n", precision);
    return 2;
  }
  if (strcmp(device, "cpu") && strcmp(device, "cuda")) {
    fprintf(stderr, "vlm forward: --device must be cpu or cuda, got '%s'\n", device);
    return 2;
  }
  vlm_device dev = !strcmp(device, "cuda") ? VLM_CUDA : VLM_CPU;
  if (dev == VLM_CUDA && !vlm_cuda_available()) {
    fprintf(stderr, "vlm forward: --device cuda: %s\n", vlm_cuda_describe());
    return 1;
  }
  if (vlm_model_is_coca(model) == 1) return vlm_app_coca_forward(model, inputs, out, grads, bf16, dev);
  vlm_clip_config c;
  vlm_clip_params p, g, h, pd;
  vlm_clip_acts sh;
  vlm_clip_batch batch;
  vlm_ckpt_format fmt;
  if (vlm_clip_load(model, &c, &p, &fmt) != VLM_OK) {
    fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
    return 1;
  }
  int rc = 1;
  float *images = NULL;
  void *ids = NULL;
  vlm_dtype ids_dt;
  int64_t B, L;
  vlm_clip_acts s;
  memset(&s, 0, sizeof s);
  memset(&g, 0, sizeof g);
  memset(&h, 0, sizeof h);
  memset(&pd, 0, sizeof pd);
  memset(&sh, 0, sizeof sh);
  memset(&batch, 0, sizeof batch);
  if (!vlm_app_read_inputs(inputs, c.vision.image_size, c.text.context_length, c.text.vocab_size, &images, &ids, &ids_dt,
                           &B, &L))
    goto done;
  if (vlm_clip_acts_init_on(&s, &c, B, L, grads != NULL, dev) != VLM_OK ||
      (grads && vlm_clip_params_init_on(&g, &c, dev) != VLM_OK) ||
      (dev == VLM_CUDA && (vlm_clip_params_to_device(&pd, &p, &c, dev) != VLM_OK ||
                           vlm_clip_batch_init_on(&batch, &c, B, L, ids_dt, dev) != VLM_OK ||
                           vlm_clip_acts_init(&sh, &c, B, L, grads != NULL) != VLM_OK))) {
    fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
    goto done;
  }
  int64_t ishape[4] = {B, 3, c.vision.image_size, c.vision.image_size}, tshape[2] = {B, L};
  vlm_tensor ti = vlm_tensor_cpu_f32(images, 4, ishape);
  vlm_tensor tt = vlm_tensor_make(ids, ids_dt, VLM_CPU, 2, tshape);
  if (dev == VLM_CUDA) { /* the batch on the GPU; the model reads it from there */
    vlm_clip_batch_upload(&batch, &ti, &tt);
    ti = batch.images;
    tt = batch.ids;
  }
  if (bf16) {
    vlm_set_matmul_precision(VLM_PREC_BF16);
    if (!grads && vlm_clip_params_bf16(&h, dev == VLM_CUDA ? &pd : &p, &c, 1) != VLM_OK) {
      fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
      goto done;
    }
  }
  vlm_clip_params *run = bf16 && !grads ? &h : dev == VLM_CUDA ? &pd : &p;
  float loss = vlm_clip_forward(&c, run, &s, &ti, &tt);
  if (dev == VLM_CUDA) /* the same layout on the host: one copy back */
    vlm_memcpy(sh.arena.base, VLM_CPU, s.arena.base, VLM_CUDA, s.arena.used);
  /* --out and --grads are staged, then renamed together: a failure replaces neither */
  vlm_atomic_file af[2];
  if (write_outputs(out, &c, dev == VLM_CUDA ? &sh : &s, &loss, &af[0]) != VLM_OK) {
    fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
    goto done;
  }
  if (grads) {
    vlm_clip_backward(&c, run, &g, &s, &tt);
    if (dev == VLM_CUDA) { /* gradients back into the host parameter layout */
      vlm_clip_params_zero(&p);
      vlm_clip_params_copy(&p, &g);
    }
    if (vlm_clip_stage_safetensors(dev == VLM_CUDA ? &p : &g, &c, grads, fmt, &af[1]) != VLM_OK) {
      vlm_atomic_abort(&af[0]);
      fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
      goto done;
    }
  }
  if (vlm_atomic_commit_all(af, grads ? 2 : 1) != VLM_OK) {
    fprintf(stderr, "vlm forward: %s\n", vlm_last_error());
    goto done;
  }
  printf("%sloss %.7f (batch %lld, text length %lld, %s checkpoint, %s%s)\n", c.has_logit_bias ? "siglip " : "",
         loss, (long long)B, (long long)L,
         vlm_ckpt_format_name(fmt), precision, dev == VLM_CUDA ? ", cuda" : "");
  rc = 0;
done:
  free(images);
  free(ids);
  vlm_clip_acts_free(&s);
  vlm_clip_acts_free(&sh);
  vlm_clip_batch_free(&batch);
  vlm_clip_params_free(&pd);
  vlm_clip_params_free(&g);
  vlm_clip_params_free(&h);
  vlm_clip_params_free(&p);
  return rc;
}
