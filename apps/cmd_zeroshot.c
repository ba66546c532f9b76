/* vlm zeroshot: open_clip's zero-shot classification of images, or its accuracy
 * on an ImageFolder tree (--eval). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/apps.h"
#include "apps/tools.h"
#include "contrastive/contrastive.h"


static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm zeroshot --model PATH (--classes A,B,C | --classes-file F) [options] IMAGE|DIR...\n"
          "       vlm zeroshot --model PATH --eval DIR [--classes ... | --classes-file F] [options]\n"
          "\n"
          "Zero-shot classification as open_clip does it: each class's text embeddings over\n"
          "all templates (\"a photo of a {}.\"), each L2-normalized, averaged, renormalized;\n"
          "logits = 100 x cosine(image, class); probabilities = softmax over the classes.\n"
          "Images (JPEG, PNG, WebP; folders are searched recursively, not into linked\n"
          "folders, for the files named .jpg, .jpeg, .png or .webp and those that start\n"
          "like an image; a file named twice is classified once) get open_clip's eval\n"
          "preprocessing at the model's image size. A folder that cannot be opened, or one\n"
          "more than 64 folders deep, is named in a warning and the rest classified.\n"
          "Unreadable images (no permission, empty, corrupt, over --max-image-pixels) are\n"
          "skipped with a message naming the file and counted, in folders too, and so are\n"
          "images whose embedding is not finite (NaN or infinite: a damaged model), the\n"
          "model named. Classes whose prompts the text tower cannot tell apart (names the\n"
          "tokenizer reads alike: it lower-cases and collapses spaces; names cut off by a\n"
          "template longer than the context length) are warned about: they split their\n"
          "probability.\n"
          "\n"
          "Options:\n"
          "  --model PATH        model directory, config or weights file (see 'vlm info')\n"
          "  --classes A,B,C     class names, comma-separated\n"
          "  --classes-file F    class names, one per line (blank lines skipped; a name given\n"
          "                      twice is warned about: the two split its probability)\n"
          "  --templates T       openai (open_clip's 80 ImageNet prompts, default), simple (its\n"
          "                      7-prompt subset), shapes (6 prompts for the synthetic shapes\n"
          "                      set), or a file with one template per line, each\n"
          "                      holding {} or {c} where the class name goes\n"
          "  --tokenizer PATH    vocabulary (vocab.json + merges.txt folder, tokenizer.json, or\n"
          "                      bpe_simple_vocab_16e6.txt.gz); default: the model's tokenizer/\n"
          "  --top-k K           classes printed per image (default 5; not with --eval)\n"
          "  --batch-size N      images / texts per forward pass (default 32)\n"
          "  --max-image-pixels N  skip images with more pixels (default %lld, PIL's\n"
          "                      limit), checked from the header before decoding\n"
          "  --classifier FILE   keep the classifier (the class embeddings) in FILE: read from it\n"
          "                      when it was built by this model, precision and device from the\n"
          "                      same prompts (class names, templates, tokenizer), else built and\n"
          "                      written there (atomically). Building it embeds classes x\n"
          "                      templates prompts: minutes for 1,000 classes and the 80 openai\n"
          "                      templates; reading it, milliseconds. A FILE that is not one is\n"
          "                      refused and left as it is\n"
          "  --precision P       f32 (default) or bf16: bf16 matmul inputs, f32 accumulation\n"
          "                      (weights converted once; features within ~1e-5 cosine of f32)\n"
          "  --device D          cpu (default) or cuda: embed on the GPU (each batch uploaded,\n"
          "                      its features copied back)\n"
          "  --eval DIR          ImageFolder tree: each sub-folder is a class (sorted by name;\n"
          "                      '_' in a folder name reads as a space unless --classes names the\n"
          "                      classes, in the same order); reports top-1 / top-5 accuracy,\n"
          "                      per-class accuracy and the most frequent confusions (images\n"
          "                      beside the class folders are in no class: named, not used; a\n"
          "                      link to a folder is a class, as in torchvision and 'vlm eval';\n"
          "                      a class folder without images is still a class, warned about,\n"
          "                      its accuracy n/a, null in JSON)\n"
          "  --                  the arguments after it are images or folders (names that start with '-')\n"
          "  --json              one JSON document on stdout:\n"
          "                      classify: {\"model\", \"identity\", \"classes\": [..], \"templates\": n,\n"
          "                        \"results\": [{\"path\", \"top\": [{\"class\", \"index\", \"prob\", \"logit\"}]}],\n"
          "                        \"skipped\": [paths]}\n"
          "                      eval: {\"model\", \"identity\", \"data\", \"classes\", \"templates\", \"images\",\n"
          "                        \"skipped\", \"top1\", \"top5\", \"per_class\": [{\"class\", \"images\", \"top1\"}],\n"
          "                        \"confusions\": [{\"true\", \"predicted\", \"count\"}]}\n"
          "\n"
          "Exit status: 0 when at least one image was classified, 1 on errors (or when every\n"
          "image was skipped; a class embedding that is not finite is an error), 2 on usage errors.\n"
          "\n"
          "Examples:\n"
          "  vlm zeroshot --model vit-b-32/ --classes cat,dog,car photos/\n"
          "  vlm zeroshot --model vit-b-32/ --classes-file classes.txt --templates simple --top-k 3 a.jpg b.png\n"
          "  vlm zeroshot --model my-model/ --eval val/ --json > accuracy.json\n"
          "  vlm zeroshot --model vit-b-32/ --classes-file imagenet.txt --classifier imagenet.zsc photos/\n",
          (long long)VLM_DEFAULT_MAX_PIXELS);
}

/* Sub-folders of dir, sorted; images beside them (in no class) are counted and named. */
static vlm_status subdirs(const char *dir, vlm_pathlist *out) {
  int64_t loose = 0;
  char first[256] = "";
  DIR *d = opendir(dir);
  if (!d) return vlm_error(VLM_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
  struct dirent *de;
  vlm_status st = VLM_OK;
  while ((de = readdir(d)) && st == VLM_OK) {
    if (de->d_name[0] == '.') continue;
    size_t len = strlen(dir) + strlen(de->d_name) + 2;
    char *p = malloc(len);
    if (!p) { st = vlm_error(VLM_ERR_OOM, "out of memory"); break; }
    snprintf(p, len, "%s/%s", dir, de->d_name);
    struct stat s;
    if (stat(p, &s) != 0) {   /* a link to a class folder that is not there (a relative target gone wrong) */
      const int e = errno;
      if (lstat(p, &s) == 0 && S_ISLNK(s.st_mode))
        fprintf(stderr, "vlm zeroshot: warning: %s: a link whose target cannot be read (%s): not a class\n", p,
                strerror(e));
    } else if (S_ISDIR(s.st_mode)) st = vlm_pathlist_add(out, de->d_name);
    else if (S_ISREG(s.st_mode) && vlm_tools_is_image(p) && loose++ == 0) snprintf(first, sizeof first, "%s", de->d_name);
    free(p);
  }
  closedir(d);
  if (loose)
    fprintf(stderr, "vlm zeroshot: warning: %s: %lld image%s not in a class sub-folder, not used (first: %s)\n", dir,
            (long long)loose, loose == 1 ? " is" : "s are", first);
  for (int64_t i = 1; i < out->n; i++)   /* insertion sort: few classes */
    for (int64_t j = i; j > 0 && strcmp(out->paths[j - 1], out->paths[j]) > 0; j--) {
      char *t = out->paths[j]; out->paths[j] = out->paths[j - 1]; out->paths[j - 1] = t;
    }
  return st;
}

/* A number in the JSON output: JSON has no NaN or infinity, so a number that is not finite is
 * null (docs/JSON.md): a class without images has no accuracy (NAN); a NaN the model makes
 * keeps the output JSON too. */
static void json_num(double v, int decimals) {
  if (isfinite(v)) printf("%.*f", decimals, v);
  else printf("null");
}

/* Images whose embedding is not finite (NaN or infinite: damaged weights, or an overflow in the
 * model) have no class and would make every probability NaN: each is skipped as an unreadable
 * image is (ok[i] = 0), the first few named, and the model named once. Returns how many. */
#define NONFINITE_NAMED 10
static int64_t skip_nonfinite(const float *emb, int *ok, int64_t N, int64_t E, char *const *paths, const char *model) {
  int64_t n = 0;
  for (int64_t i = 0; i < N; i++) {
    if (!ok[i]) continue;
    int64_t d = 0;
    while (d < E && isfinite(emb[i * E + d])) d++;
    if (d == E) continue;
    ok[i] = 0;
    if (n++ < NONFINITE_NAMED) {
      fprintf(stderr, "vlm zeroshot: ");
      vlm_tools_text_str(stderr, paths[i]);
      fprintf(stderr, ": its embedding is not finite (NaN or infinite); skipped\n");
    }
  }
  if (n)
    fprintf(stderr, "vlm zeroshot: warning: %lld image%s with embeddings that are not finite%s: the model %s gives NaN "
            "or infinite image features (damaged weights?)\n", (long long)n, n == 1 ? "" : "s",
            n > NONFINITE_NAMED ? " (the first named above)" : "", model);
  return n;
}

/* A folder where a text file goes: said as such (reading one fails with a bare "read error"). */
static int is_folder(const char *flag, const char *path, const char *what) {
  struct stat sb;
  if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return 0;
  fprintf(stderr, "vlm zeroshot: %s %s: is a directory, not a text file (%s)\n", flag, path, what);
  return 1;
}

typedef struct { int t, p; int64_t count; } confusion;

static int cmp_conf(const void *a, const void *b) {
  const confusion *x = a, *y = b;
  if (x->count != y->count) return x->count > y->count ? -1 : 1;
  if (x->t != y->t) return x->t < y->t ? -1 : 1;
  return x->p < y->p ? -1 : x->p > y->p;
}

typedef struct { const char *name; int at; } named_at;

static int by_name_then_place(const void *a, const void *b) {
  const named_at *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : (x->at > y->at) - (x->at < y->at);
}

/* A class named twice splits its probability between the two: said (each repeat against the
 * first place of its name, in the order of the list), not refused (ImageNet's list as some copy
 * it names 'crane' twice). Sorted, so 21k names cost no 200M comparisons. 0: out of memory. */
static int warn_repeated_classes(const char *const *classes, int n, const char *file) {
  if (n < 2) return 1;
  named_at *v = malloc((size_t)n * sizeof *v);
  int *first = malloc((size_t)n * sizeof *first);
  if (!v || !first) { free(v); free(first); return 0; }
  for (int c = 0; c < n; c++) v[c] = (named_at){classes[c], c};
  qsort(v, (size_t)n, sizeof *v, by_name_then_place);
  for (int k = 0, g = 0; k < n; k++) {
    if (k > 0 && strcmp(v[k].name, v[k - 1].name)) g = k;
    first[v[k].at] = v[g].at;
  }
  for (int c = 0; c < n; c++)
    if (first[c] != c)
      fprintf(stderr, "vlm zeroshot: warning: %s%sclass names %d and %d are both '%s': the two split its probability\n",
              file ? file : "", file ? ": " : "", first[c] + 1, c + 1, classes[c]);
  free(v);
  free(first);
  return 1;
}

int vlm_cmd_zeroshot(int argc, char **argv) {
  const char *model = NULL, *classes_s = NULL, *classes_f = NULL, *templates_s = "openai", *tokenizer = NULL;
  const char *eval = NULL, *precision = "f32", *device = "cpu", *classifier = NULL;
  long long top_k = 5, batch = 32, max_pixels = VLM_DEFAULT_MAX_PIXELS;
  int json = 0, top_k_set = 0;
  vlm_pathlist inputs = {0};
  int paths_only = 0;   /* after "--": file names that start with '-' */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!paths_only && !strcmp(a, "--")) { paths_only = 1; continue; }
    if (!paths_only && vlm_app_is_help(a)) { usage(stdout); vlm_pathlist_free(&inputs); return 0; }
    if (!paths_only && !strcmp(a, "--json")) { json = 1; continue; }
    if (!paths_only && a[0] == '-' && a[1]) {   /* "-x" too: an option, not a file ('--' first for such a name) */
      const char **slot = !strcmp(a, "--model")        ? &model
                        : !strcmp(a, "--classes")      ? &classes_s
                        : !strcmp(a, "--classes-file") ? &classes_f
                        : !strcmp(a, "--templates")    ? &templates_s
                        : !strcmp(a, "--tokenizer")    ? &tokenizer
                        : !strcmp(a, "--eval")         ? &eval
                        : !strcmp(a, "--precision")    ? &precision
                        : !strcmp(a, "--device")       ? &device
                        : !strcmp(a, "--classifier")   ? &classifier : NULL;
      long long *num = !strcmp(a, "--top-k") ? &top_k : !strcmp(a, "--batch-size") ? &batch
                     : !strcmp(a, "--max-image-pixels") ? &max_pixels : NULL;
      const char *v = NULL;
      int bad = !slot && !num ? vlm_app_bad_arg("vlm zeroshot", a) : !(v = vlm_app_value("vlm zeroshot", argc, argv, &i));
      if (!bad && slot) *slot = v;
      if (!bad && num)
        bad = !vlm_app_parse_int("vlm zeroshot", a, v, 1, num == &top_k ? 1000000 : num == &batch ? 4096 : 1LL << 40, num);
      if (num == &top_k) top_k_set = 1;
      if (bad) {
        vlm_pathlist_free(&inputs);
        return 2;
      }
      continue;
    }
    if (vlm_pathlist_add(&inputs, a) != VLM_OK) { fprintf(stderr, "vlm zeroshot: out of memory\n"); return 1; }
  }
  int usage_err = 0;
  if (!model) { fprintf(stderr, "vlm zeroshot: --model is required (see 'vlm zeroshot --help')\n"); usage_err = 1; }
  else if (classes_s && classes_f) { fprintf(stderr, "vlm zeroshot: give --classes or --classes-file, not both\n"); usage_err = 1; }
  else if (!eval && !classes_s && !classes_f) { fprintf(stderr, "vlm zeroshot: --classes or --classes-file is required (or --eval DIR)\n"); usage_err = 1; }
  else if (!eval && inputs.n == 0) { fprintf(stderr, "vlm zeroshot: no IMAGE or DIR given\n"); usage_err = 1; }
  else if (eval && inputs.n) { fprintf(stderr, "vlm zeroshot: --eval takes its images from DIR; drop the other paths\n"); usage_err = 1; }
  else if (eval && top_k_set) { fprintf(stderr, "vlm zeroshot: --top-k is the classes printed per image; --eval reports top-1 and top-5\n"); usage_err = 1; }
  int eflags = usage_err ? 0 : vlm_app_encoder_flags("vlm zeroshot", precision, device);
  if (eflags < 0) usage_err = 1;
  if (usage_err) { vlm_pathlist_free(&inputs); return 2; }
  if (classifier && !vlm_tools_classifier_dir_ok("zeroshot", classifier)) {   /* now, not after minutes of building */
    vlm_pathlist_free(&inputs);
    return 1;
  }

  int rc = 1, n_classes = 0, n_tpl = 0;
  char **classes = NULL, **tpl_owned = NULL;
  const char *const *tpl = NULL;
  float *W = NULL, *emb = NULL, *logits = NULL;
  int *ok = NULL, *labels = NULL;
  vlm_pathlist files = {0}, folders = {0};
  vlm_encoder enc;
  memset(&enc, 0, sizeof enc);
  int enc_open = 0;

  if (classes_s) {
    if (vlm_tools_split_list(classes_s, &classes, &n_classes) != VLM_OK) {
      fprintf(stderr, "vlm zeroshot: --classes: %s\n", vlm_last_error());
      rc = 2;
      goto done;
    }
  } else if (classes_f) {
    if (is_folder("--classes-file", classes_f, "one class name per line")) goto done;
    if (vlm_tools_read_lines(classes_f, &classes, &n_classes, 0) != VLM_OK) {
      fprintf(stderr, "vlm zeroshot: %s\n", vlm_last_error());
      goto done;
    }
    if (n_classes == 0) { fprintf(stderr, "vlm zeroshot: %s: no class names in the file\n", classes_f); goto done; }
  }
  /* a class named twice splits its probability between the two: said, not refused (ImageNet's
   * list as some copy it names 'crane' twice) */
  if (!warn_repeated_classes((const char *const *)classes, n_classes, classes_f)) {
    fprintf(stderr, "vlm zeroshot: out of memory\n");
    goto done;
  }
  if (!(n_tpl = vlm_zeroshot_templates_builtin(templates_s, &tpl))) {
    if (is_folder("--templates", templates_s, "one template per line, or openai, simple, shapes")) goto done;
    if (vlm_zeroshot_templates_load(templates_s, &tpl_owned, &n_tpl) != VLM_OK) {
      fprintf(stderr, "vlm zeroshot: --templates: %s (expected openai, simple, shapes or a file)\n", vlm_last_error());
      goto done;
    }
    tpl = (const char *const *)tpl_owned;
  }
  /* the images (and labels for --eval) */
  if (eval) {
    if (subdirs(eval, &folders) != VLM_OK) { fprintf(stderr, "vlm zeroshot: %s\n", vlm_last_error()); goto done; }
    if (folders.n == 0) { fprintf(stderr, "vlm zeroshot: %s: no class sub-folders (expected DIR/CLASS/IMAGE)\n", eval); goto done; }
    if (classes && n_classes != folders.n) {
      fprintf(stderr, "vlm zeroshot: %s has %lld class folders but %d class names were given\n", eval,
              (long long)folders.n, n_classes);
      goto done;
    }
    if (!classes) {
      n_classes = (int)folders.n;
      classes = calloc((size_t)n_classes, sizeof *classes);
      if (!classes) { fprintf(stderr, "vlm zeroshot: out of memory\n"); goto done; }
      for (int c = 0; c < n_classes; c++) {
        classes[c] = strdup(folders.paths[c]);
        if (!classes[c]) { fprintf(stderr, "vlm zeroshot: out of memory\n"); goto done; }
        for (char *p = classes[c]; *p; p++) if (*p == '_') *p = ' ';
      }
    }
    int64_t cap = 0;
    for (int c = 0; c < n_classes; c++) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", eval, folders.paths[c]);
      int64_t before = files.n;
      if (vlm_tools_collect(&files, path, "zeroshot") != VLM_OK) { fprintf(stderr, "vlm zeroshot: %s\n", vlm_last_error()); goto done; }
      if (files.n == before)   /* still a class (the same classifier as vlm eval's), with no accuracy of its own */
        fprintf(stderr, "vlm zeroshot: warning: %s: class '%s' has no images: its accuracy is n/a\n", path, classes[c]);
      if (files.n > cap) {
        cap = files.n;
        int *nl = realloc(labels, (size_t)cap * sizeof *nl);
        if (!nl) { fprintf(stderr, "vlm zeroshot: out of memory\n"); goto done; }
        labels = nl;
      }
      for (int64_t i = before; i < files.n; i++) labels[i] = c;
    }
    if (files.n == 0) { fprintf(stderr, "vlm zeroshot: %s: no JPEG, PNG or WebP images in the class folders\n", eval); goto done; }
  } else {
    for (int64_t i = 0; i < inputs.n; i++)
      if (vlm_tools_collect(&files, inputs.paths[i], "zeroshot") != VLM_OK) {
        fprintf(stderr, "vlm zeroshot: %s\n", vlm_last_error());
        goto done;
      }
    int64_t twice = vlm_pathlist_drop_duplicates(&files);   /* a folder and a file in it: classified once */
    if (twice < 0) { fprintf(stderr, "vlm zeroshot: out of memory\n"); goto done; }
    if (twice)
      fprintf(stderr, "vlm zeroshot: %lld image%s named more than once, classified once\n", (long long)twice,
              twice == 1 ? "" : "s");
    if (files.n == 0) { fprintf(stderr, "vlm zeroshot: no JPEG, PNG or WebP images found\n"); goto done; }
  }

  if (vlm_encoder_open(&enc, model, tokenizer, batch, VLM_ENC_TEXT | eflags) != VLM_OK) {
    fprintf(stderr, "vlm zeroshot: %s\n", vlm_last_error());
    goto done;
  }
  enc_open = 1;
  int64_t E = vlm_encoder_dim(&enc), N = files.n, C = n_classes;
  W = malloc((size_t)C * (size_t)E * sizeof(float));
  emb = calloc((size_t)N * (size_t)E, sizeof(float));
  logits = malloc((size_t)N * (size_t)C * sizeof(float));
  ok = calloc((size_t)N, sizeof(int));
  if (!W || !emb || !logits || !ok) { fprintf(stderr, "vlm zeroshot: out of memory\n"); goto done; }
  /* --classifier FILE: this model's classifier for these prompts, when FILE holds it */
  if (vlm_tools_classifier(&enc, "zeroshot", model, classifier, (const char *const *)classes, n_classes, tpl, n_tpl,
                           (int)batch, W) != VLM_OK) {
    fprintf(stderr, "vlm zeroshot: %s\n", vlm_last_error());
    goto done;
  }
  const vlm_decode_opts decode = {.max_pixels = max_pixels};
  int64_t bad = vlm_tools_embed_files(&enc, files.paths, N, emb, ok, &decode, "zeroshot", N > 64);
  if (bad < 0) goto done;
  /* an image whose embedding is not finite has no class: skipped as an unreadable one is */
  const int64_t nonfinite = skip_nonfinite(emb, ok, N, E, files.paths, model);
  bad += nonfinite;
  if (bad == N && !nonfinite) { fprintf(stderr, "vlm zeroshot: none of the %lld images could be read\n", (long long)N); goto done; }
  if (bad == N) {
    fprintf(stderr, "vlm zeroshot: none of the %lld images could be classified (%lld unreadable, %lld with embeddings "
            "that are not finite)\n", (long long)N, (long long)(bad - nonfinite), (long long)nonfinite);
    goto done;
  }
  /* pack the good rows */
  int64_t G = 0;
  for (int64_t i = 0; i < N; i++) {
    if (!ok[i]) continue;
    if (G != i) {
      memmove(emb + (size_t)(G * E), emb + (size_t)(i * E), (size_t)E * sizeof(float));
      if (labels) labels[G] = labels[i];
    }
    G++;
  }
  vlm_zeroshot_logits(emb, G, W, C, E, logits);

  if (!eval) {
    int k = (int)(top_k < C ? top_k : C);
    int64_t *idx = malloc((size_t)k * sizeof *idx);
    float *prob = malloc((size_t)C * sizeof(float));
    if (!idx || !prob) { free(idx); free(prob); fprintf(stderr, "vlm zeroshot: out of memory\n"); goto done; }
    if (json) {
      printf("{\"model\": ");
      vlm_tools_json_str(stdout, model);
      printf(", \"identity\": \"%s\", \"templates\": %d, \"classes\": [", enc.identity, n_tpl);
      for (int c = 0; c < C; c++) { if (c) printf(", "); vlm_tools_json_str(stdout, classes[c]); }
      printf("],\n \"results\": [");
    }
    int64_t g = 0, first = 1;
    for (int64_t i = 0; i < N; i++) {
      if (!ok[i]) continue;
      const float *lg = logits + (size_t)(g * C);
      memcpy(prob, lg, (size_t)C * sizeof(float));
      vlm_softmax_row(prob, C);
      vlm_topk(lg, C, k, idx, NULL);
      if (json) {
        printf("%s\n  {\"path\": ", first ? "" : ",");
        vlm_tools_json_str(stdout, files.paths[i]);
        printf(", \"top\": [");
        for (int j = 0; j < k; j++) {
          printf("%s{\"class\": ", j ? ", " : "");
          vlm_tools_json_str(stdout, classes[idx[j]]);
          printf(", \"index\": %lld, \"prob\": ", (long long)idx[j]);
          json_num(prob[idx[j]], 6);
          printf(", \"logit\": ");
          json_num(lg[idx[j]], 4);
          putchar('}');
        }
        printf("]}");
      } else {
        vlm_tools_text_str(stdout, files.paths[i]);
        putchar('\n');
        for (int j = 0; j < k; j++) printf("  %.4f  %s\n", prob[idx[j]], classes[idx[j]]);
      }
      first = 0;
      g++;
    }
    if (json) {
      printf("\n ],\n \"skipped\": [");
      int f2 = 1;
      for (int64_t i = 0; i < N; i++)
        if (!ok[i]) { printf("%s", f2 ? "" : ", "); vlm_tools_json_str(stdout, files.paths[i]); f2 = 0; }
      printf("]}\n");
    }
    free(idx);
    free(prob);
    if (bad) fprintf(stderr, "vlm zeroshot: %lld of %lld images skipped\n", (long long)bad, (long long)N);
  } else {
    vlm_zeroshot_result acc;
    vlm_zeroshot_accuracy(logits, G, C, labels, NULL, &acc);
    const double top1 = acc.top1, top5 = acc.top5;
    int64_t *cm = calloc((size_t)(C * C), sizeof *cm);
    int64_t *cnt = calloc((size_t)C, sizeof *cnt);
    confusion *cf = malloc((size_t)(C * C) * sizeof *cf);
    if (!cm || !cnt || !cf) { free(cm); free(cnt); free(cf); fprintf(stderr, "vlm zeroshot: out of memory\n"); goto done; }
    for (int64_t i = 0; i < G; i++) {
      int64_t p;
      vlm_topk(logits + (size_t)(i * C), C, 1, &p, NULL);
      cm[labels[i] * C + p]++;
      cnt[labels[i]]++;
    }
    int ncf = 0;
    for (int t = 0; t < C; t++)
      for (int p = 0; p < C; p++)
        if (t != p && cm[t * C + p]) cf[ncf++] = (confusion){t, p, cm[t * C + p]};
    qsort(cf, (size_t)ncf, sizeof *cf, cmp_conf);
    if (ncf > 10) ncf = 10;
    if (json) {
      printf("{\"model\": ");
      vlm_tools_json_str(stdout, model);
      printf(", \"identity\": \"%s\", \"data\": ", enc.identity);
      vlm_tools_json_str(stdout, eval);
      printf(", \"templates\": %d, \"classes\": [", n_tpl);
      for (int c = 0; c < C; c++) { if (c) printf(", "); vlm_tools_json_str(stdout, classes[c]); }
      printf("],\n \"images\": %lld, \"skipped\": %lld, \"top1\": ", (long long)G, (long long)bad);
      json_num(top1, 6);
      printf(", \"top5\": ");
      json_num(top5, 6);
      printf(",\n \"per_class\": [");
      for (int c = 0; c < C; c++) {
        printf("%s{\"class\": ", c ? ", " : "");
        vlm_tools_json_str(stdout, classes[c]);
        printf(", \"images\": %lld, \"top1\": ", (long long)cnt[c]);
        json_num(cnt[c] ? (double)cm[c * C + c] / cnt[c] : NAN, 6);   /* no images: no accuracy, null */
        putchar('}');
      }
      printf("],\n \"confusions\": [");
      for (int j = 0; j < ncf; j++) {
        printf("%s{\"true\": ", j ? ", " : "");
        vlm_tools_json_str(stdout, classes[cf[j].t]);
        printf(", \"predicted\": ");
        vlm_tools_json_str(stdout, classes[cf[j].p]);
        printf(", \"count\": %lld}", (long long)cf[j].count);
      }
      printf("]}\n");
    } else {
      printf("zero-shot on %s: %lld images, %lld classes, %d templates\n", eval, (long long)G, (long long)C, n_tpl);
      if (bad && !nonfinite) printf("skipped: %lld unreadable images\n", (long long)bad);
      else if (bad) printf("skipped: %lld images (%lld unreadable, %lld with embeddings that are not finite)\n",
                           (long long)bad, (long long)(bad - nonfinite), (long long)nonfinite);
      printf("top-1 accuracy: %.2f%%\ntop-5 accuracy: %.2f%%\n\nper class:\n", 100 * top1, 100 * top5);
      for (int c = 0; c < C; c++)
        if (cnt[c]) printf("  %7.2f%%  %5lld  %s\n", 100.0 * cm[c * C + c] / cnt[c], (long long)cnt[c], classes[c]);
        else printf("  %8s  %5lld  %s\n", "n/a", (long long)cnt[c], classes[c]);
      if (ncf) {
        printf("\nmost frequent confusions (true -> predicted):\n");
        for (int j = 0; j < ncf; j++)
          printf("  %5lld  %s -> %s\n", (long long)cf[j].count, classes[cf[j].t], classes[cf[j].p]);
      }
    }
    free(cm);
    free(cnt);
    free(cf);
  }
  rc = 0;
done:
  if (enc_open) vlm_encoder_close(&enc);
  vlm_zeroshot_strings_free(classes, n_classes);
  vlm_zeroshot_strings_free(tpl_owned, n_tpl);
  vlm_pathlist_free(&inputs);
  vlm_pathlist_free(&files);
  vlm_pathlist_free(&folders);
  free(W); free(emb); free(logits); free(ok); free(labels);
  return rc;
}
