/* vlm eval: retrieval recall@1/5/10 and mean/median rank both ways on paired
 * image-caption data, and zero-shot top-1/top-5 accuracy on labelled images. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apps/apps.h"
#include "apps/tools.h"
#include "contrastive/contrastive.h"


#define CMD "vlm eval"

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm eval --model PATH --data SPEC [options]\n"
          "       vlm eval --model PATH --zeroshot DIR|shapes:val [options]\n"
          "\n"
          "Measures a CLIP model on held-out data, as open_clip's evaluation does.\n"
          "\n"
          "Retrieval (--data: image-caption pairs): each image is a query against the\n"
          "captions (image->text) and each caption against the images (text->image), by\n"
          "cosine similarity. An image is one item however many captions it has: COCO's\n"
          "captions of one image, or CSV rows naming the same image path (open_clip's one\n"
          "row per caption). A caption matches its own image. A query's rank is 1 + the\n"
          "number of non-matching candidates scoring above its best match; R@K is the\n"
          "fraction of queries with rank <= K; the mean and median rank are open_clip's.\n"
          "Image->text counts a hit at K when one of the image's captions is among the top\n"
          "K captions (COCO's protocol). With the shapes rule (on by default for shapes\n"
          "data, --caption-match elsewhere) captions with identical tokens are one item,\n"
          "since synthetic captions repeat: a caption matches every image with an identical\n"
          "caption, and image->text ranks the distinct captions (21 copies of a wrong\n"
          "caption are one candidate, not 21). Text->image ranks the images, each once.\n"
          "\n"
          "Zero-shot (--zeroshot: an ImageFolder tree, class = sub-folder, or shapes:val):\n"
          "each class's prompt embeddings over the templates, normalized, averaged,\n"
          "renormalized; logits 100 x cosine; top-1 / top-5 accuracy. On the shapes set the\n"
          "colour-shape combinations never seen in training are also reported apart.\n"
          "\n"
          "Options:\n"
          "  --model PATH          model directory, config or weights file (CLIP; see 'vlm info')\n"
          "  --data SPEC           pairs for retrieval: a CSV/TSV file, a COCO captions .json,\n"
          "                        WebDataset shards (a .tar, a list or a {0000..0099} pattern),\n"
          "                        a folder of images with .txt captions (x.jpg + x.txt,\n"
          "                        sub-folders searched), or shapes:val[:N]\n"
          "                        (the 1000 held-out pairs, or the first N; the training split,\n"
          "                        \"shapes\" alone, is refused unless a count bounds it:\n"
          "                        shapes:train:N)\n"
          "  --dataset-type T      auto|csv|coco|wds|folder|imagefolder|shapes (default auto)\n"
          "  --csv-separator C     (tab)   --csv-img-key K (filepath)   --csv-caption-key K (title)\n"
          "  --coco-images DIR     COCO image folder (default: beside the annotations file)\n"
          "  --caption-match       identical captions count as one item (default: shapes data only)\n"
          "                        (--dataset-type, the CSV options, --coco-images and\n"
          "                        --caption-match go with --data; --templates and --classifier\n"
          "                        with --zeroshot)\n"
          "  --zeroshot SPEC       labelled images: an ImageFolder DIR or shapes:val[:N]\n"
          "  --templates T         zero-shot prompts: openai (open_clip's 80), simple (7), shapes\n"
          "                        (\"a photo of {a} {}\", ...; the default for shapes data; else\n"
          "                        openai), or a file, one per line with {} for the class name\n"
          "  --classifier FILE     keep the zero-shot classifier in FILE (as 'vlm zeroshot\n"
          "                        --classifier': read when made by this model from these prompts,\n"
          "                        else built and written)\n"
          "  --tokenizer PATH      vocabulary (default: the model's tokenizer/, see 'vlm zeroshot')\n"
          "  --batch-size N        images / texts per forward pass (default 64)\n"
          "  --workers N           decoding threads (default 2)\n"
          "  --max-image-pixels N  images with more pixels are bad samples, skipped (default\n"
          "                        %lld, PIL's limit; checked from the header before decoding)\n"
          "  --precision P         f32 (default) or bf16 matmul inputs\n"
          "  --device D            cpu (default) or cuda: embed on the GPU\n"
          "  --json                one JSON document on stdout (see docs/JSON.md):\n"
          "                        {\"model\", \"identity\",\n"
          "                         \"retrieval\": {\"data\", \"samples\", \"images\", \"texts\", \"skipped\",\n"
          "                           \"caption_match\", \"image_to_text\": {\"R@1\", \"R@5\", \"R@10\",\n"
          "                           \"mean_rank\", \"median_rank\", \"queries\"}, \"text_to_image\": {...}},\n"
          "                         \"zeroshot\": {\"data\", \"classes\", \"templates\", \"images\", \"skipped\",\n"
          "                           \"top1\", \"top5\", \"unseen\": {\"images\", \"top1\", \"top5\"}}}\n"
          "                        (fractions in [0, 1]; a section only when measured)\n"
          "\n"
          "Exit status: 0 ok, 1 on errors (unreadable data, no usable sample), 2 on usage errors.\n"
          "\n"
          "Examples:\n"
          "  vlm eval --model runs/shapes/checkpoints/latest --data shapes:val --zeroshot shapes:val\n"
          "  vlm eval --model vit-b-32/ --data val.tsv --csv-img-key filepath --csv-caption-key title --json\n"
          "  vlm eval --model vit-b-32/ --data annotations/captions_val2017.json --coco-images val2017/\n"
          "  vlm eval --model vit-b-32/ --zeroshot imagenet-val/ --templates openai\n",
          (long long)VLM_DEFAULT_MAX_PIXELS);
}

typedef struct {
  const char *model, *data, *zs, *dataset_type, *img_key, *cap_key, *coco_images, *templates, *tokenizer;
  const char *precision, *device, *classifier;
  char sep;
  int json, caption_match;
  long long batch, workers;
  long long max_pixels;   /* --max-image-pixels; 0: not given */
} opts;

/* "shapes" or "shapes:..." (as the loader's detection: "shapes.tsv" is a CSV file) */
static int is_shapes(const char *s) { return s && !strncmp(s, "shapes", 6) && (s[6] == 0 || s[6] == ':'); }

/* A shapes spec without the val split or a count: the generated training split,
 * VLM_SHAPES_TRAIN_DEFAULT (1,000,000) samples. A field other than train, val or a count
 * (a typo) is left to the loader, whose error gives the spec's form. */
static int shapes_unbounded(const char *s) {
  if (!is_shapes(s)) return 0;
  for (const char *p = s + 6; *p == ':';) {
    const char *f = ++p;
    while (*p && *p != ':') p++;
    if (!(p - f == 5 && !strncmp(f, "train", 5))) return 0;
  }
  return 1;
}

static vlm_status open_loader(const opts *o, vlm_encoder *enc, const char *spec, int zeroshot, vlm_loader **out) {
  vlm_loader_cfg lc;
  vlm_loader_cfg_default(&lc);
  lc.data = spec;
  vlm_source_opts_default(&lc.src);
  if (zeroshot) {
    struct stat sb;
    if (!is_shapes(spec) && stat(spec, &sb) == 0 && S_ISDIR(sb.st_mode)) lc.src.type = VLM_DS_IMAGEFOLDER;
  } else if (o->dataset_type && !vlm_ds_type_parse(o->dataset_type, &lc.src.type)) {
    return vlm_error(VLM_ERR_ARG, "--dataset-type: unknown type '%s' (auto|csv|coco|wds|folder|imagefolder|shapes)",
                     o->dataset_type);
  }
  lc.src.csv_separator = o->sep;
  if (o->img_key) lc.src.csv_img_key = o->img_key;
  if (o->cap_key) lc.src.csv_caption_key = o->cap_key;
  if (o->coco_images) lc.src.coco_images = o->coco_images;
  lc.src.seed = 0;   /* the shapes set vlm train evaluates on */
  lc.batch_size = (int)o->batch;
  lc.workers = (int)o->workers;
  lc.train = 0;
  lc.drop_last = 0;
  lc.pre = enc->pre;
  if (o->max_pixels) lc.decode.max_pixels = o->max_pixels;
  lc.context_length = (int)enc->cfg.text.context_length;
  lc.pad_id = 0;
  lc.tokenizer = enc->tok;
  return vlm_loader_open(out, &lc);   /* its errors name the file */
}

static int64_t batch_text_len(const int32_t *ids, int n, int64_t ctx) {
  int64_t L = 1;
  for (int i = 0; i < n; i++)
    for (int64_t j = ctx; j > L; j--)
      if (ids[(size_t)i * ctx + j - 1]) { L = j; break; }
  return L;
}

typedef struct {
  int have;
  int64_t samples, images, skipped;
  int caption_match;
  vlm_retrieval_metrics m;
} retrieval_out;

/* Features of every caption and of each group's image (once), then the metrics. */
/* A model whose features are not finite (NaN or inf weights) has no ranks to measure: an
 * error naming it, not recalls computed from NaN similarities. */
static vlm_status finite_features(const char *model, const char *what, const float *f, int64_t n, int64_t E) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t d = 0; d < E; d++)
      if (!isfinite(f[i * E + d])) {
        bad++;
        break;
      }
  if (!bad) return VLM_OK;
  return vlm_error(VLM_ERR_FORMAT, "%s: the model gives non-finite (NaN or inf) %s features for %lld of %lld inputs: "
                   "it cannot be evaluated", model, what, (long long)bad, (long long)n);
}

static vlm_status run_retrieval(const opts *o, vlm_encoder *enc, retrieval_out *r) {
  memset(r, 0, sizeof *r);
  vlm_loader *ld = NULL;
  vlm_status st = open_loader(o, enc, o->data, 0, &ld);
  if (st != VLM_OK) return st;
  const int64_t E = vlm_encoder_dim(enc), ctx = enc->cfg.text.context_length, S = vlm_encoder_image_size(enc);
  const int64_t per = 3 * S * S;
  int64_t n = 0, cap = 0, U = 0, ucap = 0;
  float *txt = NULL, *img = NULL, *pix = malloc((size_t)(o->batch * per) * sizeof(float));
  int32_t *ids = NULL, *ids_c = malloc((size_t)(o->batch * ctx) * sizeof(int32_t));
  int64_t *grp = NULL;
  vlm_group_map seen = {0};   /* group -> its image's row in img */
  if (!pix || !ids_c) st = vlm_error(VLM_ERR_OOM, "out of memory");
  if (st == VLM_OK) st = vlm_loader_start_epoch(ld, 0, 0);
  const int64_t batches = vlm_loader_batches_per_epoch(ld);
  /* a line now and then (in a log every 10 s, VLM_PROGRESS_EVERY) when there are more than 4 batches */
  vlm_tools_progress pg;
  vlm_tools_progress_start(&pg, CMD ": retrieval", "samples", vlm_loader_samples_per_epoch(ld), batches > 4);
  vlm_batch b;
  while (st == VLM_OK && vlm_loader_next(ld, &b) == 1) {
    if (b.n <= 0) continue;
    if (n + b.n > cap || U + b.n > ucap) {
      int64_t nc = cap ? cap : 1024;
      while (nc < n + b.n) nc *= 2;
      float *t2 = realloc(txt, (size_t)(nc * E) * sizeof(float));
      if (t2) txt = t2;
      int32_t *i2 = realloc(ids, (size_t)(nc * ctx) * sizeof(int32_t));
      if (i2) ids = i2;
      int64_t *g2 = realloc(grp, (size_t)nc * sizeof(int64_t));
      if (g2) grp = g2;
      float *m2 = realloc(img, (size_t)(nc * E) * sizeof(float));
      if (m2) img = m2;
      if (!t2 || !i2 || !g2 || !m2) { st = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
      cap = ucap = nc;
    }
    /* captions */
    int64_t L = batch_text_len(b.ids, b.n, ctx);
    for (int i = 0; i < b.n; i++) memcpy(ids_c + (size_t)i * L, b.ids + (size_t)i * ctx, (size_t)L * sizeof(int32_t));
    if ((st = vlm_encoder_ids(enc, ids_c, b.n, L, txt + (size_t)(n * E))) != VLM_OK) break;
    memcpy(ids + (size_t)(n * ctx), b.ids, (size_t)(b.n * ctx) * sizeof(int32_t));
    memcpy(grp + n, b.groups, (size_t)b.n * sizeof(int64_t));
    /* images: one per group */
    int64_t k = 0;
    for (int i = 0; i < b.n && st == VLM_OK; i++) {
      int64_t found;
      if ((st = vlm_group_map_add(&seen, b.groups[i], U + k, &found)) != VLM_OK || found >= 0) continue;
      memcpy(pix + (size_t)(k * per), b.images + (size_t)i * per, (size_t)per * sizeof(float));
      k++;
    }
    if (st == VLM_OK && k) st = vlm_encoder_images(enc, pix, k, img + (size_t)(U * E));
    U += k;
    n += b.n;
    vlm_tools_progress_add(&pg, b.n, 0);
  }
  vlm_loader_stats ls;
  vlm_loader_stats_get(ld, &ls);
  r->skipped = ls.bad;
  if (ls.bad && !o->json)
    fprintf(stderr, CMD ": %s: %lld bad samples skipped (last: %s)\n", o->data, (long long)ls.bad, ls.last_error);
  if (st == VLM_OK && n == 0)
    st = ls.bad ? vlm_error(VLM_ERR_FORMAT, "%s: no usable image-caption pair (%lld bad samples; last: %s)", o->data,
                            (long long)ls.bad, ls.last_error)
                : vlm_error(VLM_ERR_FORMAT, "%s: no usable image-caption pair", o->data);
  int64_t *item = NULL, *timg = NULL;
  if (st == VLM_OK) {
    item = malloc((size_t)n * sizeof(int64_t));
    timg = malloc((size_t)n * sizeof(int64_t));
    if (!item || !timg) st = vlm_error(VLM_ERR_OOM, "out of memory");
  }
  r->caption_match = o->caption_match;
  if (st == VLM_OK && o->caption_match) st = vlm_retrieval_caption_keys(ids, n, ctx, NULL, item);
  if (st == VLM_OK) st = finite_features(o->model, "image", img, U, E);
  if (st == VLM_OK) st = finite_features(o->model, "text", txt, n, E);
  if (st == VLM_OK) {
    /* each caption's image: its group's row in img */
    for (int64_t j = 0; j < n; j++) timg[j] = *vlm_group_map_ref(&seen, grp[j]);
    st = vlm_retrieval_compute(img, U, txt, n, timg, o->caption_match ? item : NULL, E, &r->m);
  }
  if (st == VLM_OK) {
    r->have = 1;
    r->samples = n;
    r->images = U;
  }
  free(item);
  free(timg);
  free(txt);
  free(img);
  free(pix);
  free(ids);
  free(ids_c);
  free(grp);
  vlm_group_map_free(&seen);
  vlm_loader_close(ld);
  return st;
}

typedef struct {
  int have;
  int classes, templates;
  int64_t skipped;
  vlm_zeroshot_result z;
  int shapes;
} zeroshot_out;

static vlm_status run_zeroshot(const opts *o, vlm_encoder *enc, zeroshot_out *r) {
  memset(r, 0, sizeof *r);
  const char *tname = o->templates ? o->templates : is_shapes(o->zs) ? "shapes" : "openai";
  const char *const *tpl = NULL;
  char **tpl_owned = NULL;
  int nt = vlm_zeroshot_templates_builtin(tname, &tpl);
  if (!nt) {
    if (vlm_zeroshot_templates_load(tname, &tpl_owned, &nt) != VLM_OK)
      return vlm_error_prefix(VLM_ERR_ARG, "--templates (openai, simple, shapes or a file)");
    tpl = (const char *const *)tpl_owned;
  }
  vlm_loader *ld = NULL;
  vlm_status st = open_loader(o, enc, o->zs, 1, &ld);
  int nc = 0;
  const char *const *names = st == VLM_OK ? vlm_loader_classnames(ld, &nc) : NULL;
  if (st == VLM_OK && (!names || nc < 1))
    st = vlm_error(VLM_ERR_ARG, "%s: no classes (expected an ImageFolder tree DIR/CLASS/IMAGE or shapes:val)", o->zs);
  const int64_t E = vlm_encoder_dim(enc);
  float *W = NULL, *img = NULL;
  int *labels = NULL;
  uint8_t *unseen = NULL;
  int64_t n = 0, cap = 0;
  if (st == VLM_OK) {
    W = malloc((size_t)nc * (size_t)E * sizeof(float));
    if (!W) st = vlm_error(VLM_ERR_OOM, "out of memory");
  }
  if (st == VLM_OK)   /* classes x templates prompts: minutes with a large text tower (or --classifier) */
    st = vlm_tools_classifier(enc, CMD ": zero-shot", o->model, o->classifier, names, nc, tpl, nt, (int)o->batch, W);
  if (st == VLM_OK) st = vlm_loader_start_epoch(ld, 0, 0);
  vlm_tools_progress ipg;
  vlm_tools_progress_start(&ipg, CMD ": zero-shot", "images", ld ? vlm_loader_samples_per_epoch(ld) : 0,
                           ld && vlm_loader_batches_per_epoch(ld) > 4);
  vlm_batch b;
  while (st == VLM_OK && vlm_loader_next(ld, &b) == 1) {
    if (b.n <= 0) continue;
    if (n + b.n > cap) {
      int64_t c2 = cap ? 2 * cap : 1024;
      while (c2 < n + b.n) c2 *= 2;
      float *i2 = realloc(img, (size_t)(c2 * E) * sizeof(float));
      if (i2) img = i2;
      int *l2 = realloc(labels, (size_t)c2 * sizeof(int));
      if (l2) labels = l2;
      if (!i2 || !l2) { st = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
      cap = c2;
    }
    if ((st = vlm_encoder_images(enc, b.images, b.n, img + (size_t)(n * E))) != VLM_OK) break;
    memcpy(labels + n, b.labels, (size_t)b.n * sizeof(int));
    n += b.n;
    vlm_tools_progress_add(&ipg, b.n, 0);
  }
  vlm_loader_stats ls;
  memset(&ls, 0, sizeof ls);
  if (ld) vlm_loader_stats_get(ld, &ls);
  r->skipped = ls.bad;
  if (ls.bad && !o->json)
    fprintf(stderr, CMD ": %s: %lld unreadable images skipped (last: %s)\n", o->zs, (long long)ls.bad, ls.last_error);
  if (st == VLM_OK && n == 0) st = vlm_error(VLM_ERR_FORMAT, "%s: no readable labelled image", o->zs);
  r->shapes = is_shapes(o->zs);
  if (st == VLM_OK && r->shapes) {
    unseen = calloc((size_t)n, 1);
    if (!unseen) st = vlm_error(VLM_ERR_OOM, "out of memory");
    for (int64_t i = 0; unseen && i < n; i++) unseen[i] = labels[i] >= 0 && vlm_shapes_class_unseen(labels[i]);
  }
  if (st == VLM_OK) st = finite_features(o->model, "image", img, n, E);
  if (st == VLM_OK) st = vlm_zeroshot_eval(img, n, E, W, nc, labels, unseen, &r->z);
  if (st == VLM_OK && r->z.n == 0) st = vlm_error(VLM_ERR_FORMAT, "%s: no image has a class label", o->zs);
  if (st == VLM_OK) {
    r->have = 1;
    r->classes = nc;
    r->templates = nt;
  }
  free(W);
  free(img);
  free(labels);
  free(unseen);
  vlm_zeroshot_strings_free(tpl_owned, nt);
  if (ld) vlm_loader_close(ld);
  return st;
}

static void json_dir(const char *name, const vlm_retrieval_dir *d) {
  printf("\"%s\": {\"R@1\": %.6f, \"R@5\": %.6f, \"R@10\": %.6f, \"mean_rank\": %.4f, \"median_rank\": %.1f, "
         "\"queries\": %lld}",
         name, d->r1, d->r5, d->r10, d->mean_rank, d->median_rank, (long long)d->queries);
}

int vlm_cmd_eval(int argc, char **argv) {
  opts o;
  memset(&o, 0, sizeof o);
  o.sep = '\t';
  o.batch = 64;
  o.workers = 2;
  o.precision = "f32";
  o.device = "cpu";
  int sep_set = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (vlm_app_is_help(a)) { usage(stdout); return 0; }
    if (!strcmp(a, "--json")) { o.json = 1; continue; }
    if (!strcmp(a, "--caption-match")) { o.caption_match = 1; continue; }
    if (strncmp(a, "--", 2)) return vlm_app_bad_arg(CMD, a);   /* the data is given with --data / --zeroshot */
    const char **slot = !strcmp(a, "--model")           ? &o.model
                      : !strcmp(a, "--data")            ? &o.data
                      : !strcmp(a, "--zeroshot")        ? &o.zs
                      : !strcmp(a, "--dataset-type")    ? &o.dataset_type
                      : !strcmp(a, "--csv-img-key")     ? &o.img_key
                      : !strcmp(a, "--csv-caption-key") ? &o.cap_key
                      : !strcmp(a, "--coco-images")     ? &o.coco_images
                      : !strcmp(a, "--templates")       ? &o.templates
                      : !strcmp(a, "--classifier")      ? &o.classifier
                      : !strcmp(a, "--tokenizer")       ? &o.tokenizer
                      : !strcmp(a, "--precision")       ? &o.precision
                      : !strcmp(a, "--device")          ? &o.device : NULL;
    if (!slot && strcmp(a, "--csv-separator") && strcmp(a, "--batch-size") && strcmp(a, "--workers") &&
        strcmp(a, "--max-image-pixels"))
      return vlm_app_bad_arg(CMD, a);
    const char *v = vlm_app_value(CMD, argc, argv, &i);
    if (!v) return 2;
    if (slot) *slot = v;
    else if (!strcmp(a, "--csv-separator")) {
      sep_set = 1;
      if (!strcmp(v, "\\t") || !strcmp(v, "tab")) o.sep = '\t';
      else if (strlen(v) == 1) o.sep = v[0];
      else { fprintf(stderr, CMD ": --csv-separator expects one character, got '%s'\n", v); return 2; }
    } else if (!strcmp(a, "--batch-size")) { if (!vlm_app_parse_int(CMD, a, v, 1, 4096, &o.batch)) return 2; }
    else if (!strcmp(a, "--max-image-pixels")) { if (!vlm_app_parse_int(CMD, a, v, 1, 1LL << 40, &o.max_pixels)) return 2; }
    else if (!vlm_app_parse_int(CMD, a, v, 0, 64, &o.workers)) return 2;   /* --workers */
  }
  if (!o.model || (!o.data && !o.zs)) {
    fprintf(stderr, CMD ": %s (see 'vlm eval --help')\n", !o.model ? "--model is required" : "give --data (retrieval) and/or --zeroshot");
    return 2;
  }
  /* an option of the part that is not run would be silently nothing */
  const char *unused = !o.zs && o.templates        ? "--templates"
                     : !o.zs && o.classifier       ? "--classifier"
                     : o.data                      ? NULL
                     : o.caption_match             ? "--caption-match"
                     : o.dataset_type              ? "--dataset-type"
                     : sep_set                     ? "--csv-separator"
                     : o.img_key                   ? "--csv-img-key"
                     : o.cap_key                   ? "--csv-caption-key"
                     : o.coco_images               ? "--coco-images" : NULL;
  if (unused) {
    fprintf(stderr, CMD ": %s applies to %s, which is not given\n", unused,
            strcmp(unused, "--templates") && strcmp(unused, "--classifier") ? "--data (retrieval)" : "--zeroshot");
    return 2;
  }
  if (o.max_pixels && (!o.data || is_shapes(o.data)) && (!o.zs || is_shapes(o.zs))) {
    fprintf(stderr, CMD ": --max-image-pixels applies to image files; the shapes set is generated, not decoded\n");
    return 2;
  }
  /* the generated training split has a million pairs: retrieval, quadratic in them, would
   * run for hours; the held-out split is the one to measure */
  if (o.classifier && !vlm_tools_classifier_dir_ok("eval", o.classifier)) return 1;   /* before any work */
  if (shapes_unbounded(o.data) || shapes_unbounded(o.zs)) {
    const int d = shapes_unbounded(o.data);
    fprintf(stderr,
            CMD ": %s %s: that is the shapes training split (%d generated %s); evaluate on the held-out "
            "split, shapes:val (1000 %s) or shapes:val:N, or give a count, %s:N\n",
            d ? "--data" : "--zeroshot", d ? o.data : o.zs, VLM_SHAPES_TRAIN_DEFAULT,
            d ? "pairs, each caption ranked against every image" : "images", d ? "pairs" : "images", d ? o.data : o.zs);
    return 2;
  }
  const int eflags = vlm_app_encoder_flags(CMD, o.precision, o.device);
  if (eflags < 0) return 2;
  if (is_shapes(o.data)) o.caption_match = 1;

  vlm_encoder enc;
  if (vlm_encoder_open(&enc, o.model, o.tokenizer, o.batch, VLM_ENC_TEXT | eflags) !=
      VLM_OK) {
    fprintf(stderr, CMD ": %s\n", vlm_last_error());
    return 1;
  }
  retrieval_out R;
  zeroshot_out Z;
  memset(&R, 0, sizeof R);
  memset(&Z, 0, sizeof Z);
  int rc = 0;
  if (o.data && run_retrieval(&o, &enc, &R) != VLM_OK) {
    fprintf(stderr, CMD ": %s\n", vlm_last_error());
    rc = 1;
  }
  if (rc == 0 && o.zs && run_zeroshot(&o, &enc, &Z) != VLM_OK) {
    fprintf(stderr, CMD ": %s\n", vlm_last_error());
    rc = 1;
  }
  if (rc == 0 && o.json) {
    printf("{\"model\": ");
    vlm_tools_json_str(stdout, o.model);
    printf(", \"identity\": \"%s\"", enc.identity);
    if (R.have) {
      printf(",\n \"retrieval\": {\"data\": ");
      vlm_tools_json_str(stdout, o.data);
      printf(", \"samples\": %lld, \"images\": %lld, \"texts\": %lld, \"skipped\": %lld, \"caption_match\": %s,\n  ",
             (long long)R.samples, (long long)R.images, (long long)R.samples, (long long)R.skipped,
             R.caption_match ? "true" : "false");
      json_dir("image_to_text", &R.m.i2t);
      printf(",\n  ");
      json_dir("text_to_image", &R.m.t2i);
      printf("}");
    }
    if (Z.have) {
      printf(",\n \"zeroshot\": {\"data\": ");
      vlm_tools_json_str(stdout, o.zs);
      printf(", \"classes\": %d, \"templates\": %d, \"images\": %lld, \"skipped\": %lld, \"top1\": %.6f, \"top5\": %.6f",
             Z.classes, Z.templates, (long long)Z.z.n, (long long)Z.skipped, Z.z.top1, Z.z.top5);
      if (Z.shapes)
        printf(", \"unseen\": {\"images\": %lld, \"top1\": %.6f, \"top5\": %.6f}", (long long)Z.z.n_subset,
               Z.z.subset_top1, Z.z.subset_top5);
      printf("}");
    }
    printf("}\n");
  } else if (rc == 0) {
    if (R.have) {
      printf("retrieval on %s: %lld images, %lld captions%s\n", o.data, (long long)R.images, (long long)R.samples,
             R.caption_match ? " (identical captions count as the same item)" : "");
      if (R.skipped) printf("skipped: %lld bad samples\n", (long long)R.skipped);
      printf("                 R@1      R@5     R@10  mean rank  median rank\n");
      const vlm_retrieval_dir *d[2] = {&R.m.t2i, &R.m.i2t};
      const char *nm[2] = {"text->image", "image->text"};
      for (int k = 0; k < 2; k++)
        printf("  %-11s %6.2f%%  %6.2f%%  %6.2f%%  %9.2f  %11.0f\n", nm[k], 100 * d[k]->r1, 100 * d[k]->r5,
               100 * d[k]->r10, d[k]->mean_rank, d[k]->median_rank);
    }
    if (Z.have) {
      printf("%szero-shot on %s: %lld images, %d classes, %d templates\n", R.have ? "\n" : "", o.zs, (long long)Z.z.n,
             Z.classes, Z.templates);
      if (Z.skipped) printf("skipped: %lld unreadable images\n", (long long)Z.skipped);
      printf("  top-1 accuracy: %6.2f%%\n  top-5 accuracy: %6.2f%%\n", 100 * Z.z.top1, 100 * Z.z.top5);
      if (Z.shapes && Z.z.n_subset)
        printf("  unseen colour-shape combinations (%lld images): top-1 %.2f%%, top-5 %.2f%%\n", (long long)Z.z.n_subset,
               100 * Z.z.subset_top1, 100 * Z.z.subset_top5);
    }
  }
  vlm_encoder_close(&enc);
  return rc;
}
