/* vlm search: nearest items of an index for a text or an image query. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps/apps.h"
#include "apps/tools.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm search --index INDEX --model PATH (--text \"...\" | --queries FILE | --image FILE)\n"
          "                  [--top-k K] [--json]\n"
          "\n"
          "Embeds the query with the model and prints the K items of INDEX (made by 'vlm\n"
          "index') with the highest cosine similarity, best first: text -> image and\n"
          "image -> image on an image index, image -> text and text -> text on a --texts\n"
          "index. The model must be the one that built the index (its identity, a hash of\n"
          "the config and weights, is stored in the index): another model is refused.\n"
          "The scan is exact (every stored vector), multi-threaded, a bounded heap per thread.\n"
          "\n"
          "Options:\n"
          "  --index INDEX       the index file\n"
          "  --model PATH        the model that built it\n"
          "  --text STR          a text query\n"
          "  --queries FILE      text queries, one per line (blank lines skipped), answered in\n"
          "                      one run: the model and the index are loaded once\n"
          "  --image FILE        an image query (JPEG, PNG, WebP)\n"
          "  --max-image-pixels N  refuse an --image with more pixels (default %lld, PIL's\n"
          "                      limit), checked from the header before decoding\n"
          "  --tokenizer PATH    vocabulary for --text (default: the model's tokenizer/)\n"
          "  --top-k K           results (default 10)\n"
          "  --precision P       f32 (default) or bf16: bf16 matmul inputs, f32 accumulation\n"
          "                      (weights converted once; features within ~1e-5 cosine of f32)\n"
          "  --device D          cpu (default) or cuda: embed on the GPU (each batch uploaded,\n"
          "                      its features copied back)\n"
          "  --json              {\"index\", \"kind\", \"model_identity\", \"query\": {\"text\"|\"image\"},\n"
          "                       \"results\": [{\"rank\", \"score\", \"item\", \"id\"}]}  (id: row in the index);\n"
          "                      with --queries {\"index\", \"kind\", \"model_identity\", \"queries\":\n"
          "                       [{\"query\": {\"text\"}, \"results\": [...]}, ...]} in the file's order\n"
          "\n"
          "Examples:\n"
          "  vlm search --index photos.idx --model vit-b-32/ --text \"a dog on a beach\"\n"
          "  vlm search --index photos.idx --model vit-b-32/ --image query.jpg --top-k 5 --json\n"
          "  vlm search --index photos.idx --model vit-b-32/ --queries questions.txt --top-k 3 --json\n",
          (long long)VLM_DEFAULT_MAX_PIXELS);
}

/* The k results of one query (ids, scores), as text lines or a JSON "results" array. */
static int print_results(const vlm_index *ix, const char *index, const int64_t *idx, const float *scores, int k,
                         int json) {
  for (int j = 0; j < k; j++) {
    char *item = vlm_index_item(ix, idx[j]);
    if (!item) { fprintf(stderr, "vlm search: out of memory\n"); return 0; }
    if (!isfinite(scores[j]))   /* NaN or infinite embeddings: a damaged index or query */
      fprintf(stderr, "vlm search: %s: item %lld scores %g: its embedding (or the query's) is not finite\n", index,
              (long long)idx[j], (double)scores[j]);
    if (json) {
      printf("%s\n  {\"rank\": %d, \"score\": ", j ? "," : "", j + 1);
      if (isfinite(scores[j])) printf("%.6f", scores[j]);
      else printf("null");   /* JSON has no NaN */
      printf(", \"item\": ");
      vlm_tools_json_str(stdout, item);
      printf(", \"id\": %lld}", (long long)idx[j]);
    } else {
      printf("%2d  %.4f  ", j + 1, scores[j]);
      vlm_tools_text_str(stdout, item);
      putchar('\n');
    }
    free(item);
  }
  return 1;
}

int vlm_cmd_search(int argc, char **argv) {
  const char *index = NULL, *model = NULL, *text = NULL, *image = NULL, *tokenizer = NULL, *precision = "f32", *device = "cpu";
  const char *queries_f = NULL;
  long long top_k = 10, max_pixels = 0;   /* 0: --max-image-pixels not given */
  int json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (vlm_app_is_help(a)) { usage(stdout); return 0; }
    if (!strcmp(a, "--json")) { json = 1; continue; }
    const char **slot = !strcmp(a, "--index")     ? &index
                      : !strcmp(a, "--model")     ? &model
                      : !strcmp(a, "--text")      ? &text
                      : !strcmp(a, "--queries")   ? &queries_f
                      : !strcmp(a, "--image")     ? &image
                      : !strcmp(a, "--tokenizer") ? &tokenizer
                      : !strcmp(a, "--precision") ? &precision
                      : !strcmp(a, "--device")    ? &device : NULL;
    const int is_pixels = !strcmp(a, "--max-image-pixels");
    if (!slot && strcmp(a, "--top-k") && !is_pixels) return vlm_app_bad_arg("vlm search", a);
    const char *v = vlm_app_value("vlm search", argc, argv, &i);
    if (!v) return 2;
    if (slot) *slot = v;
    else if (is_pixels) { if (!vlm_app_parse_int("vlm search", a, v, 1, 1LL << 40, &max_pixels)) return 2; }
    else if (!vlm_app_parse_int("vlm search", a, v, 1, 1000000, &top_k)) return 2;
  }
  if (!index || !model || (!!text + !!image + !!queries_f) != 1) {
    fprintf(stderr, "vlm search: %s (see 'vlm search --help')\n", !index || !model ? "--index and --model are required"
                                                        : "give one of --text, --queries or --image");
    return 2;
  }
  if (text && !*text) {
    fprintf(stderr, "vlm search: --text is empty\n");
    return 2;
  }
  if (max_pixels && !image) {
    fprintf(stderr, "vlm search: --max-image-pixels applies to an --image query\n");
    return 2;
  }
  const int eflags = vlm_app_encoder_flags("vlm search", precision, device);
  if (eflags < 0) return 2;
  /* the text queries: --text's one, or --queries' lines */
  char **qs = NULL;
  int nq = 1;
  if (queries_f) {
    struct stat sb;   /* a folder opens, then fails to read with a bare "read error" */
    if (stat(queries_f, &sb) == 0 && S_ISDIR(sb.st_mode)) {
      fprintf(stderr, "vlm search: --queries %s: is a directory, not a text file (one query per line)\n", queries_f);
      return 1;
    }
    if (vlm_tools_read_lines(queries_f, &qs, &nq, 0) != VLM_OK) { fprintf(stderr, "vlm search: %s\n", vlm_last_error()); return 1; }
    if (nq == 0) {
      fprintf(stderr, "vlm search: %s: no queries (one per line)\n", queries_f);
      vlm_zeroshot_strings_free(qs, nq);
      return 1;
    }
  }
  const char *const *texts = qs ? (const char *const *)qs : &text;
  vlm_index ix;
  if (vlm_index_open(&ix, index) != VLM_OK) {
    fprintf(stderr, "vlm search: %s\n", vlm_last_error());
    vlm_zeroshot_strings_free(qs, nq);
    return 1;
  }
  int rc = 1;
  vlm_encoder enc;
  float *q = NULL, *pix = NULL, *scores = NULL;
  int64_t *idx = NULL;
  if (vlm_encoder_open(&enc, model, tokenizer, nq < 32 ? nq : 32, (image ? 0 : VLM_ENC_TEXT) | eflags) != VLM_OK) {
    fprintf(stderr, "vlm search: %s\n", vlm_last_error());
    vlm_index_close(&ix);
    vlm_zeroshot_strings_free(qs, nq);
    return 1;
  }
  if (!strcmp(ix.identity, enc.identity) && ix.E != vlm_encoder_dim(&enc)) {   /* same model: a damaged file */
    fprintf(stderr, "vlm search: %s: its embeddings are %lld-d but its model (%s) embeds in %lld-d: the index is "
            "damaged; rebuild it with 'vlm index --model %s'\n", index, (long long)ix.E, enc.identity,
            (long long)vlm_encoder_dim(&enc), model);
    goto done;
  }
  if (strcmp(ix.identity, enc.identity)) {
    fprintf(stderr,
            "vlm search: %s: the index was built by another model (%s, identity %s) than --model %s (identity %s); "
            "query it with that model or rebuild it with 'vlm index --model %s'\n",
            index, ix.model, ix.identity, model, enc.identity, model);
    goto done;
  }
  if (ix.n == 0) { fprintf(stderr, "vlm search: %s: the index is empty\n", index); goto done; }
  int64_t E = ix.E, S = vlm_encoder_image_size(&enc);
  q = malloc((size_t)nq * (size_t)E * sizeof(float));
  if (!q) { fprintf(stderr, "vlm search: out of memory\n"); goto done; }
  if (!image) {
    if (vlm_encoder_texts(&enc, texts, nq, q) != VLM_OK) { fprintf(stderr, "vlm search: %s\n", vlm_last_error()); goto done; }
  } else {
    pix = malloc((size_t)(3 * S * S) * sizeof(float));
    vlm_decode_opts d = {.max_pixels = max_pixels ? max_pixels : VLM_DEFAULT_MAX_PIXELS};
    if (!pix) { fprintf(stderr, "vlm search: out of memory\n"); goto done; }
    if (vlm_preprocess_file(image, &d, &enc.pre, NULL, pix) != VLM_OK) {
      fprintf(stderr, "vlm search: %s\n", vlm_last_error());
      goto done;
    }
    vlm_encoder_images(&enc, pix, 1, q);
  }
  int k = (int)(top_k < ix.n ? top_k : ix.n);
  idx = malloc((size_t)k * sizeof *idx);
  scores = malloc((size_t)k * sizeof *scores);
  if (!idx || !scores) { fprintf(stderr, "vlm search: out of memory\n"); goto done; }
  if (json) {
    printf("{\"index\": ");
    vlm_tools_json_str(stdout, index);
    printf(", \"kind\": \"%s\", \"model_identity\": \"%s\", ", ix.kind, ix.identity);
    if (qs) printf("\"queries\": [");
  }
  double t0 = vlm_now();
  for (int i = 0; i < nq; i++) {
    const int got = vlm_knn_search(ix.emb, ix.n, E, q + (size_t)i * E, k, idx, scores);
    if (json) {
      printf("%s%s\"query\": {\"%s\": ", qs && i ? ",\n  " : qs ? "\n  " : "", qs ? "{" : "", image ? "image" : "text");
      vlm_tools_json_str(stdout, image ? image : texts[i]);
      printf("},%s \"results\": [", qs ? "" : "\n");
    } else if (qs) {
      printf("%squery: ", i ? "\n" : "");
      vlm_tools_text_str(stdout, texts[i]);
      putchar('\n');
    }
    if (!print_results(&ix, index, idx, scores, got, json)) goto done;
    if (json) printf(qs ? "]}" : "\n ]");
  }
  if (json) printf(qs ? "\n]}\n" : "}\n");
  double ms = (vlm_now() - t0) * 1e3;
  vlm_log(VLM_LOG_DEBUG, "search: %d quer%s x %lld x %lld scanned in %.2f ms", nq, nq == 1 ? "y" : "ies",
          (long long)ix.n, (long long)E, ms);
  rc = 0;
done:
  free(q); free(pix); free(idx); free(scores);
  vlm_zeroshot_strings_free(qs, nq);
  vlm_encoder_close(&enc);
  vlm_index_close(&ix);
  return rc;
}
