/* vlm convert (--model PATH [--config SPEC] | --init NAME) --to open_clip|hf [--format safetensors|torch] --out DIR */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/apps.h"
#include "model/encode.h"
#include "model/model.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm convert (--model PATH [--config SPEC] | --init NAME [--seed N])\n"
          "                   --to open_clip|hf [--format safetensors|torch] --out DIR\n"
          "\n"
          "Writes a CLIP checkpoint (any format 'vlm info' reads) into DIR (created if\n"
          "missing; its parent folder must exist) in the chosen layout:\n"
          "  open_clip  open_clip_config.json + open_clip_model.safetensors, as open_clip's\n"
          "             hub export writes them: open_clip.create_model('local-dir:DIR') in\n"
          "             open_clip releases from 2025 on\n"
          "  hf         config.json + model.safetensors for transformers' CLIPModel\n"
          "             (q/k/v split, projections transposed; LayerNorm eps and eos pooling kept)\n"
          "--format torch writes the weights as a PyTorch checkpoint instead (torch.save of\n"
          "the state dict: open_clip_pytorch_model.bin / pytorch_model.bin), which every\n"
          "open_clip release reads: open_clip.create_model_and_transforms(NAME,\n"
          "pretrained='DIR/open_clip_pytorch_model.bin'), or torch.load.\n"
          "\n"
          "PATH may be a PyTorch checkpoint: a hub directory holding\n"
          "open_clip_pytorch_model.bin or pytorch_model.bin (+ shards) with its config,\n"
          "OpenAI's TorchScript archive (ViT-B-32.pt: its config is read off the weights'\n"
          "shapes), or open_clip's training checkpoint (epoch_N.pt: its \"state_dict\",\n"
          "without DistributedDataParallel's \"module.\" prefix). Nothing in a pickle is\n"
          "executed: vlm reads the tensors and nothing else. A checkpoint without a config\n"
          "beside it takes --config SPEC: a config file (open_clip model_cfg or Hugging\n"
          "Face CLIPConfig), a built-in NAME (below), or 'openai' (read off the shapes as\n"
          "open_clip does for OpenAI's weights: heads of 64, QuickGELU).\n"
          "A text tower that pools at an eos id other than the largest id (a Hugging Face\n"
          "config) has no open_clip form: --to open_clip refuses it. A LayerNorm eps other\n"
          "than 1e-5 is written as open_clip's norm_kwargs. A SigLIP model (a logit_bias,\n"
          "init_logit_bias in its config, as vlm train's SigLIP runs write) has no Hugging\n"
          "Face CLIPModel form: --to hf refuses it.\n"
          "Tensors are written as F32; each file is replaced atomically. A DIR holding\n"
          "another model's weights that vlm would read instead of the ones written\n"
          "(safetensors before PyTorch files, open_clip's layout before Hugging Face's) is\n"
          "refused before anything is written; the same model in several files is fine.\n"
          "The model's tokenizer, when one is found beside it (as 'vlm zeroshot' looks), is\n"
          "copied too (vocab.json + merges.txt, or OpenAI's bpe_simple_vocab_16e6.txt.gz),\n"
          "written whole before the model is and renamed right after it, so a file that\n"
          "cannot be written leaves all of DIR's old files as they were.\n"
          "--init NAME writes a new model instead, initialised as open_clip does for\n"
          "training from scratch (seed N, default 0). Built-in NAMEs: open_clip's configs\n"
          "ViT-B-32, ViT-B-32-256, ViT-B-16, ViT-B-16-plus-240, ViT-L-14, ViT-L-14-336,\n"
          "ViT-H-14, ViT-g-14, ViT-bigG-14 (add -quickgelu for QuickGELU); small,\n"
          "shapes-demo, tiny; CoCa: coca_ViT-B-32, coca_ViT-L-14, coca-small, coca-shapes,\n"
          "coca-tiny (open_clip layout only).\n"
          "\n"
          "Examples:\n"
          "  vlm convert --model ../shared/fixtures/tiny-clip --to hf --out tiny-clip-hf\n"
          "  vlm convert --model tiny-clip-hf --to open_clip --out tiny-clip-oc\n"
          "  vlm convert --model ~/.cache/clip/ViT-B-32.pt --to open_clip --out vit-b-32-openai\n"
          "  vlm convert --model logs/run/checkpoints/epoch_32.pt --config ViT-B-32 --to open_clip --out mine\n"
          "  vlm convert --model runs/shapes-demo --to open_clip --format torch --out for-open-clip\n"
          "  vlm convert --init ViT-B-32 --seed 1 --to open_clip --out vit-b-32-random\n"
          "  vlm convert --init coca-small --to open_clip --out coca-small-random   (CoCa: open_clip layout only)\n");
}

/* The source model's tokenizer (found as vlm zeroshot finds it: MODEL/tokenizer/, vocab.json +
 * merges.txt, a vlm train run's RUN/tokenizer/, OpenAI's BPE file), staged into OUT: its
 * files are written whole beside their targets before the model is, and renamed into place
 * after it (vlm_app_tokenizer_commit) or removed (vlm_app_tokenizer_abort) when the model is
 * not written, so a failed convert leaves OUT's old files as they were. vlm and transformers'
 * CLIPTokenizer then find it beside the converted weights. 0, or 1 after the message. */
int vlm_app_tokenizer_stage(const char *model, const char *out, vlm_app_staged_tokenizer *t) {
  memset(t, 0, sizeof *t);
  int found = model ? vlm_find_tokenizer(model, t->source, sizeof t->source) : 0;
  struct stat sb;
  if (found <= 0) {   /* none: the weights alone; a tokenizer OUT holds from before is kept, with a warning */
    char old[4096];
    if (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode) && vlm_find_tokenizer(out, old, sizeof old) > 0 &&
        !strstr(old, "../../tokenizer"))   /* a run's tokenizer, for RUN/checkpoints/NAME: the run's own */
      snprintf(t->stale, sizeof t->stale, "%s", old);
    vlm_error_clear();
    return 0;
  }
  const int dir = stat(t->source, &sb) == 0 && S_ISDIR(sb.st_mode);
  static const char *const files[2] = {"vocab.json", "merges.txt"};
  for (int i = 0; i < (dir ? 2 : 1); i++) {
    char from[4200], to[4200], *buf = NULL;
    size_t n = 0;
    const char *base = strrchr(t->source, '/');
    snprintf(from, sizeof from, dir ? "%s/%s" : "%s", t->source, files[i]);
    snprintf(to, sizeof to, "%s/%s", out, dir ? files[i] : base ? base + 1 : t->source);
    if (vlm_app_same_file(from, to)) continue;   /* converted in place: it is there already */
    vlm_status st = vlm_read_file(from, &buf, &n);
    if (st == VLM_OK) st = vlm_atomic_stage(&t->af[t->n], to, buf, n);
    free(buf);
    if (st != VLM_OK) {
      fprintf(stderr, "vlm convert: the tokenizer: %s\n", vlm_last_error());
      vlm_app_tokenizer_abort(t);
      return 1;
    }
    t->n++;
  }
  return 0;
}

int vlm_app_tokenizer_commit(vlm_app_staged_tokenizer *t, const char *out) {
  if (t->stale[0])
    fprintf(stderr,
            "vlm convert: warning: %s already holds a tokenizer (%s) and the model written has none of its own: "
            "vlm and transformers will tokenize for this model with it; remove it if it belongs to another model\n",
            out, t->stale);
  if (t->n == 0) return 0;
  const int n = t->n;
  t->n = 0;
  if (vlm_atomic_commit_all(t->af, n) != VLM_OK) {
    fprintf(stderr, "vlm convert: the tokenizer: %s\n", vlm_last_error());
    return 1;
  }
  printf("copied the tokenizer %s into %s\n", t->source, out);
  return 0;
}

void vlm_app_tokenizer_abort(vlm_app_staged_tokenizer *t) {
  for (int i = 0; i < t->n; i++) vlm_atomic_abort(&t->af[i]);
  t->n = 0;
}

int vlm_app_convert_shadow(const char *out, const char *cfg_name, const char *weights_name,
                           int (*same)(const char *dir, void *ctx), void *ctx) {
  char other[4200], cfg[4200], now[4200];
  const int k = vlm_model_dir_shadow(out, cfg_name, weights_name, other, sizeof other);
  if (k == 0) return 0;
  /* harmless when OUT, as it is now, is read from that file and holds this same model */
  if (vlm_model_paths(out, cfg, now, sizeof now) == VLM_OK && !strcmp(now, other) && same(out, ctx)) return 0;
  fprintf(stderr, "vlm convert: %s already holds %s, which vlm would read %s the %s written now (%s): "
          "remove it, or write to another --out\n", out, other,
          k == 1 ? "with the new config instead of" : "(with its own config) instead of", weights_name,
          k == 1 ? "safetensors before PyTorch files, a sharded index before one file"
                 : "open_clip's layout before Hugging Face's, safetensors before PyTorch files");
  return 1;
}

/* The model in dir as it is now equals the CLIP model about to be written (same config and
 * parameters). */
typedef struct { const vlm_clip_config *c; const vlm_clip_params *p; vlm_ckpt_format fmt; } clip_same_ctx;

static int clip_same(const char *dir, void *ctx) {
  const clip_same_ctx *x = ctx;
  vlm_clip_config c;
  vlm_clip_params p;
  vlm_ckpt_format f;
  if (vlm_clip_load(dir, &c, &p, &f) != VLM_OK) return 0;   /* one that does not load is not it */
  char *a = vlm_clip_config_to_json(&c, x->fmt), *b = vlm_clip_config_to_json(x->c, x->fmt);
  const int same = a && b && !strcmp(a, b) && p.arena.used == x->p->arena.used &&
                   !memcmp(p.arena.base, x->p->arena.base, p.arena.used);
  free(a);
  free(b);
  vlm_clip_params_free(&p);
  return same;
}

int vlm_cmd_convert(int argc, char **argv) {
  const char *model = NULL, *to = NULL, *out = NULL, *init = NULL, *seed_s = NULL, *config = NULL,
             *format = "safetensors";
  for (int i = 1; i < argc; i++) {
    if (vlm_app_is_help(argv[i])) { usage(stdout); return 0; }
    const char **slot = !strcmp(argv[i], "--model") ? &model
                      : !strcmp(argv[i], "--to")    ? &to
                      : !strcmp(argv[i], "--out")   ? &out
                      : !strcmp(argv[i], "--init")  ? &init
                      : !strcmp(argv[i], "--seed")  ? &seed_s
                      : !strcmp(argv[i], "--config") ? &config
                      : !strcmp(argv[i], "--format") ? &format : NULL;
    if (!slot) return vlm_app_bad_arg("vlm convert", argv[i]);
    if (!(*slot = vlm_app_value("vlm convert", argc, argv, &i))) return 2;
  }
  if (!model == !init || !to || !out) {
    fprintf(stderr, "vlm convert: one of --model or --init, and --to and --out are required (see 'vlm convert --help')\n");
    return 2;
  }
  vlm_ckpt_format fmt;
  if (!strcmp(to, "hf")) fmt = VLM_CKPT_HF;
  else if (!strcmp(to, "open_clip")) fmt = VLM_CKPT_OPENCLIP;
  else {
    fprintf(stderr, "vlm convert: --to must be open_clip or hf, got '%s'\n", to);
    return 2;
  }
  const int torch = !strcmp(format, "torch");
  if (!torch && strcmp(format, "safetensors")) {
    fprintf(stderr, "vlm convert: --format must be safetensors or torch, got '%s'\n", format);
    return 2;
  }
  if (seed_s && !init) {
    fprintf(stderr, "vlm convert: --seed goes with --init (the seed of a new model's weights); --model's are read\n");
    return 2;
  }
  if (config && init) {
    fprintf(stderr, "vlm convert: --config goes with --model (the config of its weights); --init names its own\n");
    return 2;
  }
  vlm_clip_config c;
  vlm_clip_params p;
  vlm_ckpt_format src;
  long long seed = 0;
  if (seed_s && !vlm_app_parse_int("vlm convert", "--seed", seed_s, 0, (1LL << 62), &seed)) return 2;
  if (config ? vlm_coca_config_spec_is_coca(config) : vlm_app_is_coca_name_or_model(init, model)) {
    return vlm_app_coca_convert(model, config, init, fmt == VLM_CKPT_HF, torch, out, (uint64_t)seed);
  }
  if (init) {
    if (vlm_clip_config_builtin(&c, init) != VLM_OK) {   /* the CLIP names; the CoCa ones too */
      fprintf(stderr, "vlm convert: %s; CoCa:", vlm_last_error());
      for (int i = 0; vlm_coca_builtin_name(i); i++) fprintf(stderr, "%s %s", i ? "," : "", vlm_coca_builtin_name(i));
      fprintf(stderr, "\n");
      return 2;
    }
    if (vlm_clip_params_init(&p, &c) != VLM_OK) {
      fprintf(stderr, "vlm convert: %s\n", vlm_last_error());
      return 1;
    }
    vlm_clip_params_init_openclip(&p, &c, (uint64_t)seed);
    src = VLM_CKPT_OPENCLIP;
    model = init;
  } else if (vlm_clip_load_as(model, config, &c, &p, &src) != VLM_OK) {
    fprintf(stderr, "vlm convert: %s\n", vlm_last_error());
    return 1;
  }
  int rc = 0;
  vlm_app_staged_tokenizer tok = {0};
  if ((fmt == VLM_CKPT_OPENCLIP ? vlm_clip_config_openclip_ok(&c, model) : vlm_clip_config_hf_ok(&c, model)) !=
      VLM_OK) {
    fprintf(stderr, "vlm convert: %s\n", vlm_last_error());   /* before creating anything */
    rc = 1;
  } else if (mkdir(out, 0777) != 0 && errno != EEXIST) {
    fprintf(stderr, "vlm convert: %s: cannot create the directory: %s\n", out, strerror(errno));
    rc = 1;
  } else if (vlm_app_convert_shadow(out, fmt == VLM_CKPT_HF ? "config.json" : "open_clip_config.json",
                                    fmt == VLM_CKPT_HF ? (torch ? "pytorch_model.bin" : "model.safetensors")
                                                       : (torch ? "open_clip_pytorch_model.bin" : "open_clip_model.safetensors"),
                                    clip_same, &(clip_same_ctx){&c, &p, fmt})) {
    rc = 1;
  } else if (vlm_app_tokenizer_stage(init ? NULL : model, out, &tok) != 0) {
    rc = 1;
  } else if (vlm_clip_save_dir_as(&p, &c, out, fmt, torch) != VLM_OK) {
    fprintf(stderr, "vlm convert: %s\n", vlm_last_error());
    vlm_app_tokenizer_abort(&tok);
    rc = 1;
  } else {
    printf("wrote %s (%s layout, %lld parameters, %s) from %s (%s)\n", out, vlm_ckpt_format_name(fmt),
           (long long)vlm_clip_params_count(&p, &c, NULL, NULL), torch ? "PyTorch checkpoint" : "safetensors", model,
           init ? "open_clip initialisation" : vlm_ckpt_format_name(src));
    rc = vlm_app_tokenizer_commit(&tok, out);
  }
  vlm_clip_params_free(&p);
  return rc;
}
