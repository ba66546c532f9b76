/* vlm index: embed a collection of images (or captions) into a retrieval index,
 * incrementally. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/apps.h"
#include "apps/tools.h"

/* Texts to embed in order of length (bytes, then position): a batch runs at its longest text
 * (the padding beyond a text's end does not change its features, only costs time). */
typedef struct { size_t len; int64_t k; char *text; int64_t where; } text_ref;

static int text_by_length(const void *a, const void *b) {
  const text_ref *x = a, *y = b;
  if (x->len != y->len) return x->len < y->len ? -1 : 1;
  return x->k < y->k ? -1 : x->k > y->k;
}

static int sort_texts(char **work, int64_t *where, int64_t n) {
  text_ref *r = malloc(((size_t)n + 1) * sizeof *r);
  if (!r) return 0;
  for (int64_t k = 0; k < n; k++) r[k] = (text_ref){strlen(work[k]), k, work[k], where[k]};
  qsort(r, (size_t)n, sizeof *r, text_by_length);
  for (int64_t k = 0; k < n; k++) {
    work[k] = r[k].text;
    where[k] = r[k].where;
  }
  free(r);
  return 1;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm index --model PATH --out INDEX DIR|FILE... [options]\n"
          "       vlm index --model PATH --out INDEX --texts FILE [options]\n"
          "\n"
          "Embeds images (JPEG, PNG, WebP; folders are searched recursively for the files\n"
          "named .jpg, .jpeg, .png or .webp and those that start like an image; links to\n"
          "folders inside them are not followed, name the target to include it) with the\n"
          "model's image tower, or captions (--texts, one per line) with its text tower,\n"
          "into INDEX for 'vlm search'. INDEX is safetensors: embeddings F32 [N,E]\n"
          "(L2-normalized), items U8 + offsets I64 [N+1] (the paths or texts), file_size /\n"
          "mtime_ns I64 [N], and in __metadata__ the kind (images|texts) and the model's\n"
          "identity (a hash of its config and weights).\n"
          "\n"
          "Re-running on an existing INDEX built by the same model embeds only new or\n"
          "changed files (size or modification time differ) and drops files that are no\n"
          "longer among the inputs (with --add it keeps them: a folder added to an index\n"
          "of others); the index is rewritten atomically (temp + rename). A file already in\n"
          "INDEX under another name (DIR/a.jpg, now $PWD/DIR/a.jpg; a hard link) keeps one\n"
          "row, under the name given now. An INDEX that is an empty file is written over;\n"
          "any other file that is not an index is refused.\n"
          "Unreadable images (no permission, empty, corrupt, over --max-image-pixels) are\n"
          "skipped with a message naming the file and counted, in folders too. A folder that\n"
          "cannot be opened, or one more than 64 folders deep, is named in a warning and the\n"
          "rest is indexed.\n"
          "Paths are stored as given, cleaned ('./a//b.jpg' is 'a/b.jpg'); a file named\n"
          "twice (a folder and a file in it, two spellings) is indexed once; a text given\n"
          "twice (--texts) is stored twice, one row per line. An item whose embedding is\n"
          "not finite (NaN or infinite: a damaged model) is skipped and counted, the model\n"
          "named: it would match nothing in a search.\n"
          "\n"
          "Options:\n"
          "  --model PATH        model directory, config or weights file (see 'vlm info')\n"
          "  --out INDEX         the index file (created or updated)\n"
          "  --texts FILE        index the lines of FILE (empty lines skipped) instead of images\n"
          "  --tokenizer PATH    vocabulary for --texts (default: the model's tokenizer/)\n"
          "  --batch-size N      images or texts per forward pass (default 32)\n"
          "  --max-image-pixels N  skip images with more pixels (default %lld, PIL's\n"
          "                      limit), checked from the header before decoding\n"
          "  --precision P       f32 (default) or bf16: bf16 matmul inputs, f32 accumulation\n"
          "                      (weights converted once; features within ~1e-5 cosine of f32)\n"
          "  --device D          cpu (default) or cuda: embed on the GPU (each batch uploaded,\n"
          "                      its features copied back)\n"
          "  --export-npy FILE   also write the embeddings as a NumPy .npy (float32 [N,E],\n"
          "                      rows in index order) for FAISS or a vector database\n"
          "  --add               keep the INDEX's items that are not among the inputs (they\n"
          "                      are dropped otherwise); the INDEX must be the same model's\n"
          "  --quiet             no progress line\n"
          "  --                  the arguments after it are files or folders (names that start with '-')\n"
          "  --json              the summary as JSON: {\"index\", \"kind\", \"count\", \"embedded\",\n"
          "                      \"unchanged\", \"kept\", \"dropped\", \"skipped\", \"embed_dim\",\n"
          "                      \"model_identity\",\n"
          "                      \"per_second\"} (per_second: items embedded per second, 0 when none)\n"
          "\n"
          "Examples:\n"
          "  vlm index --model vit-b-32/ --out photos.idx ~/Pictures\n"
          "  vlm index --model vit-b-32/ --out photos.idx ~/Pictures      # later: only new files\n"
          "  vlm index --model vit-b-32/ --out photos.idx --add ~/Downloads/trip   # and one more folder\n"
          "  vlm index --model vit-b-32/ --out captions.idx --texts captions.txt --export-npy captions.npy\n",
          (long long)VLM_DEFAULT_MAX_PIXELS);
}

/* open-addressing map: string -> index */
typedef struct { char **keys; int64_t *vals; size_t cap; } strmap;
static uint64_t hstr(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}
static int map_init(strmap *m, int64_t n) {
  m->cap = 16;
  while (m->cap < (size_t)n * 2 + 1) m->cap *= 2;
  m->keys = calloc(m->cap, sizeof *m->keys);
  m->vals = calloc(m->cap, sizeof *m->vals);
  return m->keys && m->vals;
}
static void map_put(strmap *m, char *k, int64_t v) {   /* a key put again takes the new value */
  size_t i = hstr(k) & (m->cap - 1);
  while (m->keys[i] && strcmp(m->keys[i], k)) i = (i + 1) & (m->cap - 1);
  if (!m->keys[i]) m->keys[i] = k;
  m->vals[i] = v;
}
static int64_t map_get(const strmap *m, const char *k) {
  size_t i = hstr(k) & (m->cap - 1);
  while (m->keys[i]) {
    if (!strcmp(m->keys[i], k)) return m->vals[i];
    i = (i + 1) & (m->cap - 1);
  }
  return -1;
}

/* A file's identity, to know it under two names (DIR/a.jpg and $PWD/DIR/a.jpg, a hard link). */
typedef struct { uint64_t dev, ino; int64_t i; } file_id;
static int by_file_id(const void *a, const void *b) {
  const file_id *x = a, *y = b;
  if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
  return (x->ino > y->ino) - (x->ino < y->ino);
}

static int finite_row(const float *x, int64_t E) {
  for (int64_t d = 0; d < E; d++)
    if (!isfinite(x[d])) return 0;
  return 1;
}

/* A folder where a text file goes: said as such (reading one fails with a bare "read error"). */
static int is_folder(const char *flag, const char *path, const char *what) {
  struct stat sb;
  if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return 0;
  fprintf(stderr, "vlm index: %s %s: is a directory, not a text file (%s)\n", flag, path, what);
  return 1;
}

int vlm_cmd_index(int argc, char **argv) {
  const char *model = NULL, *out = NULL, *texts_f = NULL, *tokenizer = NULL, *npy = NULL, *precision = "f32", *device = "cpu";
  long long batch = 32, max_pixels = 0;   /* 0: --max-image-pixels not given */
  int quiet = 0, json = 0, add = 0;
  vlm_pathlist inputs = {0};
  int paths_only = 0;   /* after "--": file names that start with '-' */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!paths_only && !strcmp(a, "--")) { paths_only = 1; continue; }
    if (!paths_only && vlm_app_is_help(a)) { usage(stdout); vlm_pathlist_free(&inputs); return 0; }
    if (!paths_only && !strcmp(a, "--quiet")) { quiet = 1; continue; }
    if (!paths_only && !strcmp(a, "--add")) { add = 1; continue; }
    if (!paths_only && !strcmp(a, "--json")) { json = 1; continue; }
    if (!paths_only && a[0] == '-' && a[1]) {   /* "-x" too: an option, not a file ('--' first for such a name) */
      const char **slot = !strcmp(a, "--model")      ? &model
                        : !strcmp(a, "--out")        ? &out
                        : !strcmp(a, "--texts")      ? &texts_f
                        : !strcmp(a, "--tokenizer")  ? &tokenizer
                        : !strcmp(a, "--export-npy") ? &npy
                        : !strcmp(a, "--precision")  ? &precision
                        : !strcmp(a, "--device")     ? &device : NULL;
      const int is_batch = !strcmp(a, "--batch-size"), is_pixels = !strcmp(a, "--max-image-pixels");
      const char *v = NULL;
      int bad = !slot && !is_batch && !is_pixels ? vlm_app_bad_arg("vlm index", a)
                                                 : !(v = vlm_app_value("vlm index", argc, argv, &i));
      if (!bad && slot) *slot = v;
      if (!bad && is_batch) bad = !vlm_app_parse_int("vlm index", a, v, 1, 4096, &batch);
      if (!bad && is_pixels) bad = !vlm_app_parse_int("vlm index", a, v, 1, 1LL << 40, &max_pixels);
      if (bad) {
        vlm_pathlist_free(&inputs);
        return 2;
      }
      continue;
    }
    if (vlm_pathlist_add(&inputs, a) != VLM_OK) { fprintf(stderr, "vlm index: out of memory\n"); return 1; }
  }
  if (!model || !out || (!texts_f && inputs.n == 0) || (texts_f && inputs.n)) {
    fprintf(stderr, "vlm index: %s (see 'vlm index --help')\n", !model || !out ? "--model and --out are required"
                                       : texts_f      ? "--texts indexes a captions file: drop the image paths"
                                                      : "no DIR or FILE to index");
    vlm_pathlist_free(&inputs);
    return 2;
  }
  if (tokenizer && !texts_f) {   /* images need none: not silently nothing */
    fprintf(stderr, "vlm index: --tokenizer applies to --texts (image embeddings use no tokenizer)\n");
    vlm_pathlist_free(&inputs);
    return 2;
  }
  if (max_pixels && texts_f) {
    fprintf(stderr, "vlm index: --max-image-pixels applies to images, not to --texts\n");
    vlm_pathlist_free(&inputs);
    return 2;
  }
  const vlm_decode_opts decode = {.max_pixels = max_pixels ? max_pixels : VLM_DEFAULT_MAX_PIXELS};
  if (npy && vlm_app_same_file(npy, out)) {
    fprintf(stderr, "vlm index: --export-npy %s is the index itself (--out %s): choose another file\n", npy, out);
    vlm_pathlist_free(&inputs);
    return 2;
  }
  const int eflags = vlm_app_encoder_flags("vlm index", precision, device);
  if (eflags < 0) {
    vlm_pathlist_free(&inputs);
    return 2;
  }
  /* the outputs can be written: found now, not after embedding everything */
  if (vlm_tools_check_writable(out) != VLM_OK || (npy && vlm_tools_check_writable(npy) != VLM_OK)) {
    fprintf(stderr, "vlm index: %s\n", vlm_last_error());
    vlm_pathlist_free(&inputs);
    return 1;
  }
  const char *kind = texts_f ? "texts" : "images";
  int rc = 1, n_texts = 0, enc_open = 0, have_old = 0;
  char **texts = NULL;
  vlm_pathlist files = {0};
  vlm_encoder enc;
  vlm_index old;
  memset(&old, 0, sizeof old);
  strmap map = {0};
  float *emb = NULL;
  int *ok = NULL;
  int64_t *fsize = NULL, *mtime = NULL, *reuse = NULL;
  char **items = NULL, **kept = NULL, **old_names = NULL;
  int64_t n_kept = 0, *keep_old = NULL;   /* --add: the old rows not among the inputs, kept in their order */
  file_id *fids = NULL;   /* images: each input's file, to find old rows that name it otherwise */
  int64_t n_fids = 0;

  /* the inputs */
  if (texts_f) {
    if (is_folder("--texts", texts_f, "one text per line")) goto done;
    if (vlm_tools_read_lines(texts_f, &texts, &n_texts, 0) != VLM_OK) { fprintf(stderr, "vlm index: %s\n", vlm_last_error()); goto done; }
    if (n_texts == 0) { fprintf(stderr, "vlm index: %s: no texts (one per line)\n", texts_f); goto done; }
  } else {
    for (int64_t i = 0; i < inputs.n; i++)
      if (vlm_tools_collect(&files, inputs.paths[i], "index") != VLM_OK) { fprintf(stderr, "vlm index: %s\n", vlm_last_error()); goto done; }
    if (files.n == 0) { fprintf(stderr, "vlm index: no JPEG, PNG or WebP images found\n"); goto done; }
    for (int64_t i = 0; i < files.n; i++) vlm_app_clean_path(files.paths[i]);
    int64_t twice = vlm_pathlist_drop_duplicates(&files);
    if (twice < 0) { fprintf(stderr, "vlm index: out of memory\n"); goto done; }
    if (twice)
      fprintf(stderr, "vlm index: %lld image%s named more than once, indexed once\n", (long long)twice,
              twice == 1 ? "" : "s");
  }
  int64_t N = texts_f ? n_texts : files.n;
  items = texts_f ? texts : files.paths;

  if (vlm_encoder_open(&enc, model, tokenizer, batch,
                       (texts_f ? VLM_ENC_TEXT : 0) | eflags) != VLM_OK) {
    fprintf(stderr, "vlm index: %s\n", vlm_last_error());
    goto done;
  }
  enc_open = 1;
  int64_t E = vlm_encoder_dim(&enc);

  /* an existing index: reuse what is unchanged */
  struct stat sb;
  /* (an empty file holds nothing to protect: written over, as if absent) */
  if (stat(out, &sb) == 0 && !(S_ISREG(sb.st_mode) && sb.st_size == 0)) {
    if (vlm_index_open(&old, out) != VLM_OK) {
      fprintf(stderr, "vlm index: %s\nvlm index: %s exists and is not a vlm index: remove it or choose another --out\n",
              vlm_last_error(), out);
      goto done;
    }
    if (add && (strcmp(old.identity, enc.identity) || old.E != E || strcmp(old.kind, kind))) {
      fprintf(stderr, "vlm index: --add: %s holds %s of another model or kind (%s, %s): its items cannot be kept "
              "beside these; index them again with the others, or choose another --out\n", out, old.kind, old.model,
              old.identity);
      goto done;
    }
    if (strcmp(old.identity, enc.identity) || old.E != E)
      fprintf(stderr, "vlm index: %s was built by another model (%s, %s): embedding everything again\n", out,
              old.model, old.identity);
    else if (strcmp(old.kind, kind))
      fprintf(stderr, "vlm index: %s holds %s, now indexing %s: embedding everything again\n", out, old.kind, kind);
    else
      have_old = 1;
  }
  emb = calloc((size_t)(N * E) + 1, sizeof(float));
  ok = calloc((size_t)N + 1, sizeof(int));
  fsize = calloc((size_t)N + 1, sizeof(int64_t));
  mtime = calloc((size_t)N + 1, sizeof(int64_t));
  reuse = malloc(((size_t)N + 1) * sizeof(int64_t));
  if (have_old && !texts_f) fids = malloc(((size_t)N + 1) * sizeof *fids);
  if (!emb || !ok || !fsize || !mtime || !reuse || (have_old && !texts_f && !fids)) {
    fprintf(stderr, "vlm index: out of memory\n");
    goto done;
  }
  for (int64_t i = 0; i < N; i++) {
    reuse[i] = -1;
    if (!texts_f && stat(items[i], &sb) == 0) {
      fsize[i] = (int64_t)sb.st_size;
      mtime[i] = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
      if (fids) fids[n_fids++] = (file_id){(uint64_t)sb.st_dev, (uint64_t)sb.st_ino, i};
    }
  }
  int64_t n_reused = 0, n_dropped = 0;
  if (have_old) {
    /* Each input's old row: the first unused one of its name (a text given k times takes the k
     * rows of that text: repeated lines are reused, not dropped); then, for images, an old row
     * naming an input's file under another name (DIR/a.jpg, now $PWD/DIR/a.jpg) is that
     * input's row, not a second one, and an old row naming a file another row already stands
     * for (an index that holds it twice) is dropped. */
    char **keys = calloc((size_t)old.n + 1, sizeof *keys);
    int64_t *next = malloc(((size_t)old.n + 1) * sizeof *next);   /* the next old row of the same name */
    int64_t *match = malloc(((size_t)N + 1) * sizeof *match);     /* input i's old row, or -1 */
    char *used = calloc((size_t)old.n + 1, 1);
    int oom = !keys || !next || !match || !used || !map_init(&map, old.n);
    for (int64_t j = old.n - 1; j >= 0 && !oom; j--) {   /* from the end: each name's first row in the map */
      if (!(keys[j] = vlm_index_item(&old, j))) { oom = 1; break; }
      next[j] = map_get(&map, keys[j]);
      map_put(&map, keys[j], j);
    }
    for (int64_t i = 0; i < N && !oom; i++) {
      const int64_t first = map_get(&map, items[i]);
      int64_t j = first;
      while (j >= 0 && used[j]) j = next[j];
      if (j >= 0) used[j] = 1;   /* still among the inputs (maybe changed) */
      /* a text given more often than the index holds it: its embedding is the same, reused */
      match[i] = j >= 0 ? j : texts_f ? first : -1;
    }
    int64_t n_renamed = 0, n_merged = 0;
    if (!oom && n_fids) {
      qsort(fids, (size_t)n_fids, sizeof *fids, by_file_id);
      struct stat os;
      for (int64_t j = 0; j < old.n; j++) {
        if (used[j] || stat(keys[j], &os) != 0) continue;
        const file_id key = {(uint64_t)os.st_dev, (uint64_t)os.st_ino, 0};
        const file_id *f = bsearch(&key, fids, (size_t)n_fids, sizeof *fids, by_file_id);
        if (!f) continue;
        used[j] = 1;
        if (match[f->i] >= 0) { n_merged++; continue; }
        match[f->i] = j;
        if (n_renamed++ == 0) {
          fprintf(stderr, "vlm index: ");
          vlm_tools_text_str(stderr, items[f->i]);
          fprintf(stderr, " is in %s as ", out);
          vlm_tools_text_str(stderr, keys[j]);
          fprintf(stderr, " (the same file): one row, under the name given now\n");
        }
      }
    }
    if (n_renamed > 1)
      fprintf(stderr, "vlm index: %lld images in all were in %s under another name: one row each, under the name "
              "given now\n", (long long)n_renamed, out);
    if (n_merged)
      fprintf(stderr, "vlm index: %lld row%s of %s named a file that another row names too: dropped, one row per file\n",
              (long long)n_merged, n_merged == 1 ? "" : "s", out);
    for (int64_t i = 0; i < N && !oom; i++) {
      const int64_t j = match[i];   /* unchanged (and finite: an older vlm stored NaN): reused */
      if (j >= 0 && old.size[j] == fsize[i] && old.mtime[j] == mtime[i] && finite_row(old.emb + (size_t)(j * E), E)) {
        reuse[i] = j;
        memcpy(emb + (size_t)(i * E), old.emb + (size_t)(j * E), (size_t)E * sizeof(float));
        ok[i] = 1;
        n_reused++;
      }
    }
    if (add && !oom && !(keep_old = malloc(((size_t)old.n + 1) * sizeof *keep_old))) oom = 1;
    for (int64_t j = 0; j < old.n && !oom; j++) {
      if (used[j]) continue;
      if (add) keep_old[n_kept++] = j;
      else n_dropped++;
    }
    n_dropped += n_merged;
    for (int64_t j = 0; keys && j < old.n; j++) free(keys[j]);
    free(keys);
    free(next);
    free(match);
    free(used);
    if (oom) { fprintf(stderr, "vlm index: out of memory\n"); goto done; }
  }
  /* embed the rest */
  int64_t todo = 0;
  for (int64_t i = 0; i < N; i++) todo += reuse[i] < 0;
  char **work = malloc(((size_t)todo + 1) * sizeof *work);
  int64_t *where = malloc(((size_t)todo + 1) * sizeof *where);
  float *wemb = malloc(((size_t)(todo * E) + 1) * sizeof(float));
  int *wok = calloc((size_t)todo + 1, sizeof(int));
  if (!work || !where || !wemb || !wok) {
    free(work); free(where); free(wemb); free(wok);
    fprintf(stderr, "vlm index: out of memory\n");
    goto done;
  }
  int64_t t = 0, bad = 0;
  double t_embed = vlm_now();
  for (int64_t i = 0; i < N; i++)
    if (reuse[i] < 0) { work[t] = items[i]; where[t++] = i; }
  if (todo && texts_f && !sort_texts(work, where, todo)) {
    free(work); free(where); free(wemb); free(wok);
    fprintf(stderr, "vlm index: out of memory\n");
    goto done;
  }
  if (todo && texts_f) {   /* in chunks of a few batches, for the progress line */
    vlm_tools_progress pg;
    vlm_tools_progress_start(&pg, "index", "texts", todo, !quiet);
    for (int64_t k = 0; k < todo; k += 8 * batch) {
      int64_t m = todo - k < 8 * batch ? todo - k : 8 * batch;
      if (vlm_encoder_texts(&enc, (const char *const *)work + k, m, wemb + (size_t)(k * E)) != VLM_OK) {
        fprintf(stderr, "vlm index: %s\n", vlm_last_error());
        free(work); free(where); free(wemb); free(wok);
        goto done;
      }
      vlm_tools_progress_add(&pg, m, 0);
    }
    for (int64_t k = 0; k < todo; k++) wok[k] = 1;
  } else if (todo) {
    bad = vlm_tools_embed_files(&enc, work, todo, wemb, wok, &decode, "index", !quiet);
    if (bad < 0) { free(work); free(where); free(wemb); free(wok); goto done; }
  }
  t_embed = vlm_now() - t_embed;
  /* an embedding that is not finite (NaN or infinite: damaged weights, an overflow) matches
   * nothing in a search: skipped and counted as an unreadable image is, not stored */
  int64_t nonfinite = 0;
  for (int64_t k = 0; k < todo; k++) {
    if (!wok[k] || finite_row(wemb + (size_t)(k * E), E)) continue;
    wok[k] = 0;
    bad++;
    if (nonfinite++ < 10) {
      fprintf(stderr, "vlm index: %s", texts_f ? "text '" : "");
      vlm_tools_text_str(stderr, work[k]);
      fprintf(stderr, "%s: its embedding is not finite (NaN or infinite); skipped\n", texts_f ? "'" : "");
    }
  }
  if (nonfinite)
    fprintf(stderr, "vlm index: warning: %lld %s with embeddings that are not finite%s: the model %s gives NaN or "
            "infinite features (damaged weights?)\n", (long long)nonfinite, kind,
            nonfinite > 10 ? " (the first named above)" : "", model);
  for (int64_t k = 0; k < todo; k++) {
    ok[where[k]] = wok[k];
    if (wok[k]) memcpy(emb + (size_t)(where[k] * E), wemb + (size_t)(k * E), (size_t)E * sizeof(float));
  }
  free(work); free(where); free(wemb); free(wok);
  /* keep the good rows, in input order (kept[] borrows the strings); with --add the old
   * index's other rows first, in their order (their strings copied: the old index closes) */
  kept = malloc(((size_t)(N + n_kept) + 1) * sizeof *kept);
  if (!kept) { fprintf(stderr, "vlm index: out of memory\n"); goto done; }
  if (n_kept) {
    float *e2 = realloc(emb, ((size_t)((N + n_kept) * E) + 1) * sizeof(float));
    int64_t *s2 = e2 ? realloc(fsize, ((size_t)(N + n_kept) + 1) * sizeof(int64_t)) : NULL;
    if (e2) emb = e2;
    if (s2) fsize = s2;
    int64_t *m2 = s2 ? realloc(mtime, ((size_t)(N + n_kept) + 1) * sizeof(int64_t)) : NULL;
    if (m2) mtime = m2;
    old_names = calloc((size_t)n_kept + 1, sizeof *old_names);
    if (!e2 || !s2 || !m2 || !old_names) { fprintf(stderr, "vlm index: out of memory\n"); goto done; }
    /* the new rows move up behind the kept ones */
    memmove(emb + (size_t)(n_kept * E), emb, (size_t)(N * E) * sizeof(float));
    memmove(fsize + n_kept, fsize, (size_t)N * sizeof(int64_t));
    memmove(mtime + n_kept, mtime, (size_t)N * sizeof(int64_t));
    for (int64_t k = 0; k < n_kept; k++) {
      const int64_t j = keep_old[k];
      memcpy(emb + (size_t)(k * E), old.emb + (size_t)(j * E), (size_t)E * sizeof(float));
      fsize[k] = old.size ? old.size[j] : 0;
      mtime[k] = old.mtime ? old.mtime[j] : 0;
      if (!(old_names[k] = vlm_index_item(&old, j))) { fprintf(stderr, "vlm index: out of memory\n"); goto done; }
      kept[k] = old_names[k];
    }
  }
  int64_t G = n_kept;
  for (int64_t i = 0; i < N; i++) {
    if (!ok[i]) continue;
    const int64_t src = n_kept + i;   /* where row i sits now */
    if (G != src) {
      memmove(emb + (size_t)(G * E), emb + (size_t)(src * E), (size_t)E * sizeof(float));
      fsize[G] = fsize[src];
      mtime[G] = mtime[src];
    }
    kept[G++] = items[i];
  }
  if (G == 0) {
    fprintf(stderr, "vlm index: none of the %lld %s could be embedded; %s not written\n", (long long)N, kind, out);
    goto done;
  }
  /* close the old index before replacing it (it is mapped) */
  if (old.n || old.identity) vlm_index_close(&old);
  if (vlm_index_write(out, kind, enc.identity, model, emb, G, E, kept, texts_f ? NULL : fsize,
                      texts_f ? NULL : mtime) != VLM_OK) {
    fprintf(stderr, "vlm index: %s\n", vlm_last_error());
    goto done;
  }
  if (npy && vlm_write_npy(npy, emb, G, E) != VLM_OK) {
    fprintf(stderr, "vlm index: %s\n", vlm_last_error());
    goto done;
  }
  const int64_t embedded = todo - bad;   /* the rate counts what was embedded, not the skipped */
  double rate = embedded > 0 ? (double)embedded / (t_embed > 0 ? t_embed : 1e-9) : 0;
  if (json) {
    printf("{\"index\": ");
    vlm_tools_json_str(stdout, out);
    printf(", \"kind\": \"%s\", \"count\": %lld, \"embedded\": %lld, \"unchanged\": %lld, \"kept\": %lld, "
           "\"dropped\": %lld, \"skipped\": %lld, \"embed_dim\": %lld, \"model_identity\": \"%s\", "
           "\"per_second\": %.3f}\n",
           kind, (long long)G, (long long)(todo - bad), (long long)n_reused, (long long)n_kept, (long long)n_dropped,
           (long long)bad, (long long)E, enc.identity, rate);
  } else {
    char kept_s[64] = "";
    if (add) snprintf(kept_s, sizeof kept_s, "%lld kept, ", (long long)n_kept);
    printf("%s: %lld %s (%lld embedded, %lld unchanged, %s%lld dropped, %lld skipped), %lld-d, model %s", out,
           (long long)G, kind, (long long)(todo - bad), (long long)n_reused, kept_s, (long long)n_dropped,
           (long long)bad, (long long)E, enc.identity);
    if (embedded > 0) printf(", %.2f %s/s", rate, kind);
    printf("\n");
    if (npy) printf("%s: float32 [%lld, %lld]\n", npy, (long long)G, (long long)E);
  }
  rc = 0;
done:
  if (old.identity) vlm_index_close(&old);
  if (enc_open) vlm_encoder_close(&enc);
  free(map.keys);
  free(map.vals);
  free(kept);
  for (int64_t k = 0; old_names && k < n_kept; k++) free(old_names[k]);
  free(old_names);
  free(keep_old);
  vlm_zeroshot_strings_free(texts, n_texts);
  free(emb); free(ok); free(fsize); free(mtime); free(reuse); free(fids);
  vlm_pathlist_free(&inputs);
  vlm_pathlist_free(&files);
  return rc;
}
