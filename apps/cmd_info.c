/* vlm info --model PATH */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "apps/apps.h"
#include "model/model.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm info --model PATH\n"
          "\n"
          "Loads a CLIP or CoCa checkpoint and prints its config, the parameter count of each\n"
          "tower and the checkpoint's format. PATH is a directory holding\n"
          "open_clip_config.json + open_clip_model.safetensors (open_clip), or\n"
          "config.json + model.safetensors (a model_cfg, or a Hugging Face CLIPModel; or\n"
          "model.safetensors.index.json + its shards), or one of those config files (the\n"
          "weights are read from beside it). PyTorch checkpoints stand in for the\n"
          "safetensors files (open_clip_pytorch_model.bin, pytorch_model.bin and its\n"
          "shards), and PATH may be such a file itself: OpenAI's TorchScript archives\n"
          "(ViT-B-32.pt) have their config read off the weights' shapes; a plain state\n"
          "dict (open_clip's epoch_N.pt) needs its config beside it, or 'vlm convert\n"
          "--config'. With both layouts in one directory the open_clip one is read\n"
          "when its weights are there; safetensors are read before pickles.\n"
          "\n"
          "Examples:\n"
          "  vlm info --model ../shared/fixtures/tiny-clip\n"
          "  vlm info --model ../shared/fixtures/tiny-clip/config_hf.json\n"
          "  vlm info --model ../shared/fixtures/tiny-coca\n"
          "  vlm info --model ~/.cache/clip/ViT-B-32.pt\n");
}

int vlm_cmd_info(int argc, char **argv) {
  const char *model = NULL;
  for (int i = 1; i < argc; i++) {
    if (vlm_app_is_help(argv[i])) { usage(stdout); return 0; }
    if (!strcmp(argv[i], "--model")) {
      if (!(model = vlm_app_value("vlm info", argc, argv, &i))) return 2;
      continue;
    }
    return vlm_app_bad_arg("vlm info", argv[i]);
  }
  if (!model) {
    fprintf(stderr, "vlm info: --model PATH is required (see 'vlm info --help')\n");
    return 2;
  }
  if (vlm_model_is_coca(model) == 1) return vlm_app_coca_info(model);
  vlm_clip_config c;
  vlm_clip_params p;
  vlm_ckpt_format fmt;
  if (vlm_clip_load(model, &c, &p, &fmt) != VLM_OK) {
    fprintf(stderr, "vlm info: %s\n", vlm_last_error());
    return 1;
  }
  int64_t nv, nt, n = vlm_clip_params_count(&p, &c, &nv, &nt);
  const vlm_vit_config *v = &c.vision;
  const vlm_text_config *t = &c.text;
  printf("model: CLIP (%s checkpoint) from %s\n", vlm_ckpt_format_name(fmt), model);
  char cfg[4200], weights[4200];
  if (vlm_model_paths(model, cfg, weights, sizeof cfg) == VLM_OK)
    printf("files: %s, %s (%s)\n", cfg[0] ? cfg : "(config read off the weights' shapes, OpenAI's rule)", weights,
           vlm_weights_kind(weights));
  printf("embed_dim: %lld, activation: %s, logit_scale: %g (exp %g)\n", (long long)c.embed_dim,
         c.quick_gelu ? "quick_gelu" : "gelu", *vlm_f32(&p.logit_scale), expf(*vlm_f32(&p.logit_scale)));
  if (c.has_logit_bias)
    printf("logit_bias: %g (a SigLIP model: init_logit_bias %g, the sigmoid loss)\n", *vlm_f32(&p.logit_bias),
           c.init_logit_bias);
  printf("vision: ViT image %lld, patch %lld (%lld tokens), width %lld, layers %lld, heads %lld, mlp %lld\n",
         (long long)v->image_size, (long long)v->patch_size, (long long)vlm_vit_tokens(v), (long long)v->width,
         (long long)v->layers, (long long)v->heads, (long long)v->mlp_width);
  char pool[64] = "argmax(ids)";
  if (t->eot_id >= 0) snprintf(pool, sizeof pool, "first eos id (%lld)", (long long)t->eot_id);
  printf("text: context %lld, vocab %lld, width %lld, layers %lld, heads %lld, mlp %lld, pooling %s\n",
         (long long)t->context_length, (long long)t->vocab_size, (long long)t->width, (long long)t->layers,
         (long long)t->heads, (long long)t->mlp_width, pool);
  if (c.vision.ln_eps != 1e-5f || t->ln_eps != 1e-5f)
    printf("layernorm eps: vision %g, text %g\n", c.vision.ln_eps, t->ln_eps);
  vlm_app_print_image_transform(&c.vision);
  printf("parameters: %lld (vision %lld, text %lld, logit_scale 1%s)\n", (long long)n, (long long)nv,
         (long long)nt, c.has_logit_bias ? ", logit_bias 1" : "");
  vlm_clip_params_free(&p);
  return 0;
}
