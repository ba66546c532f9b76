/* vlm train: CLIP and CoCa training with open_clip's flags (see usage()). */
#define _XOPEN_SOURCE 700   /* nftw */
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "apps/apps.h"
#include "apps/tools.h"
#include "apps/train_internal.h"
#include "model/encode.h"

#define CMD "vlm train"

/* The demo defaults for --train-data shapes (tuned for 2 CPU cores, <= 10 minutes):
 * the CoCa, which also captions; a CLIP (--model shapes-demo) gets 9000 of its
 * cheaper steps. */
#define SHAPES_MODEL "coca-shapes"
#define SHAPES_SIGLIP_MODEL "shapes-demo" /* --siglip: open_clip has no SigLIP CoCa */
#define SHAPES_BATCH 64
#define SHAPES_LR 1e-3
#define SHAPES_WARMUP 100
#define SHAPES_STEPS 8000      /* a CoCa model */
#define SHAPES_CLIP_STEPS 9000 /* a CLIP model: its step costs ~0.65x a CoCa's */
#define SHAPES_EVAL_STEPS 1500
#define SHAPES_VOCAB 1024

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm train --train-data SPEC [options]\n"
          "\n"
          "Trains a CLIP model contrastively, or a CoCa model with open_clip's CoCa loss\n"
          "(open_clip's training loop and flag names).\n"
          "A run directory LOGS/NAME holds config.json, tokenizer/, checkpoints/\n"
          "(epoch_K/, step_N/ and the 'latest' link: open_clip_config.json +\n"
          "open_clip_model.safetensors, loadable by open_clip's local-dir: and by vlm, plus\n"
          "train_state.safetensors), metrics.jsonl and loss.png. One vlm train uses a run\n"
          "directory at a time (it holds a lock on LOGS/NAME/.lock; a second one is refused).\n"
          "\n"
          "Data:\n"
          "  --train-data SPEC        CSV/TSV file, COCO captions JSON, WebDataset shards\n"
          "                           (a.tar, shards-{0000..0009}.tar), a folder, or 'shapes'\n"
          "                           (the built-in synthetic set); several joined with '::'.\n"
          "                           A folder: x.jpg + x.txt captions, sub-folders searched; only\n"
          "                           class sub-folders, no .txt: an ImageFolder (\"a photo of a {class}.\")\n"
          "  --val-data SPEC          evaluation data (retrieval, val loss; zero-shot when it has\n"
          "                           classes: ImageFolder, shapes:val)\n"
          "  --dataset-type T         auto|csv|coco|wds|folder|imagefolder|shapes (auto)\n"
          "  --csv-separator C        (tab)  --csv-img-key K (filepath)  --csv-caption-key K (title)\n"
          "  --train-data-upsampling-factors F1::F2  --data-temperature T\n"
          "  --workers N              loader threads (2)\n"
          "  --max-image-pixels N     images with more pixels are bad samples, skipped (%lld,\n"
          "                           PIL's limit; checked from the header before decoding)\n"
          "Model:\n"
          "  --model M                built-in name (ViT-B-32, small, tiny, shapes-demo, ...), a\n"
          "                           model config JSON, or a checkpoint dir to fine-tune;\n"
          "                           CoCa: coca-tiny, coca-small, coca-shapes, coca_ViT-B-32, or a\n"
          "                           config / checkpoint with a multimodal_cfg\n"
          "  --pretrained FILE        the weights to start from, for --model's architecture (a\n"
          "                           built-in name or config), as open_clip's flag: a PyTorch\n"
          "                           checkpoint (open_clip's epoch_N.pt, a hub .bin) or a\n"
          "                           safetensors file; vlm downloads nothing\n"
          "  --coca-caption-loss-weight X (2.0)  --coca-contrastive-loss-weight X (1.0)\n"
          "                           CoCa: total = X_contrastive * ClipLoss + X_caption * caption CE\n"
          "  --image-size N           override the image size (models trained from scratch)\n"
          "  --image-mean R,G,B  --image-std R,G,B  --image-resize-mode shortest|squash|longest\n"
          "                           the images' transform (default: the model's preprocess_cfg,\n"
          "                           else OpenAI's mean/std, shortest); kept in the checkpoints'\n"
          "                           config, which every command then follows\n"
          "  --tokenizer T            a vocabulary (dir with vocab.json + merges.txt, a\n"
          "                           tokenizer.json, or bpe_simple_vocab_16e6.txt.gz), or\n"
          "                           train:SIZE to learn a BPE\n"
          "                           vocabulary of SIZE (>= 514) ids on the training captions\n"
          "                           (default: a checkpoint --model's own tokenizer, as vlm\n"
          "                           zeroshot finds it; shapes: train:1024)\n"
          "  --lock-image, --lock-text  LiT: freeze that tower (CoCa: --lock-text freezes the text\n"
          "                           tower, not the multimodal decoder)\n"
          "  --siglip                 SigLIP's sigmoid loss (open_clip's flag), CLIP models only: a\n"
          "                           new run's model gets a logit_bias (init -10; logit_scale ln 10),\n"
          "                           saved as open_clip's init_logit_bias config + logit_bias tensor.\n"
          "                           A model with a logit_bias (its config's init_logit_bias, a SigLIP\n"
          "                           checkpoint, a --siglip run resumed) trains with this loss with or\n"
          "                           without the flag; a checkpoint without one is refused (no bias\n"
          "                           to train), as is a CoCa model\n"
          "Optimization (open_clip defaults):\n"
          "  --batch-size N (64)  --epochs N (32)  --steps N (instead of epochs)\n"
          "  --lr X (5e-4)  --beta1 (0.9)  --beta2 (0.98)  --eps (1e-6)  --wd (0.2)\n"
          "  --warmup N (10000)  --lr-scheduler cosine|const|const-cooldown (cosine)\n"
          "  --epochs-cooldown N      const-cooldown (where it is required): the last N epochs'\n"
          "                           steps cool down  --lr-cooldown-power X (1.0)  --lr-cooldown-end X (0)\n"
          "                           (these three go with const-cooldown only)\n"
          "  --grad-clip-norm X       clip the global gradient norm to X (none, as open_clip; 0: none)\n"
          "  --accum-freq K (1)  --precision fp32|bf16 (fp32)\n"
          "  --seed N (0)\n"
          "  --device auto|cpu|cuda (auto)  where the parameters, optimizer state and\n"
          "                           activations live; auto: the GPU when one is present\n"
          "Run, checkpoints, evaluation:\n"
          "  --logs DIR (./logs)  --name NAME (date-model-lr-batch)\n"
          "  --save-frequency N (1: epoch_K every N epochs, and always after the last epoch)\n"
          "  --delete-previous-checkpoint (keep only the newest epoch_K)  --save-most-recent\n"
          "  (accepted for open_clip: 'latest' always names the newest checkpoint)\n"
          "  --save-steps N (update 'latest' every N steps; 0: at epoch ends)\n"
          "  --resume latest|PATH     continue exactly (weights, optimizer, step, data position;\n"
          "                           without --steps/--epochs, the run's own length; without\n"
          "                           --batch-size/--accum-freq, the run's own; the\n"
          "                           checkpoint's model and the run's tokenizer: no --model\n"
          "                           or --tokenizer needed)\n"
          "  --val-frequency N (1)  --zeroshot-frequency N (2)  --zeroshot-data SPEC (labelled:\n"
          "                           an ImageFolder DIR or shapes:val[:N]; data without classes is refused)\n"
          "  --zeroshot-templates T    openai | simple | shapes (vlm zeroshot's sets) or a FILE, one\n"
          "                           template per line, {} or {c} = class name (default: 7 prompts\n"
          "                           like \"a photo of {a} {}.\", {a} = a/an; the shapes set on shapes;\n"
          "                           needs zero-shot data)\n"
          "  --eval-steps N           also evaluate every N steps (0: epoch ends only)\n"
          "  --log-every-n-steps N (10)  --stop-at-step N (stop there with a checkpoint)\n"
          "  --json                   print the final evaluation as JSON on stdout\n"
          "Environment: OpenMP threads wait passively after a short spin (see 'vlm --help').\n"
          "\n"
          "Several processes: started by mpirun / srun (a build with MPI: 'vlm version'), the ranks\n"
          "train one model data-parallel: --batch-size is per rank, the loss sees the global batch,\n"
          "rank 0 writes the run and evaluates (see the README).\n"
          "\n"
          "Defaults for --train-data shapes (the demo): --model " SHAPES_MODEL
          " (" SHAPES_SIGLIP_MODEL " with --siglip),\n--tokenizer train:%d, "
          "--batch-size %d, --lr %g, --warmup %d, --steps %d (%d for a CLIP model),\n--eval-steps %d, "
          "--val-data shapes:val, --zeroshot-data shapes:val.\n"
          "\n"
          "Examples:\n"
          "  vlm train --train-data shapes --logs runs --name demo\n"
          "  vlm train --train-data shapes --logs runs --name demo --resume latest\n"
          "  vlm train --train-data shapes --model shapes-demo --logs runs --name clip\n"
          "  vlm train --train-data data/train.tsv --val-data data/val.tsv --model small \\\n"
          "      --tokenizer train:4096 --batch-size 128 --epochs 10 --warmup 500 --logs runs\n"
          "  mpirun -np 4 vlm train --train-data data/train.tsv --model small --tokenizer train:4096 \\\n"
          "      --batch-size 32 --epochs 10 --logs runs --name four\n",
          (long long)VLM_DEFAULT_MAX_PIXELS, SHAPES_VOCAB, SHAPES_BATCH, SHAPES_LR, SHAPES_WARMUP, SHAPES_STEPS,
          SHAPES_CLIP_STEPS, SHAPES_EVAL_STEPS);
}

typedef struct {
  const char *train_data, *val_data, *zs_data, *dataset_type, *model, *tokenizer, *logs, *name, *resume;
  const char *image_mean, *image_std, *image_resize;   /* the images' transform (open_clip's flags) */
  double mean_v[3], std_v[3];                           /* their values, parsed with the options */
  vlm_resize_mode resize_v;
  const char *pretrained;   /* --pretrained FILE: the weights of --model's architecture (open_clip's flag) */
  const char *precision, *scheduler, *templates_file, *upsampling, *csv_img_key, *csv_caption_key, *device;
  char csv_sep;
  double lr, beta1, beta2, eps, wd, grad_clip, temperature, cooldown_power, cooldown_end;
  double coca_caption_w, coca_clip_w;
  long long batch, epochs, steps, warmup, accum, seed, workers, save_freq, save_steps, val_freq, zs_freq, image_size;
  long long stop_at, log_every, eval_steps, epochs_cooldown;
  long long max_pixels;   /* --max-image-pixels (the loaders' decoding) */
  long long bpe_size;   /* --tokenizer train:SIZE */
  int save_most_recent, delete_previous, lock_image, lock_text, json;
  int siglip;         /* --siglip: SigLIP's sigmoid loss (a model with a logit_bias trains with it anyway) */
  int set_batch, set_accum, set_lr, set_warmup, set_epochs, set_steps, set_eval_steps, set_coca_w;
  const char *set_cooldown;   /* the first --lr-cooldown-power / --lr-cooldown-end / --epochs-cooldown given */
  int set_model;      /* --model was given (not the shapes default) */
  int shapes_steps;   /* --steps is the shapes default, set once the model's kind is known */
  int kept_length;    /* a resume without --steps / --epochs: the run's own total_steps */
  const char *given[256];   /* the flags given on the command line (argv's own strings) */
  int n_given;
  long long cooldown_steps_kept;   /* >= 0: a resume's const-cooldown length in steps (the checkpoint's) */
  char scheduler_kept[32];         /* a resume's --lr-scheduler (the checkpoint's) */
} opts;

static int given(const opts *o, const char *flag) {
  for (int i = 0; i < o->n_given; i++)
    if (!strcmp(o->given[i], flag)) return 1;
  return 0;
}

static int parse_double(const char *flag, const char *s, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || !end || *end || end == s || !isfinite(v)) {
    fprintf(stderr, CMD ": %s expects a number, got '%s'\n", flag, s);
    return 0;
  }
  *out = v;
  return 1;
}

static const char *const k_shapes_templates[] = {"{a} {}", "a photo of {a} {}", "an image of {a} {}",
                                                 "a picture of {a} {}", "a drawing of {a} {}", "there is {a} {}"};
static const char *const k_generic_templates[] = {"a photo of {a} {}.", "a bad photo of {a} {}.", "a photo of the {}.",
                                                  "a rendering of {a} {}.", "a close-up photo of {a} {}.",
                                                  "itap of {a} {}.", "a good photo of {a} {}."};

static int is_shapes_spec(const char *s) { return s && !strncmp(s, "shapes", 6) && (!s[6] || s[6] == ':'); }   /* not shapes.tsv */

static int path_exists(const char *p);

/* A CoCa: a checkpoint dir or config with a multimodal_cfg, or a built-in coca* name. */
static int model_is_coca(const char *model) {
  return path_exists(model) ? vlm_model_is_coca(model) == 1 : !strncmp(model, "coca", 4);
}

static int path_exists(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0;
}

static int mkdir_p(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return 0;
    *p = '/';
  }
  return mkdir(buf, 0755) == 0 || errno == EEXIST;
}

/* Captions of the training data for train:SIZE (up to max_n, spread over each source). */
static vlm_status collect_captions(const char *spec, const vlm_source_opts *so, int64_t max_n, char ***out,
                                   int64_t *n_out) {
  char *all = malloc(strlen(spec) + 1);
  if (!all) return vlm_error(VLM_ERR_OOM, "out of memory");
  strcpy(all, spec);
  char **caps = NULL;
  int64_t n = 0, cap = 0;
  vlm_status st = VLM_OK;
  int n_src = 1;
  for (const char *p = all; (p = strstr(p, "::")); p += 2) n_src++;
  char *save = all;
  for (int k = 0; k < n_src && st == VLM_OK; k++) {
    char *sep = strstr(save, "::");
    if (sep) *sep = 0;
    vlm_source *src = NULL;
    st = vlm_source_open(&src, save, so);
    if (st != VLM_OK) break;
    int64_t want = max_n / n_src, size = vlm_source_size(src);
    vlm_sample smp;
    if (!vlm_source_is_stream(src) && size > 0) {
      int64_t take = size < want ? size : want;
      for (int64_t i = 0; i < take && st == VLM_OK; i++) {
        memset(&smp, 0, sizeof smp);
        if (vlm_source_get(src, i * size / take, &smp) == VLM_OK && smp.caption) {
          if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            char **c2 = realloc(caps, (size_t)cap * sizeof *c2);
            if (!c2) st = vlm_error(VLM_ERR_OOM, "out of memory");
            else caps = c2;
          }
          if (st == VLM_OK) {
            caps[n++] = smp.caption;
            smp.caption = NULL;
          }
        }
        vlm_sample_free(&smp);
      }
    } else {
      int64_t got = 0;
      for (int64_t sh = 0; sh < vlm_source_num_shards(src) && got < want && st == VLM_OK; sh++) {
        vlm_shard_reader *r = NULL;
        if (vlm_shard_open(src, sh, &r) != VLM_OK) continue;
        int rc;
        memset(&smp, 0, sizeof smp);
        while (got < want && (rc = vlm_shard_next(r, &smp)) != 0) {
          if (rc == 1 && smp.caption) {
            if (n == cap) {
              cap = cap ? 2 * cap : 1024;
              char **c2 = realloc(caps, (size_t)cap * sizeof *c2);
              if (!c2) {
                st = vlm_error(VLM_ERR_OOM, "out of memory");
                vlm_sample_free(&smp);
                break;
              }
              caps = c2;
            }
            caps[n++] = smp.caption;
            smp.caption = NULL;
            got++;
          }
          vlm_sample_free(&smp);
          memset(&smp, 0, sizeof smp);
        }
        vlm_shard_close(r);
      }
    }
    vlm_source_close(src);
    save = sep ? sep + 2 : save + strlen(save);
  }
  free(all);
  if (st != VLM_OK) {
    for (int64_t i = 0; i < n; i++) free(caps[i]);
    free(caps);
    return st;
  }
  *out = caps;
  *n_out = n;
  return VLM_OK;
}

static vlm_status train_tokenizer(const char *spec, const vlm_source_opts *so, int size, vlm_tokenizer **tok) {
  char **caps = NULL;
  int64_t n = 0;
  vlm_status st = collect_captions(spec, so, 20000, &caps, &n);
  if (st != VLM_OK) return st;
  if (n == 0) return vlm_error(VLM_ERR_FORMAT, "%s: no captions to learn a tokenizer from", spec);
  size_t *lens = malloc((size_t)n * sizeof(size_t));
  if (!lens) st = vlm_error(VLM_ERR_OOM, "out of memory");
  for (int64_t i = 0; lens && i < n; i++) lens[i] = strlen(caps[i]);
  if (st == VLM_OK) st = vlm_bpe_train(tok, (const char *const *)caps, lens, (size_t)n, size);
  for (int64_t i = 0; i < n; i++) free(caps[i]);
  free(caps);
  free(lens);
  return st;
}

/* The run's config.json: the model config and every training parameter. */
static vlm_status write_run_config(const char *run, const vlm_clip_config *c, const vlm_coca_config *coca,
                                   const opts *o, const vlm_train_config *t, const char *tokenizer_desc) {
  char *mj = coca ? vlm_coca_config_to_json(coca) : vlm_clip_config_to_json(c, VLM_CKPT_OPENCLIP);
  if (!mj) return vlm_error(VLM_ERR_OOM, "out of memory");
  /* the paths quoted for JSON (a quote, a backslash or a control character in a file name) */
  char *td = vlm_tools_json_quote(o->train_data), *vd = vlm_tools_json_quote(o->val_data),
       *tk = vlm_tools_json_quote(tokenizer_desc);
  size_t cap = strlen(mj) + (td ? strlen(td) : 0) + (vd ? strlen(vd) : 0) + (tk ? strlen(tk) : 0) + 8192;
  char *buf = td && vd && tk ? malloc(cap) : NULL;
  if (!buf) {
    free(mj);
    free(td);
    free(vd);
    free(tk);
    return vlm_error(VLM_ERR_OOM, "out of memory");
  }
  snprintf(buf, cap,
           "{\"model\": %s,\n \"train\": {\"train_data\": %s, \"val_data\": %s, \"batch_size\": %lld, "
           "\"accum_freq\": %d, \"total_steps\": %lld, \"epochs\": %lld, \"lr\": %g, \"beta1\": %g, \"beta2\": %g, "
           "\"eps\": %g, \"wd\": %g, \"warmup\": %lld, \"lr_scheduler\": \"%s\", \"grad_clip_norm\": %g, "
           "\"precision\": \"%s\", \"device\": \"%s\", \"seed\": %lld, \"workers\": %lld, \"lock_image\": %d, \"lock_text\": %d, "
           "\"tokenizer\": %s, \"context_length\": %lld, \"coca_caption_loss_weight\": %g, "
           "\"coca_contrastive_loss_weight\": %g}}\n",
           mj, td, vd, (long long)t->batch_size, t->accum_freq,
           (long long)t->total_steps, o->epochs, t->lr, t->beta1, t->beta2, t->eps, t->wd, (long long)t->warmup,
           vlm_lr_scheduler_name(t->scheduler), t->grad_clip_norm, t->precision == VLM_PREC_BF16 ? "bf16" : "fp32",
           t->device == VLM_CUDA ? "cuda" : "cpu", o->seed, o->workers, t->lock_image, t->lock_text, tk, (long long)t->context_length,
           o->coca_caption_w, o->coca_clip_w);
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", run);
  vlm_status s = vlm_write_file_atomic(path, buf, strlen(buf));
  free(buf);
  free(mj);
  free(td);
  free(vd);
  free(tk);
  return s;
}

static void print_eval(const vlm_eval_result *r, int64_t step) {
  fprintf(stderr, "eval @ step %lld: %lld samples", (long long)step, (long long)r->n);
  if (r->have_loss) fprintf(stderr, ", val loss %.4f", r->val_loss);
  if (r->have_retrieval)
    fprintf(stderr, ", text->image R@1 %.1f%%, image->text R@1 %.1f%%", 100 * r->ret.t2i.r1, 100 * r->ret.i2t.r1);
  if (r->have_class_retrieval) fprintf(stderr, " (class-level %.1f%% / %.1f%%)", 100 * r->ret_class.t2i.r1,
                                       100 * r->ret_class.i2t.r1);
  if (r->have_zeroshot) {
    fprintf(stderr, ", zero-shot top-1 %.1f%% top-5 %.1f%%", 100 * r->zs.top1, 100 * r->zs.top5);
    if (r->zs.n_subset) fprintf(stderr, " (unseen combinations: top-1 %.1f%% of %lld)", 100 * r->zs.subset_top1,
                                (long long)r->zs.n_subset);
  }
  fputc('\n', stderr);
}

typedef struct {
  opts o;
  char run[2048], ck[2200];
  vlm_clip_config model;           /* CoCa: embed_dim, vision, text of coca */
  int is_coca;
  vlm_coca_config coca;
  vlm_trainer tr;
  vlm_tokenizer *tok;
  vlm_loader *train, *val, *zs;
  vlm_train_log log;
  vlm_eval_cfg ec;
  const char **templates;
  int n_templates;
  char **tmpl_owned;
  vlm_eval_result last;
  int have_last;
  int made_run_dir;   /* this invocation created RUN (a new run, or a --resume PATH into a new one) */
  int lock_fd;        /* RUN/.lock, flock'ed for the whole run (-1: none held) */
  int training;       /* the loop has started: RUN holds the run's own record from here on */
  int64_t start_step; /* the step the loop started at */
  int saved;          /* this invocation wrote a checkpoint */
  int64_t eval_step;  /* the step of the last evaluation (-1: none yet) and whether it ran zero-shot */
  int eval_zs;
  int rank, world;    /* data parallel (mpirun / srun): rank 0 alone writes the run and evaluates */
  vlm_clip_params init;   /* a CLIP checkpoint's weights (any layout vlm_clip_load reads) to fine-tune */
  int have_init;
} run_state;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)ftw;
  return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static vlm_status evaluate(run_state *R, int do_zs) {
  vlm_status st = VLM_OK;
  vlm_eval_result r, z;
  memset(&r, 0, sizeof r);
  memset(&z, 0, sizeof z);
  int same = R->zs == R->val || !R->zs;
  /* Evaluation runs where the parameters are (a GPU trainer's on the GPU). */
  vlm_clip_params *p = &R->tr.p;
  if (R->is_coca) R->ec.coca_params = &R->tr.coca.p;
  if (R->val) st = vlm_train_evaluate(&R->ec, p, R->val, 1, same && do_zs, &r);
  if (st == VLM_OK && R->zs && !same && do_zs) {
    st = vlm_train_evaluate(&R->ec, p, R->zs, 0, 1, &z);
    r.zs = z.zs;
    r.have_zeroshot = z.have_zeroshot;
  }
  if (st != VLM_OK) return st;
  char fields[4096];
  vlm_eval_result_json(&r, fields, sizeof fields);
  vlm_log_eval e = {R->tr.step, r.have_loss ? r.val_loss : NAN, r.have_zeroshot ? r.zs.top1 : NAN,
                    r.have_zeroshot && r.zs.n_subset ? r.zs.subset_top1 : NAN, r.have_retrieval ? r.ret.t2i.r1 : NAN,
                    r.have_retrieval ? r.ret.i2t.r1 : NAN};
  vlm_train_log_eval(&R->log, &e, R->tr.epoch, fields);
  print_eval(&r, R->tr.step);
  R->last = r;
  R->have_last = 1;
  R->eval_step = R->tr.step;
  R->eval_zs = do_zs;
  return vlm_train_log_chart(&R->log);
}

/* One `vlm train` a run directory: RUN/.lock is held with flock(LOCK_EX) by the open
 * descriptor until the process ends (the kernel drops it when the process dies, however it
 * dies; a stale file locks nothing). Two runs on one directory broke each other: each one's
 * checkpoint cleanup removed the other's temporary checkpoint. The file holds the pid of the
 * run holding it, for the message. With create 0 a missing lock file is no error (returns 0,
 * nothing held). Returns 0, or 1 with the message printed. */
static int lock_run_dir(run_state *R, int create) {
  char path[2200];
  snprintf(path, sizeof path, "%s/.lock", R->run);
  int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
  if (fd < 0) {
    if (!create && errno == ENOENT) return 0;
    fprintf(stderr, CMD ": %s: cannot open the run's lock file: %s\n", path, strerror(errno));
    return 1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    if (e == EWOULDBLOCK) {
      char buf[32] = "";
      ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
      long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
      if (pid > 0) fprintf(stderr, CMD ": %s is in use by another vlm train (pid %ld)\n", R->run, pid);
      else fprintf(stderr, CMD ": %s is in use by another vlm train\n", R->run);
      close(fd);
      return 1;
    }
    /* A file system without locks: go on unguarded, as before (said once). */
    fprintf(stderr, CMD ": warning: %s: cannot lock the run directory (%s): make sure no other vlm train uses it\n",
            R->run, strerror(e));
    R->lock_fd = fd;
    return 0;
  }
  /* The pid is only for another run's message: failing to write it is no error. */
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) != n) vlm_log(VLM_LOG_DEBUG, "%s: pid not written", path);
  R->lock_fd = fd;
  return 0;
}

/* evaluate() unless this step was evaluated already (with zero-shot when asked for), or
 * there is nothing to measure (no val data, and no zero-shot this time). */
static vlm_status evaluate_once(run_state *R, int do_zs) {
  if (R->rank != 0 || (!R->val && !(R->zs && do_zs))) return VLM_OK;
  if (R->eval_step == R->tr.step && (R->eval_zs || !do_zs)) return VLM_OK;
  return evaluate(R, do_zs);
}

static int fail(const char *what) {
  fprintf(stderr, CMD ": %s%s%s\n", what ? what : "", what && *what ? ": " : "", vlm_last_error());
  return 1;
}

/* train: the training data (--dataset-type, ranks, upsampling); zeroshot: labelled data, a
 * folder read as an ImageFolder (as vlm eval --zeroshot does). */
static vlm_status open_loader(run_state *R, vlm_loader **out, const char *spec, int train, int zeroshot) {
  vlm_loader_cfg lc;
  vlm_loader_cfg_default(&lc);
  lc.data = spec;
  vlm_source_opts_default(&lc.src);
  if (R->o.dataset_type && !vlm_ds_type_parse(R->o.dataset_type, &lc.src.type))
    return vlm_error(VLM_ERR_ARG, "--dataset-type: unknown type '%s'", R->o.dataset_type);
  if (!train && !strcmp(spec, R->o.train_data ? R->o.train_data : "")) (void)0;
  if (!train) lc.src.type = VLM_DS_AUTO;
  struct stat zs_sb;
  if (zeroshot && strncmp(spec, "shapes", 6) && stat(spec, &zs_sb) == 0 && S_ISDIR(zs_sb.st_mode))
    lc.src.type = VLM_DS_IMAGEFOLDER;   /* its images may have .txt captions beside them too */
  lc.src.csv_separator = R->o.csv_sep;
  if (R->o.csv_img_key) lc.src.csv_img_key = R->o.csv_img_key;
  if (R->o.csv_caption_key) lc.src.csv_caption_key = R->o.csv_caption_key;
  lc.src.seed = 0;  /* the shapes set is the same set whatever the training seed */
  if (train) {      /* ranks: each reads its share of every global batch */
    lc.rank = R->rank;
    lc.world = R->world > 0 ? R->world : 1;
  }
  double ups[64];
  if (train && R->o.upsampling) {
    int k = 0;
    const char *p = R->o.upsampling;
    while (*p && k < 64) {
      char *end = NULL;
      ups[k++] = strtod(p, &end);
      if (end == p) return vlm_error(VLM_ERR_ARG, "--train-data-upsampling-factors: bad list '%s'", R->o.upsampling);
      p = end;
      if (!strncmp(p, "::", 2)) p += 2;
      else if (*p) return vlm_error(VLM_ERR_ARG, "--train-data-upsampling-factors: bad list '%s'", R->o.upsampling);
    }
    if (*p) return vlm_error(VLM_ERR_ARG, "--train-data-upsampling-factors: more than 64 factors");
    lc.upsampling = ups;
    lc.n_upsampling = k;
  }
  lc.temperature = train ? R->o.temperature : 0;
  lc.batch_size = (int)R->o.batch;
  lc.workers = (int)R->o.workers;
  lc.decode.max_pixels = R->o.max_pixels;
  lc.seed = (uint64_t)R->o.seed;
  lc.train = train;
  vlm_vit_preprocess_cfg(&R->model.vision, &lc.pre);   /* its preprocess_cfg's mean / std (a fine-tuned checkpoint's) */
  lc.context_length = (int)R->model.text.context_length;
  lc.pad_id = 0;
  lc.tokenizer = R->tok;
  lc.drop_last = train;
  return vlm_loader_open(out, &lc);   /* its errors name the source */
}

static vlm_status load_templates(run_state *R, int shapes) {
  if (!R->o.templates_file) {
    R->templates = shapes ? (const char **)k_shapes_templates : (const char **)k_generic_templates;
    R->n_templates = shapes ? (int)(sizeof k_shapes_templates / sizeof *k_shapes_templates)
                            : (int)(sizeof k_generic_templates / sizeof *k_generic_templates);
    return VLM_OK;
  }
  const char *const *builtin;   /* a built-in set by name, else a file (as vlm eval / zeroshot --templates) */
  int n = vlm_zeroshot_templates_builtin(R->o.templates_file, &builtin);
  if (n > 0) {
    R->templates = (const char **)builtin;
    R->n_templates = n;
    return VLM_OK;
  }
  vlm_status st = vlm_zeroshot_templates_load(R->o.templates_file, &R->tmpl_owned, &n);
  if (st != VLM_OK) return st;
  if (n == 0) return vlm_error(VLM_ERR_FORMAT, "%s: no templates", R->o.templates_file);
  R->templates = (const char **)R->tmpl_owned;
  R->n_templates = n;
  return VLM_OK;
}

static int is_dir(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The architecture of a model (a built-in name, a config file or a checkpoint dir; CoCa
 * or CLIP) as its open_clip config JSON, the vocabulary size left out (a run sets it from
 * its tokenizer) and the image size replaced by image_size when > 0. NULL with the error
 * set when it cannot be read. */
static char *arch_json(const char *model, int coca, int64_t image_size) {
  char cfg[4096], weights[4096];
  const int file = path_exists(model);
  vlm_status st = file ? vlm_model_paths(model, cfg, weights, sizeof cfg) : VLM_OK;
  if (st != VLM_OK) return NULL;
  if (coca) {
    vlm_coca_config c;
    st = file ? vlm_coca_config_load(&c, cfg) : vlm_coca_config_builtin(&c, model);
    if (st != VLM_OK) return NULL;
    c.text.vocab_size = c.decoder.vocab_size = 0;
    if (image_size > 0) c.vision.image_size = image_size;
    return vlm_coca_config_to_json(&c);
  }
  vlm_clip_config c;
  st = file ? vlm_clip_config_resolve(&c, cfg, weights, NULL, NULL) : vlm_clip_config_builtin(&c, model);
  if (st != VLM_OK) return NULL;
  c.text.vocab_size = 0;
  c.has_logit_bias = 0;   /* the towers' architecture: a SigLIP checkpoint is resumed as one (--siglip or not) */
  c.init_logit_bias = 0;
  if (image_size > 0) c.vision.image_size = image_size;
  return vlm_clip_config_to_json(&c, VLM_CKPT_OPENCLIP);
}

/* --resume DIR: a checkpoint directory, whose model is the one trained. A --model given
 * beside it must be of the same kind (CLIP or CoCa: exit 2); naming another architecture
 * is only warned about, since the checkpoint's is kept. Returns 0 or the exit code. */
static int check_resume(const opts *o, const char *dir) {
  if (!is_dir(dir)) {
    fprintf(stderr, CMD ": --resume %s: not a checkpoint directory (one holds open_clip_config.json, "
            "open_clip_model.safetensors and train_state.safetensors)\n", dir);
    return 1;
  }
  char sub[4200], cfg[4200];
  snprintf(sub, sizeof sub, "%s/checkpoints", dir);
  snprintf(cfg, sizeof cfg, "%s/open_clip_config.json", dir);
  if (is_dir(sub) && !path_exists(cfg)) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    fprintf(stderr, CMD ": --resume %s: a run directory, not a checkpoint: give --resume %.*s/checkpoints/latest "
            "(or --logs and --name of that run with --resume latest)\n", dir, (int)n, dir);
    return 1;
  }
  const int coca = vlm_model_is_coca(dir);
  if (coca < 0) {
    fprintf(stderr, CMD ": --resume: %s\n", vlm_last_error());
    return 1;
  }
  if (!o->set_model) return 0;
  if (model_is_coca(o->model) != coca) {
    fprintf(stderr, CMD ": --model %s is a %s model, the checkpoint %s a %s one: resuming continues the "
            "checkpoint's model (drop --model, or train %s in a new run without --resume)\n", o->model,
            coca ? "CLIP" : "CoCa", dir, coca ? "CoCa" : "CLIP", o->model);
    return 2;
  }
  char *want = arch_json(o->model, coca, o->image_size);
  if (!want) {
    fprintf(stderr, CMD ": --model: %s\n", vlm_last_error());
    return 2;
  }
  char *have = arch_json(dir, coca, 0);
  if (!have) {
    free(want);
    fprintf(stderr, CMD ": --resume: %s\n", vlm_last_error());
    return 1;
  }
  if (strcmp(want, have))
    fprintf(stderr, CMD ": warning: --model %s is not the architecture of the checkpoint %s: resuming trains the "
            "checkpoint's model (drop --model, or train %s in a new run without --resume)\n", o->model, dir, o->model);
  free(want);
  free(have);
  return 0;
}

static vlm_status save_named(run_state *R, const char *name) {
  if (R->rank != 0) return VLM_OK;
  vlm_status st = vlm_trainer_save_named(&R->tr, R->ck, name);
  if (st == VLM_OK) R->saved = 1;
  return st;
}

static vlm_status save_latest(run_state *R) {
  if (R->rank != 0) return VLM_OK;
  vlm_status st = vlm_trainer_save_latest(&R->tr, R->ck);
  if (st == VLM_OK) R->saved = 1;
  return st;
}

/* The bad samples the loader skipped in the epoch now ending, if any. */
static void report_bad(run_state *R, const vlm_loader_stats *ls) {
  if (!ls->bad) return;
  const int64_t n = vlm_loader_samples_per_epoch(R->train);
  char distinct[128];
  if (ls->samples == 0 && n > 0 && ls->bad_distinct >= n)
    snprintf(distinct, sizeof distinct, "%lld distinct: all %lld samples of the data, each tried about %lld times",
             (long long)ls->bad_distinct, (long long)n, (long long)((ls->bad + n / 2) / n));
  else
    snprintf(distinct, sizeof distinct, "%lld distinct", (long long)ls->bad_distinct);
  fprintf(stderr, "epoch %lld: %lld bad samples skipped (%s; read %lld, decode %lld, caption %lld)%s%s\n",
          (long long)R->tr.epoch, (long long)ls->bad, distinct, (long long)ls->bad_read, (long long)ls->bad_decode,
          (long long)ls->bad_caption, ls->last_error[0] ? "; last: " : "", ls->last_error);
}

/* The end of epoch R->tr.epoch: the counter (and the data position: batch 0 of the next),
 * then as open_clip after each epoch, the last included, its evaluation (every
 * --val-frequency epochs, zero-shot every --zeroshot-frequency; both at the run's last step)
 * and its checkpoint epoch_K with 'latest' (every --save-frequency epochs). 0 or the exit code. */
static int finish_epoch(run_state *R, int64_t total_steps) {
  const opts *o = &R->o;
  vlm_status st;
  R->tr.epoch++;
  R->tr.epoch_batches = 0;
  R->tr.epoch_seq = 0;
  const int64_t ep = R->tr.epoch;
  const int last = R->tr.step >= total_steps;
  if (((o->val_freq > 0 && ep % o->val_freq == 0) || last) &&
      (st = evaluate_once(R, last || (o->zs_freq > 0 && ep % o->zs_freq == 0))) != VLM_OK)
    return fail("evaluation");
  /* as open_clip: every --save-frequency epochs, and the run's last epoch whatever it is */
  if ((o->save_freq > 0 && ep % o->save_freq == 0) || last) {
    char name[64];
    snprintf(name, sizeof name, "epoch_%lld", (long long)ep);
    if ((st = save_named(R, name)) != VLM_OK || (st = save_latest(R)) != VLM_OK) return fail("checkpoint");
    /* the epoch_K saved before this one (every --save-frequency epochs, or none) */
    const int64_t prev = o->save_freq > 0 ? (ep - 1) / o->save_freq * o->save_freq : 0;
    if (o->delete_previous && prev > 0 && prev < ep && R->rank == 0) {
      char old[2300];
      snprintf(old, sizeof old, "%s/epoch_%lld", R->ck, (long long)prev);
      char cmd_old[4400];
      snprintf(cmd_old, sizeof cmd_old, "%s/open_clip_model.safetensors", old);
      remove(cmd_old);
      snprintf(cmd_old, sizeof cmd_old, "%s/open_clip_config.json", old);
      remove(cmd_old);
      snprintf(cmd_old, sizeof cmd_old, "%s/train_state.safetensors", old);
      remove(cmd_old);
      rmdir(old);
    }
  }
  return 0;
}

/* A resumed train_state against this invocation's flags. Its data position (epoch, micro-batches
 * into the epoch) counts in the checkpoint's --batch-size: another batch size converts it when
 * the samples consumed (batches x the old size) are whole batches of the new one, and is
 * refused otherwise. A run already at (or past) the requested total, or --stop-at-step, would
 * train nothing: refused too. 0 or the exit code. */
static int resume_checks(run_state *R, const char *dir, const vlm_train_config *t, int64_t steps_per_epoch) {
  const opts *o = &R->o;
  const int64_t B0 = R->tr.loaded_batch_size, K0 = R->tr.loaded_accum_freq;
  const int64_t W0 = R->tr.loaded_world > 0 ? R->tr.loaded_world : 1, W = R->world > 0 ? R->world : 1;
  if (B0 > 0 && W0 != W) {
    /* another rank count: the position counts each rank's batches; the samples consumed of the
     * epoch (every rank's) must be whole global batches of the new ranks x --batch-size */
    const int64_t samples = R->tr.epoch_batches * B0 * W0, G = o->batch * W;
    if (samples % G) {
      fprintf(stderr, CMD ": --resume %s: the checkpoint was trained by %lld rank%s of --batch-size %lld and stands "
              "%lld samples into epoch %lld; %d rank%s of --batch-size %lld (%lld a batch) do not divide %lld, so that "
              "data position cannot be kept\n", dir, (long long)W0, W0 == 1 ? "" : "s", (long long)B0,
              (long long)samples, (long long)R->tr.epoch, (int)W, W == 1 ? "" : "s", o->batch, (long long)G,
              (long long)samples);
      return 2;
    }
    fprintf(stderr, CMD ": %s%lld rank%s of --batch-size %lld, the checkpoint's %lld of %lld: its data position (epoch "
            "%lld, %lld samples) becomes batch %lld of each rank%s\n", G == B0 * W0 ? "" : "warning: ", (long long)W,
            W == 1 ? "" : "s", o->batch, (long long)W0, (long long)B0, (long long)R->tr.epoch, (long long)samples,
            (long long)(samples / G),
            G == B0 * W0 ? "" : "; the step count and the lr schedule go on with another global batch");
    R->tr.epoch_batches = samples / G;
    R->tr.epoch_seq = -1;   /* another partition of the stream: the position counts batches */
  } else if (B0 > 0 && B0 != o->batch) {
    const int64_t samples = R->tr.epoch_batches * B0;
    if (samples % o->batch) {
      fprintf(stderr, CMD ": --resume %s: the checkpoint was trained with --batch-size %lld and stands %lld samples "
              "into epoch %lld (batch %lld); --batch-size %lld does not divide %lld, so that data position cannot be "
              "kept: resume with --batch-size %lld (or one that divides %lld)\n", dir, (long long)B0,
              (long long)samples, (long long)R->tr.epoch, (long long)R->tr.epoch_batches, o->batch,
              (long long)samples, (long long)B0, (long long)samples);
      return 2;
    }
    fprintf(stderr, CMD ": warning: --batch-size %lld, the checkpoint's %lld: its data position (epoch %lld, batch %lld "
            "= %lld samples) becomes batch %lld; the step count and the lr schedule go on from step %lld with %lld "
            "samples a step (not the run a straight --batch-size %lld would be)\n", o->batch, (long long)B0,
            (long long)R->tr.epoch, (long long)R->tr.epoch_batches, (long long)samples,
            (long long)(samples / o->batch), (long long)R->tr.step, o->batch * o->accum, o->batch);
    R->tr.epoch_batches = samples / o->batch;
    R->tr.epoch_seq = -1;
  }
  if (K0 > 0 && K0 != o->accum)
    fprintf(stderr, CMD ": warning: --accum-freq %lld, the checkpoint's %lld: the data position (batch %lld of epoch "
            "%lld) is kept; the steps from step %lld take %lld x %lld samples\n", o->accum, (long long)K0,
            (long long)R->tr.epoch_batches, (long long)R->tr.epoch, (long long)R->tr.step, o->accum, o->batch);
  if (R->tr.step >= t->total_steps) {
    char total[160], more[96] = "";
    if (o->kept_length) snprintf(total, sizeof total, "the run's own length");
    else if (o->steps > 0) snprintf(total, sizeof total, "--steps %lld%s", o->steps, o->shapes_steps ? ", the shapes default" : "");
    else snprintf(total, sizeof total, "--epochs %lld%s x %lld steps", o->epochs, o->set_epochs ? "" : " (the default)",
                  (long long)steps_per_epoch);
    if (steps_per_epoch > 0) snprintf(more, sizeof more, " or --epochs %lld or more", (long long)(R->tr.epoch + 1));
    fprintf(stderr, CMD ": --resume %s: the run is already at step %lld (epoch %lld) and the requested total is %lld "
            "steps (%s): nothing to train; ask for more with --steps above %lld%s\n", dir, (long long)R->tr.step,
            (long long)R->tr.epoch, (long long)t->total_steps, total, (long long)R->tr.step, more);
    return 2;
  }
  if (o->stop_at > 0 && o->stop_at <= R->tr.step) {
    fprintf(stderr, CMD ": --resume %s: the run is already at step %lld: --stop-at-step %lld would train nothing\n",
            dir, (long long)R->tr.step, o->stop_at);
    return 2;
  }
  return 0;
}

/* One optimizer / schedule setting of a checkpoint: its train_state's metadata (written since
 * 2026-11-28), else the run's config.json (DIR/../../config.json, "train"); NULL when neither. */
static const char *kept_setting(const vlm_safetensors *st, const cJSON *train, const char *key, char *buf,
                                size_t n) {
  const char *m = st ? vlm_st_meta(st, key) : NULL;
  if (m) return m;
  const cJSON *v = train ? cJSON_GetObjectItemCaseSensitive(train, key) : NULL;
  if (cJSON_IsNumber(v)) {
    snprintf(buf, n, "%.17g", v->valuedouble);
    return buf;
  }
  if (cJSON_IsString(v) && v->valuestring) {
    snprintf(buf, n, "%s", v->valuestring);
    return buf;
  }
  return NULL;
}

/* A resume goes on with the checkpoint's learning rate, schedule, AdamW and clipping settings
 * for every flag not given again (a resume "continues exactly"; open_clip would take the
 * command line's, defaults included). Said on stderr when a value differs from the default. */
static void resume_settings(run_state *R, const char *dir) {
  opts *o = &R->o;
  char path[4200];
  snprintf(path, sizeof path, "%s/train_state.safetensors", dir);
  vlm_safetensors st;
  const int have_st = vlm_st_open(&st, path) == VLM_OK;
  vlm_error_clear();
  cJSON *root = NULL;
  const cJSON *train = NULL;
  if (!have_st || !vlm_st_meta(&st, "lr")) {   /* an older checkpoint: its run's config.json */
    char *json = NULL;
    snprintf(path, sizeof path, "%s/../../config.json", dir);
    if (vlm_read_text_file(path, &json) == VLM_OK && (root = cJSON_Parse(json)) != NULL)
      train = cJSON_GetObjectItemCaseSensitive(root, "train");
    free(json);
    vlm_error_clear();
  }
  const struct { const char *key, *flag; double *d; long long *i; double lo, hi; } k[] = {
    {"lr", "--lr", &o->lr, NULL, 0, 1e30},
    {"beta1", "--beta1", &o->beta1, NULL, 0, 0.999999999},
    {"beta2", "--beta2", &o->beta2, NULL, 0, 0.999999999},
    {"eps", "--eps", &o->eps, NULL, 1e-30, 1e30},
    {"wd", "--wd", &o->wd, NULL, 0, 1e30},
    {"warmup", "--warmup", NULL, &o->warmup, 0, 1e12},
    {"seed", "--seed", NULL, &o->seed, 0, 4611686018427387904.0},
    {"grad_clip_norm", "--grad-clip-norm", &o->grad_clip, NULL, 0, 1e30},
    {"cooldown_power", "--lr-cooldown-power", &o->cooldown_power, NULL, 1e-30, 1e30},
    {"cooldown_end_lr", "--lr-cooldown-end", &o->cooldown_end, NULL, 0, 1e30},
    {"coca_caption_loss_weight", "--coca-caption-loss-weight", &o->coca_caption_w, NULL, 0, 1e30},
    {"coca_contrastive_loss_weight", "--coca-contrastive-loss-weight", &o->coca_clip_w, NULL, 0, 1e30},
  };
  char said[1024] = "", buf[128];
  size_t used = 0;
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
    if (given(o, k[i].flag)) continue;
    const char *v = kept_setting(have_st ? &st : NULL, train, k[i].key, buf, sizeof buf);
    if (!v) continue;
    char *end = NULL;
    errno = 0;
    if (k[i].i) {   /* counts: whole numbers, exact (a seed may need all 62 bits) */
      long long y = strtoll(v, &end, 10);
      if (errno || end == v || *end || y < (long long)k[i].lo || (double)y > k[i].hi) continue;
      if (y != *k[i].i && used < sizeof said)
        used += (size_t)snprintf(said + used, sizeof said - used, " %s %lld", k[i].flag, y);
      *k[i].i = y;
      continue;
    }
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= k[i].lo && x <= k[i].hi)) continue;
    /* the trainer keeps floats: a value is news when the float differs */
    if ((float)x != (float)*k[i].d && used < sizeof said)
      used += (size_t)snprintf(said + used, sizeof said - used, " %s %.6g", k[i].flag, x);
    *k[i].d = x;
  }
  if (!given(o, "--lr-scheduler")) {
    const char *v = kept_setting(have_st ? &st : NULL, train, "lr_scheduler", buf, sizeof buf);
    vlm_lr_scheduler sch;
    if (v && vlm_lr_scheduler_parse(v, &sch)) {
      if (strcmp(v, o->scheduler) && used < sizeof said)
        used += (size_t)snprintf(said + used, sizeof said - used, " --lr-scheduler %s", v);
      snprintf(o->scheduler_kept, sizeof o->scheduler_kept, "%s", v);
      o->scheduler = o->scheduler_kept;
    }
  }
  if (!given(o, "--epochs-cooldown") && have_st) {   /* kept in steps (config.json has no such field) */
    const char *v = vlm_st_meta(&st, "cooldown_steps");
    long long cs;
    char extra;
    if (v && sscanf(v, "%lld%c", &cs, &extra) == 1 && cs >= 0) o->cooldown_steps_kept = cs;
  }
  if (used && R->rank == 0)
    fprintf(stderr, CMD ": resuming with the checkpoint's%s (give a flag to change it)\n", said);
  if (have_st && !vlm_st_meta(&st, "lr") && !train && R->rank == 0)
    fprintf(stderr, CMD ": warning: %s records no learning rate or schedule settings (a checkpoint from before "
            "2026-11-28 outside its run): the flags given, or their defaults, apply\n", dir);
  cJSON_Delete(root);
  if (have_st) vlm_st_close(&st);
}

/* A resume without --batch-size / --accum-freq goes on with the checkpoint's own (its
 * train_state's; the global batch kept when the rank count changed and divides it), not the
 * defaults: a run of --batch-size 16 resumed plainly stays at 16. */
static int resume_sizes(run_state *R, const char *dir) {
  opts *o = &R->o;
  char path[4200];
  snprintf(path, sizeof path, "%s/train_state.safetensors", dir);
  vlm_safetensors st;
  if (vlm_st_open(&st, path) != VLM_OK) {
    if (path_exists(path)) {   /* there but unreadable: said now, not as a failure of the defaults it would leave */
      fprintf(stderr, CMD ": --resume %s: %s\n", dir, vlm_last_error());
      return 1;
    }
    vlm_error_clear();   /* none: a weights-only checkpoint */
    return 0;
  }
  if (o->set_batch && o->set_accum) {
    vlm_st_close(&st);
    return 0;
  }
  const char *b = vlm_st_meta(&st, "batch_size"), *k = vlm_st_meta(&st, "accum_freq"), *w = vlm_st_meta(&st, "world");
  long long B0 = 0, K0 = 0, W0 = 1;
  const long long W = R->world > 0 ? R->world : 1;
  if (b && sscanf(b, "%lld", &B0) == 1 && B0 >= 1 && B0 <= (1 << 20) && !o->set_batch) {
    if (w && sscanf(w, "%lld", &W0) == 1 && W0 >= 1 && W0 != W && (B0 * W0) % W == 0) B0 = B0 * W0 / W;
    if (B0 != o->batch && R->rank == 0)
      fprintf(stderr, CMD ": --batch-size %lld, the checkpoint's (give --batch-size to change it)\n", B0);
    o->batch = B0;
  }
  if (k && sscanf(k, "%lld", &K0) == 1 && K0 >= 1 && K0 <= 4096 && !o->set_accum) {
    if (K0 != o->accum && R->rank == 0)
      fprintf(stderr, CMD ": --accum-freq %lld, the checkpoint's (give --accum-freq to change it)\n", K0);
    o->accum = K0;
  }
  vlm_st_close(&st);
  return 0;
}

static int run(run_state *R) {
  opts *o = &R->o;
  R->eval_step = -1;
  const int shapes = is_shapes_spec(o->train_data);
  vlm_status st;
  /* ---- the run directory */
  char default_name[256];
  if (!o->name) {
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    char ts[64];
    strftime(ts, sizeof ts, "%Y_%m_%d-%H_%M_%S", &tmv);
    snprintf(default_name, sizeof default_name, "%s-model_%s-lr_%g-b_%lld", ts, o->model ? o->model : SHAPES_MODEL,
             o->lr, o->batch);
    for (char *p = default_name; *p; p++)
      if (*p == '/') *p = '_';
    o->name = default_name;
  }
  snprintf(R->run, sizeof R->run, "%s/%s", o->logs, o->name);
  /* ranks: rank 0's name (the default one holds the time), written by rank 0 alone */
  if (R->world > 1 && vlm_comm_bcast_bytes(R->run, VLM_CPU, sizeof R->run, 0) != VLM_OK) return fail("ranks");
  snprintf(R->ck, sizeof R->ck, "%s/checkpoints", R->run);
  const int lead = R->rank == 0;
  /* A run directory another vlm train holds is refused before anything is read from it. */
  if (lead && path_exists(R->run) && lock_run_dir(R, 0)) return 1;
  char resume_dir[4096] = "";
  if (o->resume) {
    if (!strcmp(o->resume, "latest")) snprintf(resume_dir, sizeof resume_dir, "%s/latest", R->ck);
    else snprintf(resume_dir, sizeof resume_dir, "%s", o->resume);
    if (!path_exists(resume_dir)) {
      fprintf(stderr, CMD ": %s: no checkpoint to resume from\n", resume_dir);
      return 1;
    }
    int rc = check_resume(o, resume_dir);
    if (rc) return rc;
    if (resume_sizes(R, resume_dir)) return 1;
    resume_settings(R, resume_dir);
  } else if (lead && path_exists(R->run)) {
    char ckl[4200];
    snprintf(ckl, sizeof ckl, "%s/latest", R->ck);
    fprintf(stderr, CMD ": %s: the run directory exists%s\n", R->run,
            path_exists(ckl) ? " (continue it with --resume latest, or pick another --name)"
                             : " but holds no checkpoint to resume (a run that stopped before its first one): remove it, "
                               "or pick another --name");
    return 1;
  }
  if (o->siglip && model_is_coca(o->resume ? resume_dir : o->model)) {   /* open_clip: CoCa has no SigLIP loss */
    fprintf(stderr, CMD ": --siglip: %s is a CoCa model, whose loss is CoCa's (open_clip trains no CoCa with the "
            "sigmoid loss): train a CLIP model with --siglip (e.g. --model shapes-demo), or drop --siglip\n",
            o->resume ? resume_dir : o->model);
    return 2;
  }
  if (o->set_coca_w && !model_is_coca(o->resume ? resume_dir : o->model)) {   /* before any work */
    fprintf(stderr, CMD ": --coca-caption-loss-weight / --coca-contrastive-loss-weight: %s is a CLIP model (no "
            "caption loss)\n", o->resume ? resume_dir : o->model);
    return 2;
  }
  const int run_existed = path_exists(R->run);   /* a resumed run's; a --resume PATH into a new --name makes one */
  if (lead && !mkdir_p(R->ck)) {
    fprintf(stderr, CMD ": %s: cannot create the run directory: %s\n", R->ck, strerror(errno));
    return 1;
  }
  /* A new run's directory (or an old run's without a lock file): lock it now. Another new run
   * of the same name that raced this one to mkdir loses here and leaves the directory be. */
  if (lead && R->lock_fd < 0 && lock_run_dir(R, 1)) return 1;
  R->made_run_dir = lead && !run_existed;
  /* ---- the tokenizer: the run's own when it has one (a resumed run) */
  char tokdir[4200], tok_desc[4200];
  snprintf(tokdir, sizeof tokdir, "%s/tokenizer", R->run);
  vlm_source_opts so;
  vlm_source_opts_default(&so);
  if (o->dataset_type && !vlm_ds_type_parse(o->dataset_type, &so.type)) {
    fprintf(stderr, CMD ": --dataset-type: unknown type '%s' (auto|csv|coco|wds|folder|imagefolder|shapes)\n",
            o->dataset_type);
    return 2;
  }
  so.csv_separator = o->csv_sep;
  so.csv_group_images = 0;   /* the captions only */
  if (o->csv_img_key) so.csv_img_key = o->csv_img_key;
  if (o->csv_caption_key) so.csv_caption_key = o->csv_caption_key;
  char tokfile[4300];
  snprintf(tokfile, sizeof tokfile, "%s/vocab.json", tokdir);
  char found_tok[4096];
  if (o->resume && path_exists(tokfile)) {
    st = vlm_tokenizer_load(&R->tok, tokdir);
    snprintf(tok_desc, sizeof tok_desc, "%s", tokdir);
  } else if (!o->tokenizer) {   /* a resume into a run without one: the checkpoint's */
    if (vlm_find_tokenizer(resume_dir, found_tok, sizeof found_tok) <= 0) {
      fprintf(stderr, CMD ": --resume %s: no tokenizer in the run (%s) or beside the checkpoint: give --tokenizer\n",
              resume_dir, tokdir);
      return 2;
    }
    st = vlm_tokenizer_load(&R->tok, found_tok);
    snprintf(tok_desc, sizeof tok_desc, "%s", found_tok);
  } else if (!strncmp(o->tokenizer, "train:", 6)) {
    const long long size = o->bpe_size;
    fprintf(stderr, "learning a BPE vocabulary of %lld ids on the training captions...\n", size);
    st = train_tokenizer(o->train_data, &so, (int)size, &R->tok);
    snprintf(tok_desc, sizeof tok_desc, "%s", o->tokenizer);
  } else {
    st = vlm_tokenizer_load(&R->tok, o->tokenizer);
    snprintf(tok_desc, sizeof tok_desc, "%s", o->tokenizer);
  }
  if (st != VLM_OK) return fail("tokenizer");
  if (lead && !path_exists(tokfile) && (!mkdir_p(tokdir) || (st = vlm_tokenizer_save_hf(R->tok, tokdir)) != VLM_OK))
    return fail(tokdir);
  const int V = vlm_tokenizer_vocab_size(R->tok);
  if (vlm_tokenizer_eot(R->tok) != V - 1) {
    fprintf(stderr, CMD ": %s: <|endoftext|> must be the last id (CLIP pools the text at the largest id)\n", tok_desc);
    return 1;
  }
  /* ---- the model: CLIP or CoCa (a multimodal_cfg) */
  vlm_ckpt_format fmt;
  int from_ckpt = 0;
  const char *model_dir = o->resume ? resume_dir : o->model;
  struct stat msb;
  /* a checkpoint: a directory, or a weights file (a PyTorch checkpoint, safetensors) */
  int model_is_dir = o->resume || (path_exists(o->model) && stat(o->model, &msb) == 0 &&
                                   (S_ISDIR(msb.st_mode) || vlm_is_weights_file(o->model)));
  R->is_coca = model_is_coca(model_dir);
  if (o->shapes_steps) o->steps = R->is_coca ? SHAPES_STEPS : SHAPES_CLIP_STEPS;
  const char *model_label = o->resume ? resume_dir : o->model;   /* what is trained */
  if (R->is_coca) {
    if (o->pretrained) {   /* --model's config, --pretrained's weights */
      vlm_coca_params tmp;
      if ((st = vlm_coca_load_as(o->pretrained, o->model, &R->coca, &tmp)) != VLM_OK) return fail("--pretrained");
      vlm_coca_params_free(&tmp);
      from_ckpt = 1;
    } else if (o->resume) {   /* the config alone: the trainer reads the weights (once) */
      char cfg[4096], weights[4096];
      st = vlm_model_paths(resume_dir, cfg, weights, sizeof cfg);
      if (st == VLM_OK && !cfg[0]) st = vlm_error(VLM_ERR_FORMAT, "%s: no CoCa config beside the weights", resume_dir);
      if (st == VLM_OK) st = vlm_coca_config_load(&R->coca, cfg);
      if (st != VLM_OK) return fail("--resume");
      from_ckpt = 1;
    } else if (model_is_dir) {
      vlm_coca_params tmp;
      if ((st = vlm_coca_load(model_dir, &R->coca, &tmp)) != VLM_OK) return fail("--model");
      vlm_coca_params_free(&tmp);
      from_ckpt = 1;
    } else if (path_exists(o->model)) {
      if ((st = vlm_coca_config_load(&R->coca, o->model)) != VLM_OK) return fail("--model");
    } else if ((st = vlm_coca_config_builtin(&R->coca, o->model)) != VLM_OK) {
      fprintf(stderr, CMD ": --model: %s\n", vlm_last_error());
      return 2;
    }
    if (!from_ckpt) {
      R->coca.text.vocab_size = R->coca.decoder.vocab_size = V;
      if (o->image_size > 0 && o->image_size % R->coca.vision.patch_size == 0) R->coca.vision.image_size = o->image_size;
    }
    if (from_ckpt && V > R->coca.text.vocab_size) {
      fprintf(stderr, CMD ": the tokenizer has %d ids, the model's vocabulary %lld\n", V,
              (long long)R->coca.text.vocab_size);
      return 1;
    }
    R->coca.caption_loss_weight = (float)o->coca_caption_w;
    R->coca.clip_loss_weight = (float)o->coca_clip_w;
    R->model.embed_dim = R->coca.embed_dim;
    R->model.quick_gelu = R->coca.quick_gelu;
    R->model.vision = R->coca.vision;
    R->model.text = R->coca.text;
  }
  if (R->is_coca) {
    (void)fmt;
  } else if (o->pretrained) {   /* --model's config, --pretrained's weights (kept for the trainer) */
    st = vlm_clip_load_as(o->pretrained, o->model, &R->model, &R->init, &fmt);
    if (st != VLM_OK) return fail("--pretrained");
    R->have_init = 1;
    from_ckpt = 1;
  } else if (o->resume) {   /* the config alone: the trainer reads the weights (once) */
    char cfg[4096], weights[4096];
    st = vlm_model_paths(resume_dir, cfg, weights, sizeof cfg);
    if (st == VLM_OK) st = vlm_clip_config_resolve(&R->model, cfg, weights, NULL, NULL);
    if (st != VLM_OK) return fail("--resume");
    from_ckpt = 1;
  } else if (path_exists(o->model)) {
    if (model_is_dir) {
      /* kept for the trainer: open_clip, Hugging Face (sharded too) or plain layouts */
      st = vlm_clip_load(o->model, &R->model, &R->init, &fmt);
      if (st != VLM_OK) return fail("--model");
      R->have_init = 1;
      from_ckpt = 1;
    } else if ((st = vlm_clip_config_load(&R->model, o->model, NULL)) != VLM_OK) {
      return fail("--model");
    }
  } else if ((st = vlm_clip_config_builtin(&R->model, o->model)) != VLM_OK) {
    fprintf(stderr, CMD ": --model: %s\n", vlm_last_error());
    return 2;
  }
  if (!from_ckpt) {
    R->model.text.vocab_size = V;
    if (o->image_size > 0) {
      if (o->image_size % R->model.vision.patch_size) {
        fprintf(stderr, CMD ": --image-size %lld is not a multiple of the patch size %lld\n", o->image_size,
                (long long)R->model.vision.patch_size);
        return 2;
      }
      R->model.vision.image_size = o->image_size;
    }
  } else if (V > R->model.text.vocab_size) {
    fprintf(stderr, CMD ": the tokenizer has %d ids, the model's vocabulary %lld\n", V,
            (long long)R->model.text.vocab_size);
    return 1;
  } else if (o->image_size > 0 && o->image_size != R->model.vision.image_size) {
    fprintf(stderr, CMD ": --image-size applies to models trained from scratch\n");
    return 2;
  }
  /* open_clip's --siglip: SigLIP's sigmoid loss and a logit_bias. A model with a logit_bias (a config's
   * init_logit_bias, a SigLIP checkpoint, a resumed --siglip run) is a SigLIP model and trains with
   * that loss, --siglip or not; a new one without starts at open_clip's --siglip values (below). A
   * checkpoint without a logit_bias has none to train: refused (open_clip could not load it either). */
  if (!R->is_coca && o->siglip && !R->model.has_logit_bias) {
    if (from_ckpt) {
      fprintf(stderr, CMD ": --siglip: %s has no logit_bias (%s): SigLIP needs one; start a new run from a config "
              "or built-in name (its logit_bias starts at %g, logit_scale at ln 10), or fine-tune a checkpoint that "
              "has one\n", model_label, o->resume ? "its run trained with the ClipLoss: resume it without --siglip"
                                                   : "a CLIP checkpoint",
              (double)VLM_SIGLIP_INIT_LOGIT_BIAS);
      return 2;
    }
    R->model.has_logit_bias = 1;
    R->model.init_logit_bias = VLM_SIGLIP_INIT_LOGIT_BIAS;
  } else if (!R->is_coca && !o->siglip && R->model.has_logit_bias && !o->resume && lead) {
    fprintf(stderr, CMD ": note: %s has a logit_bias (a SigLIP model): it trains with SigLIP's sigmoid loss, as with "
            "--siglip\n", model_label);
  }
  /* open_clip's --image-mean / --image-std / --image-resize-mode: this run's image transform,
   * kept in its checkpoints' config (preprocess_cfg), so every command reads images the same way */
  if (o->image_mean || o->image_std || o->image_resize) {
    if (o->resume) {
      fprintf(stderr, CMD ": --image-mean / --image-std / --image-resize-mode: a resumed run keeps its checkpoint's "
              "transform\n");
      return 2;
    }
    vlm_vit_config *v = &R->model.vision;
    double m[3], s[3];
    int mode;
    vlm_vit_image_norm(v, m, s, &mode);   /* the model's, for what the flags leave */
    memcpy(v->image_mean, o->image_mean ? o->mean_v : m, sizeof m);
    memcpy(v->image_std, o->image_std ? o->std_v : s, sizeof s);
    v->resize_mode = o->image_resize ? (int)o->resize_v : mode;
    if (R->is_coca) R->coca.vision = *v;
  }
  /* A CLIP text tower that pools at the first eos id (a Hugging Face config's eos_token_id)
   * with a tokenizer whose end-of-text is another id would pool every caption at position 0:
   * it pools at the largest id instead (open_clip's rule), which finds this tokenizer's
   * end-of-text (the last id of its vocabulary). */
  if (!R->is_coca && R->model.text.eot_id >= 0 && R->model.text.eot_id != vlm_tokenizer_eot(R->tok)) {
    fprintf(stderr, CMD ": note: %s pools its text at the first id %lld (its eos_token_id), but this tokenizer's "
            "<|endoftext|> is %d: the text is pooled at its largest id instead, as open_clip does\n", model_label,
            (long long)R->model.text.eot_id, vlm_tokenizer_eot(R->tok));
    R->model.text.eot_id = -1;
  }
  /* A new vocabulary under a trained text tower: its ids index rows learnt for other tokens. */
  if (from_ckpt && !o->resume && !strncmp(tok_desc, "train:", 6))
    fprintf(stderr, CMD ": warning: --tokenizer %s learns a new vocabulary, but %s's token embeddings were trained "
            "with its own: the new ids start from rows learnt for other tokens (leave --tokenizer out, or give the "
            "checkpoint's, to keep them)\n", tok_desc, o->model);
  /* ---- data */
  if ((st = open_loader(R, &R->train, o->train_data, 1, 0)) != VLM_OK) return fail("--train-data");
  if (lead && o->val_data && (st = open_loader(R, &R->val, o->val_data, 0, 0)) != VLM_OK) return fail("--val-data");
  if (lead && o->zs_data) {
    int val_cls = 0;   /* one loader for both when the val data has classes (a folder of captions has none) */
    if (o->val_data && !strcmp(o->zs_data, o->val_data) && vlm_loader_classnames(R->val, &val_cls) && val_cls > 0)
      R->zs = R->val;
    else if ((st = open_loader(R, &R->zs, o->zs_data, 0, 1)) != VLM_OK) return fail("--zeroshot-data");
    int n_cls = 0;
    if (!vlm_loader_classnames(R->zs, &n_cls) || n_cls == 0) {   /* zero-shot would measure nothing, silently */
      fprintf(stderr, CMD ": --zeroshot-data %s has no classes: give an ImageFolder (DIR/CLASS/IMAGE) or "
              "shapes:val[:N]\n", o->zs_data);
      return 1;
    }
  }
  /* Steps in an epoch: whole accumulations of whole batches; -1 when unknown (WebDataset). */
  const int64_t n_samples = vlm_loader_samples_per_epoch(R->train);
  const int64_t steps_per_epoch = n_samples >= 0 ? vlm_loader_batches_per_epoch(R->train) / o->accum : -1;
  if (steps_per_epoch == 0) {
    fprintf(stderr, CMD ": %s: %lld samples, fewer than one batch (%lld x accum %lld)\n", o->train_data,
            (long long)n_samples, o->batch, o->accum);
    return 1;
  }
  vlm_train_config t;
  vlm_train_config_default(&t);
  t.lr = (float)o->lr;
  t.beta1 = (float)o->beta1;
  t.beta2 = (float)o->beta2;
  t.eps = (float)o->eps;
  t.wd = (float)o->wd;
  t.warmup = o->warmup;
  /* A resume without --steps or --epochs keeps the run's own length (its train_state's
   * total_steps, below), so the lr schedule goes on as it was, not over a new default. */
  const int keep_length = o->resume && !o->set_steps && !o->set_epochs;
  if (o->steps > 0) t.total_steps = o->steps;
  else if (steps_per_epoch > 0) t.total_steps = steps_per_epoch * o->epochs;
  else if (keep_length) t.total_steps = 1;   /* a WebDataset run: its length comes from the state */
  else {
    fprintf(stderr, CMD ": %s: the epoch length is unknown (WebDataset); give --steps\n", o->train_data);
    return 2;
  }
  if (!vlm_lr_scheduler_parse(o->scheduler, &t.scheduler)) {
    fprintf(stderr, CMD ": --lr-scheduler: unknown '%s' (cosine|const|const-cooldown)\n", o->scheduler);
    return 2;
  }
  t.cooldown_steps = o->cooldown_steps_kept >= 0 ? o->cooldown_steps_kept
                                                : o->epochs_cooldown * (steps_per_epoch > 0 ? steps_per_epoch : 0);
  if (t.scheduler == VLM_SCHED_CONST_COOLDOWN && t.cooldown_steps <= 0) {   /* open_clip requires it too */
    fprintf(stderr, CMD ": --lr-scheduler const-cooldown needs --epochs-cooldown N%s\n",
            steps_per_epoch > 0 ? "" : " and an epoch length (not a WebDataset source)");
    return 2;
  }
  t.cooldown_power = (float)o->cooldown_power;
  t.cooldown_end_lr = (float)o->cooldown_end;
  t.grad_clip_norm = o->grad_clip;
  t.seed = o->seed;
  t.accum_freq = (int)o->accum;
  t.batch_size = (int)o->batch;
  t.context_length = R->model.text.context_length;
  t.precision = !strcmp(o->precision, "bf16") ? VLM_PREC_BF16 : VLM_PREC_F32;
  t.lock_image = o->lock_image;
  t.lock_text = o->lock_text;
  /* auto: the GPU when one is usable */
  t.device = !strcmp(o->device, "cuda") || (!strcmp(o->device, "auto") && vlm_cuda_available()) ? VLM_CUDA : VLM_CPU;
  st = R->is_coca ? vlm_trainer_init_coca(&R->tr, &R->coca, &t) : vlm_trainer_init(&R->tr, &R->model, &t);
  if (st != VLM_OK) return fail("");
  vlm_rng_seed(&R->tr.rng, (uint64_t)o->seed);
  int had_state = 0;
  if (o->resume) {
    if ((st = vlm_trainer_load(&R->tr, resume_dir, &had_state)) != VLM_OK) return fail("--resume");
    if (!had_state) fprintf(stderr, CMD ": %s: no train_state.safetensors: weights only, the optimizer starts fresh\n", resume_dir);
    if (keep_length && had_state && R->tr.loaded_total_steps > 0) {
      if (R->tr.loaded_total_steps != t.total_steps)
        fprintf(stderr, "resuming with the run's own length, %lld steps (--steps or --epochs set another)\n",
                (long long)R->tr.loaded_total_steps);
      t.total_steps = R->tr.cfg.total_steps = R->tr.loaded_total_steps;
      o->kept_length = 1;
    } else if (keep_length && steps_per_epoch < 0) {
      fprintf(stderr, CMD ": --resume %s: the checkpoint does not record the run's length and the epoch length is "
              "unknown (WebDataset); give --steps\n", resume_dir);
      return 2;
    }
    if (had_state) {
      int rc = resume_checks(R, resume_dir, &t, steps_per_epoch);
      if (rc) return rc;
      fprintf(stderr, "resuming %s at step %lld (epoch %lld, batch %lld)\n", resume_dir, (long long)R->tr.step,
              (long long)R->tr.epoch, (long long)R->tr.epoch_batches);
    }
  } else if (from_ckpt) {
    if (R->have_init) {   /* CLIP: the weights vlm_clip_load read, whatever their layout */
      vlm_clip_params_copy(vlm_trainer_host_params(&R->tr), &R->init);
      vlm_trainer_upload_params(&R->tr);
      vlm_clip_params_free(&R->init);
      R->have_init = 0;
    } else if ((st = vlm_trainer_load(&R->tr, o->pretrained ? o->pretrained : o->model, NULL)) != VLM_OK) {
      return fail(o->pretrained ? "--pretrained" : "--model");
    }
    vlm_trainer_reset_optimizer(&R->tr);
  } else {  /* on the host (a copy when training on a GPU), then to the device */
    if (R->is_coca) vlm_coca_params_init_openclip(vlm_trainer_host_coca(&R->tr), &R->coca, (uint64_t)o->seed);
    else {
      vlm_clip_params *hp = vlm_trainer_host_params(&R->tr);
      vlm_clip_params_init_openclip(hp, &R->model, (uint64_t)o->seed);
      /* open_clip's --siglip: init_logit_scale ln 10 (logit_bias: the config's init_logit_bias) */
      if (R->model.has_logit_bias) vlm_fill(&hp->logit_scale, VLM_SIGLIP_INIT_LOGIT_SCALE);
    }
    vlm_trainer_upload_params(&R->tr);
  }
  if (t.warmup > t.total_steps)   /* step k (from 0) of the warmup runs at lr (k + 1) / warmup */
    fprintf(stderr, CMD ": warning: --warmup %lld is above the run's %lld steps: the learning rate never "
            "reaches --lr %g (at most %.3g); lower --warmup\n", (long long)t.warmup, (long long)t.total_steps, o->lr,
            o->lr * (double)t.total_steps / (double)(t.warmup > 0 ? t.warmup : 1));
  if ((st = vlm_trainer_sync_params(&R->tr)) != VLM_OK) return fail("ranks");
  if (lead && (st = write_run_config(R->run, &R->model, R->is_coca ? &R->coca : NULL, o, &R->tr.cfg, tok_desc)) != VLM_OK)
    return fail("");
  if (lead && (st = vlm_train_log_open(&R->log, R->run, o->resume ? R->tr.step : INT64_MAX)) != VLM_OK) return fail("");
  R->log.coca = R->is_coca;
  if ((st = load_templates(R, shapes || is_shapes_spec(o->zs_data))) != VLM_OK) return fail("--zeroshot-templates");
  R->ec.model = &R->model;
  R->ec.coca = R->is_coca ? &R->coca : NULL;
  R->ec.coca_params = NULL;   /* CoCa: the host parameters, set by evaluate() */
  R->ec.batch_size = (int)o->batch;
  R->ec.caption_match = is_shapes_spec(o->val_data);
  R->ec.shapes = is_shapes_spec(o->val_data) || is_shapes_spec(o->zs_data);
  R->ec.tokenizer = R->tok;
  R->ec.context_length = (int)R->model.text.context_length;
  R->ec.templates = R->templates;
  R->ec.n_templates = R->n_templates;
  int64_t p_vis = 0, p_txt = 0;
  int64_t np = R->is_coca ? vlm_coca_params_count(&R->tr.coca.p, &R->coca)
                          : vlm_clip_params_count(&R->tr.p, &R->model, &p_vis, &p_txt);
  char ranks[64] = "";
  if (R->world > 1) snprintf(ranks, sizeof ranks, " x %d ranks", R->world);
  if (lead)
    fprintf(stderr, "run %s: %s model %s (%.2f M parameters, image %lld, vocabulary %lld), %lld steps of %lld x %d%s samples on the %s\n",
            R->run, R->is_coca ? "CoCa" : "CLIP", model_label, np / 1e6, (long long)R->model.vision.image_size, (long long)R->model.text.vocab_size,
            (long long)t.total_steps, o->batch, t.accum_freq, ranks, t.device == VLM_CUDA ? "GPU" : "CPU");

  /* ---- the loop */
  R->training = 1;
  const int64_t K = o->accum, B = o->batch, S = R->model.vision.image_size, L = R->model.text.context_length;
  float *img = malloc((size_t)(K * B * 3 * S * S) * sizeof(float));
  int32_t *ids = malloc((size_t)(K * B * L) * sizeof(int32_t));
  if (!img || !ids) {
    free(img);
    free(ids);
    fprintf(stderr, CMD ": out of memory for a batch\n");
    return 1;
  }
  /* On a GPU the trainer uploads this batch every step: page-locked, the copy runs at DMA speed. */
  const int pinned_img = t.device == VLM_CUDA && vlm_host_pin(img, (size_t)(K * B * 3 * S * S) * sizeof(float));
  const int pinned_ids = t.device == VLM_CUDA && vlm_host_pin(ids, (size_t)(K * B * L) * sizeof(int32_t));
  int64_t is[4] = {K * B, 3, S, S}, ts[2] = {K * B, L};
  vlm_tensor timg = vlm_tensor_cpu_f32(img, 4, is), tids = vlm_tensor_make(ids, VLM_I32, VLM_CPU, 2, ts);
  int rc = 0;
  const int64_t start_step = R->tr.step;
  R->start_step = start_step;
  double t0 = vlm_now(), wait_total = 0, wait_epoch_prev = 0;
  int epoch_open = 0;
  /* Micro-batches in an epoch (-1: unknown, WebDataset). The step that takes an epoch's last
   * whole accumulation ends it, so --epochs N ends with epoch_N and a train_state at epoch N,
   * batch 0; an epoch of unknown length, or one that bad samples cut short, ends when the
   * loader runs dry. */
  const int64_t epoch_len = steps_per_epoch > 0 ? vlm_loader_batches_per_epoch(R->train) : -1;
  while (R->tr.step < t.total_steps && (o->stop_at <= 0 || R->tr.step < o->stop_at)) {
    if (!epoch_open) {
      /* one process: the stream position of the last batch taken (bad samples skipped
       * included), so a resume past them is exact; else (ranks, an older state) the batch count */
      const int exact = R->tr.epoch_batches > 0 && R->tr.epoch_seq > 0 && R->world <= 1;
      if ((st = exact ? vlm_loader_start_epoch_at(R->train, R->tr.epoch, R->tr.epoch_batches, R->tr.epoch_seq)
                      : vlm_loader_start_epoch(R->train, R->tr.epoch, R->tr.epoch_batches)) != VLM_OK) {
        rc = fail("--train-data");
        break;
      }
      epoch_open = 1;
      wait_epoch_prev = 0;
    }
    int64_t got = 0, seq = -1;
    vlm_batch b;
    while (got < K && vlm_loader_next(R->train, &b) == 1) {
      seq = b.seq_end;
      if (b.n != B) continue;
      memcpy(img + got * B * 3 * S * S, b.images, (size_t)(B * 3 * S * S) * sizeof(float));
      memcpy(ids + got * B * L, b.ids, (size_t)(B * L) * sizeof(int32_t));
      got++;
    }
    /* ranks step together: when any one's data ran dry (bad samples, a WebDataset shard
     * set ending early), the epoch ends for all of them */
    if (R->world > 1 && vlm_comm_allreduce_min_i64(&got) != VLM_OK) {
      rc = fail("ranks");
      break;
    }
    vlm_loader_stats ls;
    vlm_loader_stats_get(R->train, &ls);
    wait_total += ls.wait_s - wait_epoch_prev;
    wait_epoch_prev = ls.wait_s;
    if (got < K) { /* the loader ran dry: the end of an epoch (a partial accumulation is dropped, as open_clip) */
      report_bad(R, &ls);
      if (R->tr.epoch_batches == 0 && got == 0) {
        const int64_t n = vlm_loader_samples_per_epoch(R->train);
        if (ls.samples == 0 && n > 0 && ls.bad_distinct >= n)
          fprintf(stderr, CMD ": %s: an epoch gave no full batch: the data holds only %lld samples, all bad\n",
                  o->train_data, (long long)n);
        else if (ls.samples > 0)
          fprintf(stderr, CMD ": %s: the data holds only %lld good sample%s, fewer than one batch of %lld (x accum %lld)\n",
                  o->train_data, (long long)ls.samples, ls.samples == 1 ? "" : "s", o->batch, o->accum);
        else
          fprintf(stderr, CMD ": %s: an epoch gave no full batch (0 good samples, %lld bad ones of which %lld distinct)\n",
                  o->train_data, (long long)ls.bad, (long long)ls.bad_distinct);
        rc = 1;
        break;
      }
      epoch_open = 0;
      if ((rc = finish_epoch(R, t.total_steps)) != 0) break;
      continue;
    }
    vlm_trainer_step(&R->tr, &timg, &tids);
    R->tr.epoch_batches += K;
    R->tr.epoch_seq = R->world <= 1 ? seq : -1;
    double el = vlm_now() - t0;
    int64_t done = R->tr.step - start_step;
    vlm_progress pr = {R->tr.step, t.total_steps, R->tr.epoch, R->tr.last_loss, R->tr.last_lr,
                       vlm_get_f32(R->tr.logit_scale, 0), done * K * B * R->world / (el > 0 ? el : 1),
                       el > 0 ? wait_total / el : 0,
                       done > 0 ? el / done * (double)(t.total_steps - R->tr.step) : NAN, R->tr.last_grad_norm};
    if (!isfinite(R->tr.last_loss)) {
      fprintf(stderr, CMD ": the loss is %g at step %lld: stopping (lower --lr, or set --grad-clip-norm)\n",
              R->tr.last_loss, (long long)R->tr.step);
      rc = 1;
      break;
    }
    if (lead && (R->tr.step % o->log_every == 0 || R->tr.step == t.total_steps)) vlm_train_log_step(&R->log, &pr);
    if (lead) vlm_train_log_progress(&R->log, &pr, R->tr.step == t.total_steps);
    if (epoch_len > 0 && R->tr.epoch_batches + K > epoch_len) {
      /* this step took the epoch's last whole accumulation: the epoch ends here (before
       * --save-steps, whose 'latest' then holds the next epoch's position). Its leftover
       * batches, fewer than --accum-freq, are read and dropped as before, the loader's
       * count of bad samples then complete. */
      while (vlm_loader_next(R->train, &b) == 1) {
      }
      vlm_loader_stats_get(R->train, &ls);
      wait_total += ls.wait_s - wait_epoch_prev;
      wait_epoch_prev = ls.wait_s;
      report_bad(R, &ls);
      epoch_open = 0;
      if ((rc = finish_epoch(R, t.total_steps)) != 0) break;
    }
    if (o->save_steps > 0 && R->tr.step % o->save_steps == 0 && (st = save_latest(R)) != VLM_OK) {
      rc = fail("checkpoint");
      break;
    }
    if (o->eval_steps > 0 && R->tr.step % o->eval_steps == 0 && R->tr.step < t.total_steps &&
        (st = evaluate_once(R, 1)) != VLM_OK) {
      rc = fail("evaluation");
      break;
    }
  }
  double el = vlm_now() - t0;
  if (rc == 0) {
    if ((st = save_latest(R)) != VLM_OK) rc = fail("checkpoint");
  }
  if (rc == 0 && R->tr.step >= t.total_steps) {   /* the final evaluation, unless the last epoch's end ran it */
    if ((st = evaluate_once(R, 1)) != VLM_OK) rc = fail("evaluation");
  }
  if (rc == 0 && lead && !R->log.n_evals && (st = vlm_train_log_chart(&R->log)) != VLM_OK) rc = fail("the loss chart");
  if (rc == 0 && lead) {
    fprintf(stderr, "done: step %lld in %.1f s (%.1f steps/s), data wait %.1f%% of the time%s%s\n",
            (long long)R->tr.step, el, (double)(R->tr.step - start_step) / (el > 0 ? el : 1),
            el > 0 ? 100 * wait_total / el : 0, R->run[0] ? ", run " : "", R->run);
    if (o->json) {
      char fields[4096] = "";
      if (R->have_last) vlm_eval_result_json(&R->last, fields, sizeof fields);
      printf("{\"run\": ");
      vlm_tools_json_str(stdout, R->run);
      printf(", \"step\": %lld, \"seconds\": %.2f, \"data_wait_frac\": %.4g, \"final_loss\": %.6g%s%s}\n",
             (long long)R->tr.step, el, el > 0 ? wait_total / el : 0, R->tr.last_loss, fields[0] ? ", " : "",
             fields);
    }
  }
  if (rc == 0 && R->log.metrics_lost) {   /* trained and saved, but the run's log is not whole */
    fprintf(stderr, CMD ": %s: %lld line%s could not be written (see the first error above)\n", R->log.metrics_path,
            (long long)R->log.metrics_lost, R->log.metrics_lost == 1 ? "" : "s");
    rc = 1;
  }
  if (pinned_img) vlm_host_unpin(img);
  if (pinned_ids) vlm_host_unpin(ids);
  free(img);
  free(ids);
  return rc;
}

int vlm_cmd_train(int argc, char **argv) {
  run_state *R = calloc(1, sizeof *R);
  if (!R) return 1;
  R->lock_fd = -1;
  opts *o = &R->o;
  o->logs = "./logs";
  o->tokenizer = NULL;
  o->precision = "fp32";
  o->device = "auto";
  o->scheduler = "cosine";
  o->csv_sep = '\t';
  o->lr = 5e-4;
  o->beta1 = 0.9;
  o->beta2 = 0.98;
  o->eps = 1e-6;
  o->wd = 0.2;
  o->batch = 64;
  o->epochs = 32;
  o->warmup = 10000;
  o->accum = 1;
  o->workers = 2;
  o->max_pixels = VLM_DEFAULT_MAX_PIXELS;
  o->save_freq = 1;
  o->val_freq = 1;
  o->zs_freq = 2;
  o->log_every = 10;
  o->cooldown_power = 1.0;
  o->coca_caption_w = 2.0;
  o->coca_clip_w = 1.0;
  o->cooldown_steps_kept = -1;
  int rc = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (vlm_app_is_help(a)) {
      usage(stdout);
      rc = 0;
      goto out;
    }
    int has = i + 1 < argc;
    const char *v = has ? argv[i + 1] : NULL;
    if (o->n_given < (int)(sizeof o->given / sizeof o->given[0])) o->given[o->n_given++] = a;
#define STR(flag, field) if (!strcmp(a, flag)) { if (!has) { goto missing; } o->field = v; i++; continue; }
#define INT(flag, field, lo, hi) if (!strcmp(a, flag)) { if (!has) { goto missing; } \
      if (!vlm_app_parse_int(CMD, flag, v, lo, hi, &o->field)) { goto out; } i++; continue; }
#define DBL(flag, field) if (!strcmp(a, flag)) { if (!has) { goto missing; } \
      if (!parse_double(flag, v, &o->field)) { goto out; } i++; continue; }
#define FLAG(flag, field) if (!strcmp(a, flag)) { o->field = 1; continue; }
    STR("--train-data", train_data)
    STR("--val-data", val_data)
    STR("--zeroshot-data", zs_data)
    STR("--dataset-type", dataset_type)
    if (!strcmp(a, "--model")) { if (!has) { goto missing; } o->model = v; o->set_model = 1; i++; continue; }
    STR("--tokenizer", tokenizer)
    STR("--pretrained", pretrained)
    STR("--logs", logs)
    STR("--name", name)
    STR("--resume", resume)
    STR("--precision", precision)
    STR("--device", device)
    STR("--lr-scheduler", scheduler)
    STR("--zeroshot-templates", templates_file)
    STR("--train-data-upsampling-factors", upsampling)
    STR("--csv-img-key", csv_img_key)
    STR("--csv-caption-key", csv_caption_key)
    STR("--image-mean", image_mean)
    STR("--image-std", image_std)
    STR("--image-resize-mode", image_resize)
    DBL("--beta1", beta1)
    DBL("--beta2", beta2)
    DBL("--eps", eps)
    DBL("--wd", wd)
    DBL("--grad-clip-norm", grad_clip)
    DBL("--data-temperature", temperature)
    if (!o->set_cooldown && (!strcmp(a, "--lr-cooldown-power") || !strcmp(a, "--lr-cooldown-end") ||
                             !strcmp(a, "--epochs-cooldown")))
      o->set_cooldown = a;   /* const-cooldown's: refused with another scheduler, below */
    DBL("--lr-cooldown-power", cooldown_power)
    DBL("--lr-cooldown-end", cooldown_end)
    if (!strcmp(a, "--coca-caption-loss-weight") || !strcmp(a, "--coca-contrastive-loss-weight"))
      o->set_coca_w = 1;   /* a CLIP model has no use for them */
    DBL("--coca-caption-loss-weight", coca_caption_w)
    DBL("--coca-contrastive-loss-weight", coca_clip_w)
    INT("--epochs", epochs, 1, 1000000)
    if (!strcmp(a, "--accum-freq")) o->set_accum = 1;
    INT("--accum-freq", accum, 1, 4096)
    INT("--seed", seed, 0, (1LL << 62))
    INT("--workers", workers, 0, 256)
    INT("--max-image-pixels", max_pixels, 1, 1LL << 40)
    INT("--save-frequency", save_freq, 0, 1000000)
    INT("--save-steps", save_steps, 0, 1LL << 40)
    INT("--val-frequency", val_freq, 0, 1000000)
    INT("--zeroshot-frequency", zs_freq, 0, 1000000)
    INT("--image-size", image_size, 8, 4096)
    INT("--stop-at-step", stop_at, 1, 1LL << 40)
    INT("--log-every-n-steps", log_every, 1, 1LL << 40)
    INT("--epochs-cooldown", epochs_cooldown, 0, 1000000)
    FLAG("--save-most-recent", save_most_recent)   /* open_clip's epoch_latest.pt: 'latest' is always kept */
    FLAG("--delete-previous-checkpoint", delete_previous)
    FLAG("--lock-image", lock_image)
    FLAG("--lock-text", lock_text)
    FLAG("--siglip", siglip)
    FLAG("--json", json)
    if (!strcmp(a, "--lr")) { if (!has) { goto missing; } if (!parse_double(a, v, &o->lr)) { goto out; } o->set_lr = 1; i++; continue; }
    if (!strcmp(a, "--batch-size")) { if (!has) { goto missing; }
      if (!vlm_app_parse_int(CMD, a, v, 1, 1 << 20, &o->batch)) { goto out; } o->set_batch = 1; i++; continue; }
    if (!strcmp(a, "--warmup")) { if (!has) { goto missing; }
      if (!vlm_app_parse_int(CMD, a, v, 0, 1LL << 40, &o->warmup)) { goto out; } o->set_warmup = 1; i++; continue; }
    if (!strcmp(a, "--steps")) { if (!has) { goto missing; }
      if (!vlm_app_parse_int(CMD, a, v, 1, 1LL << 40, &o->steps)) { goto out; } o->set_steps = 1; i++; continue; }
    if (!strcmp(a, "--eval-steps")) { if (!has) { goto missing; }
      if (!vlm_app_parse_int(CMD, a, v, 0, 1LL << 40, &o->eval_steps)) { goto out; } o->set_eval_steps = 1; i++; continue; }
    if (!strcmp(a, "--csv-separator")) { if (!has) { goto missing; }
      if (!strcmp(v, "\\t") || !strcmp(v, "tab")) o->csv_sep = '\t';
      else if (strlen(v) == 1) o->csv_sep = v[0];
      else { fprintf(stderr, CMD ": --csv-separator expects one character, got '%s'\n", v); goto out; }
      i++; continue; }
#undef STR
#undef INT
#undef DBL
#undef FLAG
    vlm_app_bad_arg(CMD, a);
    goto out;
  missing:
    fprintf(stderr, CMD ": %s needs a value\n", a);
    goto out;
  }
  for (int i = 1; i < argc; i++) if (!strcmp(argv[i], "--epochs")) o->set_epochs = 1;
  if (o->name && !*o->name) {
    fprintf(stderr, CMD ": --name is empty (the run directory is LOGS/NAME)\n");
    goto out;
  }
  if (!*o->logs) {   /* "" would put the run at /NAME */
    fprintf(stderr, CMD ": --logs is empty (the run directory is LOGS/NAME; '.' for the current folder)\n");
    goto out;
  }
  /* below --logs: a failed new run removes LOGS/NAME, which must not be --logs itself or
   * above it; nested names (a/b) are fine, '.', '..' and empty components are not */
  if (o->name) {
    int bad = o->name[0] == '/';
    for (const char *c = o->name; *c && !bad;) {
      size_t n = strcspn(c, "/");
      bad = n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.');
      c += n + (c[n] == '/');
      if (!bad && c[-1] == '/' && !*c) bad = 1;   /* a trailing '/' */
    }
    if (bad) {
      fprintf(stderr, CMD ": --name '%s': a directory name below --logs (no '.', '..' or empty parts)\n", o->name);
      goto out;
    }
  }
  if (!o->train_data) {
    fprintf(stderr, CMD ": --train-data is required (try --train-data shapes; see --help)\n");
    goto out;
  }
  if (strcmp(o->device, "auto") && strcmp(o->device, "cpu") && strcmp(o->device, "cuda")) {
    fprintf(stderr, CMD ": --device: expected auto, cpu or cuda, got '%s'\n", o->device);
    goto out;
  }
  if (!strcmp(o->device, "cuda") && !vlm_cuda_available()) {
    fprintf(stderr, CMD ": --device cuda: %s\n", vlm_cuda_describe());
    rc = 1;   /* no GPU here: not a usage error (as forward, eval, index ...) */
    goto out;
  }
  if (strcmp(o->precision, "fp32") && strcmp(o->precision, "f32") && strcmp(o->precision, "bf16")) {
    fprintf(stderr, CMD ": --precision: expected fp32 or bf16, got '%s'\n", o->precision);
    goto out;
  }
  if (o->lock_image && o->lock_text) {
    fprintf(stderr, CMD ": --lock-image and --lock-text together leave only logit_scale to train\n");
    goto out;
  }
  if (o->lr < 0 || o->wd < 0 || o->beta1 < 0 || o->beta1 >= 1 || o->beta2 < 0 || o->beta2 >= 1 || o->eps <= 0) {
    fprintf(stderr, CMD ": %s out of range (--lr and --wd >= 0, --beta1 and --beta2 in [0, 1), --eps > 0)\n",
            o->lr < 0 ? "--lr" : o->wd < 0 ? "--wd" : o->beta1 < 0 || o->beta1 >= 1 ? "--beta1"
            : o->beta2 < 0 || o->beta2 >= 1 ? "--beta2" : "--eps");
    goto out;
  }
  if (o->temperature < 0 || o->cooldown_end < 0 || o->cooldown_power <= 0) {
    fprintf(stderr, CMD ": %s\n", o->temperature < 0 ? "--data-temperature must be >= 0 (0: off)"
                                 : o->cooldown_end < 0 ? "--lr-cooldown-end is a learning rate: >= 0"
                                                       : "--lr-cooldown-power must be > 0");
    goto out;
  }
  /* the transform's values, checked before any work (applied in run()) */
  if ((o->image_mean && !vlm_app_parse_rgb(CMD, "--image-mean", o->image_mean, o->mean_v)) ||
      (o->image_std && !vlm_app_parse_rgb(CMD, "--image-std", o->image_std, o->std_v)))
    goto out;
  if (o->image_std && !(o->std_v[0] > 1e-6 && o->std_v[1] > 1e-6 && o->std_v[2] > 1e-6)) {
    fprintf(stderr, CMD ": --image-std expects values > 0, got '%s'\n", o->image_std);
    goto out;
  }
  if (o->image_resize && !vlm_resize_mode_parse(o->image_resize, &o->resize_v)) {
    fprintf(stderr, CMD ": --image-resize-mode: '%s' (shortest, squash or longest)\n", o->image_resize);
    goto out;
  }
  if (o->coca_caption_w < 0 || o->coca_clip_w < 0 || (o->coca_caption_w == 0 && o->coca_clip_w == 0)) {
    fprintf(stderr, CMD ": --coca-caption-loss-weight and --coca-contrastive-loss-weight must be >= 0, not both 0\n");
    goto out;
  }
  if (!(o->grad_clip >= 0)) {
    fprintf(stderr, CMD ": --grad-clip-norm %g: the norm cannot be negative (0, as no flag: no clipping)\n", o->grad_clip);
    goto out;
  }
  /* fine-tuning a checkpoint: its own tokenizer (RUN/tokenizer beside a vlm train run's
   * checkpoints, MODEL/tokenizer, vocab.json + merges.txt, ...) unless --tokenizer says otherwise */
  if (o->pretrained) {
    struct stat psb;
    const char *why = o->resume                                    ? "continues its run's own weights: drop --pretrained"
                    : !o->model                                    ? "needs --model (the architecture of its weights)"
                    : stat(o->pretrained, &psb) != 0               ? NULL
                    : !S_ISREG(psb.st_mode)                        ? "is not a file: give the weights file (a checkpoint "
                                                                     "directory goes to --model alone)"
                    : path_exists(o->model) && (stat(o->model, &psb) != 0 || S_ISDIR(psb.st_mode) ||
                                                vlm_is_weights_file(o->model))
                                                                   ? "goes with a --model naming an architecture (a "
                                                                     "built-in name or a config file), not a checkpoint"
                                                                   : "";
    if (!why) {
      fprintf(stderr, CMD ": --pretrained %s: no such file (vlm downloads nothing: open_clip's pretrained tags such "
              "as laion2b_s34b_b79k are not known here; give the file)\n", o->pretrained);
      goto out;
    }
    if (why[0]) {
      fprintf(stderr, CMD ": --pretrained %s\n", why);
      goto out;
    }
  }
  static char found_tok[4096];
  if (!o->tokenizer && o->pretrained && vlm_find_tokenizer(o->pretrained, found_tok, sizeof found_tok)) {
    o->tokenizer = found_tok;
    fprintf(stderr, CMD ": the weights' tokenizer: %s\n", found_tok);
  }
  if (!o->tokenizer && o->model && vlm_find_tokenizer(o->model, found_tok, sizeof found_tok)) {
    o->tokenizer = found_tok;
    fprintf(stderr, CMD ": the model's tokenizer: %s\n", found_tok);
  }
  /* A misspelled --model (a built-in name or a path) is refused first: before the other
   * required flags, a run directory or a vocabulary learnt on the captions. */
  if (o->model && !path_exists(o->model)) {
    vlm_status bs;
    const size_t ml = strlen(o->model);
    if (strchr(o->model, '/') || (ml > 5 && !strcmp(o->model + ml - 5, ".json")) || vlm_is_weights_file(o->model)) {
      fprintf(stderr, CMD ": --model: %s: no such file or directory\n", o->model);
      rc = 2;
      goto out;
    }
    if (model_is_coca(o->model)) {
      vlm_coca_config cc;
      bs = vlm_coca_config_builtin(&cc, o->model);
    } else {
      vlm_clip_config cc;
      bs = vlm_clip_config_builtin(&cc, o->model);
    }
    if (bs != VLM_OK) {
      fprintf(stderr, CMD ": --model: %s\n", vlm_last_error());
      rc = 2;
      goto out;
    }
  }
  if (is_shapes_spec(o->train_data)) { /* the demo defaults */
    if (!o->model) o->model = o->siglip ? SHAPES_SIGLIP_MODEL : SHAPES_MODEL;   /* SigLIP: a CLIP */
    if (!o->tokenizer) {
      static char tk[32];
      snprintf(tk, sizeof tk, "train:%d", SHAPES_VOCAB);
      o->tokenizer = tk;
    }
    if (!o->set_batch) o->batch = SHAPES_BATCH;
    if (!o->set_lr) o->lr = SHAPES_LR;
    if (!o->set_warmup) o->warmup = SHAPES_WARMUP;
    o->shapes_steps = !o->set_steps && !o->set_epochs;   /* CoCa or CLIP: known in run() (a resumed checkpoint's) */
    if (!o->set_eval_steps) o->eval_steps = SHAPES_EVAL_STEPS;
    if (!o->val_data) o->val_data = "shapes:val";
    if (!o->zs_data) o->zs_data = o->val_data;
  } else {
    /* a resume trains its checkpoint's model with its run's (or checkpoint's) tokenizer */
    if (!o->model && !o->resume) {
      fprintf(stderr, CMD ": --model is required (a built-in name, a config JSON or a checkpoint dir)\n");
      goto out;
    }
    if (!o->tokenizer && !o->resume) {
      fprintf(stderr, CMD ": --tokenizer is required (a vocabulary, or train:SIZE to learn one on the captions)\n");
      goto out;
    }
  }
  if (o->tokenizer && !strncmp(o->tokenizer, "train:", 6) &&
      !vlm_app_parse_int(CMD, "--tokenizer train:SIZE", o->tokenizer + 6, VLM_BPE_MIN_VOCAB, 1 << 20, &o->bpe_size))
    goto out;
  /* evaluation data must be bounded: plain "shapes" is the 1,000,000-pair training split */
  const char *evals[2] = {o->val_data, o->zs_data}, *eflags[2] = {"--val-data", "--zeroshot-data"};
  for (int k = 0; k < 2; k++) {
    const char *e = evals[k];
    if (is_shapes_spec(e) && !strstr(e, ":val") && !strpbrk(e + 6, "0123456789")) {
      fprintf(stderr, CMD ": %s %s is the 1,000,000-pair training split: use shapes:val[:N] (or shapes:train:N)\n",
              eflags[k], e);
      goto out;
    }
  }
  if (o->val_freq == 0) o->val_data = NULL;  /* no evaluation on the val data */
  if (o->zs_freq == 0) o->zs_data = NULL;
  /* options of a part that does not run are usage errors, not silently nothing */
  if (o->set_cooldown && strcmp(o->scheduler, "const-cooldown")) {
    fprintf(stderr, CMD ": %s applies to --lr-scheduler const-cooldown (this run's scheduler: %s)\n", o->set_cooldown,
            o->scheduler);
    goto out;
  }
  if (o->templates_file && !o->zs_data) {
    fprintf(stderr, CMD ": --zeroshot-templates applies to zero-shot evaluation, which %s\n",
            o->zs_freq == 0 ? "--zeroshot-frequency 0 turns off" : "needs --zeroshot-data (labelled data)");
    goto out;
  }
  if (o->set_steps && o->set_epochs) {
    fprintf(stderr, CMD ": give --epochs or --steps, not both\n");
    goto out;
  }
  /* ranks: started by mpirun / srun as one of several processes */
  if ((rc = vlm_app_ranks_start(CMD)) != 0) goto out;
  R->rank = vlm_comm_rank();
  R->world = vlm_comm_world();
  if (R->world > 1) {
    /* the node's cores shared among its ranks, unless a count was given */
    const int local = vlm_app_ranks_local();
    if (!vlm_app_threads_explicit && local > 1) vlm_threads_init(vlm_threads_get() / local > 0 ? vlm_threads_get() / local : 1);
    /* each rank on a node its own GPU (node-local rank modulo the visible GPUs), chosen before
     * any other CUDA call; with CUDA_VISIBLE_DEVICES set to one GPU per rank, that one */
    if (strcmp(R->o.device, "cpu") != 0) vlm_cuda_select(vlm_app_ranks_local_rank());
    if (R->rank != 0) vlm_log_set_level(VLM_LOG_WARN);   /* rank 0 reports the run */
  }
  rc = run(R);
out:
  if (R->train) vlm_loader_close(R->train);
  if (R->zs && R->zs != R->val) vlm_loader_close(R->zs);
  if (R->val) vlm_loader_close(R->val);
  vlm_train_log_close(&R->log);
  /* A new run that failed before training (bad data, model or flags), or in its loop before
   * its first step (no good batch) without a checkpoint, leaves no directory behind, so the
   * same command can be run again once mended. */
  if (rc != 0 && R->made_run_dir && (!R->training || (R->tr.step == R->start_step && !R->saved))) {
    if (nftw(R->run, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0)
      fprintf(stderr, CMD ": %s: removed (nothing was trained)\n", R->run);
    else
      fprintf(stderr, CMD ": %s: could not remove this failed run's directory: %s\n", R->run, strerror(errno));
  }
  if (R->lock_fd >= 0) close(R->lock_fd);   /* the run directory is free for the next vlm train */
  vlm_trainer_free(&R->tr);
  if (R->have_init) vlm_clip_params_free(&R->init);
  if (R->tok) vlm_tokenizer_free(R->tok);
  for (int i = 0; i < R->n_templates && R->tmpl_owned; i++) free(R->tmpl_owned[i]);
  free(R->tmpl_owned);
  free(R);
  vlm_app_ranks_stop(rc);
  return rc;
}
