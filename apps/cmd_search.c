/* vlm search: nearest items of an index for a text or an image query. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/apps.h"
#include "apps/tools.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm search --index INDEX --model PATH (--text \"...\" | --image FILE) [--top-k K] [--json]\n"
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
          "  --image FILE        an image query (JPEG, PNG, WebP)\n"
          "  --tokenizer PATH    vocabulary for --text (default: the model's tokenizer/)\n"
          "  --top-k K           results (default 10)\n"
          "  --precision P       f32 (default) or bf16: bf16 matmul inputs, f32 accumulation\n"
          "                      (weights converted once; features within ~1e-5 cosine of f32)\n"
          "  --device D          cpu (default) or cuda: embed on the GPU (each batch uploaded,\n"
          "                      its features copied back)\n"
          "  --json              {\"index\", \"kind\", \"model_identity\", \"query\": {\"text\"|\"image\"},\n"
          "                       \"results\": [{\"rank\", \"score\", \"item\", \"id\"}]}  (id: row in the index)\n"
          "\n"
          "Examples:\n"
          "  vlm search --index photos.idx --model vit-b-32/ --text \"a dog on a beach\"\n"
          "  vlm search --index photos.idx --model vit-b-32/ --image query.jpg --top-k 5 --json\n");
}

int vlm_cmd_search(int argc, char **argv) {
  const char *index = NULL, *model = NULL, *text = NULL, *image = NULL, *tokenizer = NULL, *precision = "f32", *device = "cpu";
  long long top_k = 10;
  int json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (vlm_app_is_help(a)) { usage(stdout); return 0; }
    if (!strcmp(a, "--json")) { json = 1; continue; }
    const char **slot = !strcmp(a, "--index")     ? &index
                      : !strcmp(a, "--model")     ? &model
                      : !strcmp(a, "--text")      ? &text
                      : !strcmp(a, "--image")     ? &image
                      : !strcmp(a, "--tokenizer") ? &tokenizer
                      : !strcmp(a, "--precision") ? &precision
                      : !strcmp(a, "--device")    ? &device : NULL;
    if (!slot && strcmp(a, "--top-k")) return vlm_app_bad_arg("vlm search", a);
    const char *v = vlm_app_value("vlm search", argc, argv, &i);
    if (!v) return 2;
    if (slot) *slot = v;
    else if (!vlm_app_parse_int("vlm search", a, v, 1, 1000000, &top_k)) return 2;
  }
  if (!index || !model || !text == !image) {
    fprintf(stderr, "vlm search: %s (see 'vlm search --help')\n", !index || !model ? "--index and --model are required"
                                                        : "give one query: --text or --image");
    return 2;
  }
  if (text && !*text) {
    fprintf(stderr, "vlm search: --text is empty\n");
    return 2;
  }
  const int eflags = vlm_app_encoder_flags("vlm search", precision, device);
  if (eflags < 0) return 2;
  vlm_index ix;
  if (vlm_index_open(&ix, index) != VLM_OK) { fprintf(stderr, "vlm search: %s\n", vlm_last_error()); return 1; }
  int rc = 1;
  vlm_encoder enc;
  float *q = NULL, *pix = NULL, *scores = NULL;
  int64_t *idx = NULL;
  if (vlm_encoder_open(&enc, model, tokenizer, 1,
                       (text ? VLM_ENC_TEXT : 0) | eflags) != VLM_OK) {
    fprintf(stderr, "vlm search: %s\n", vlm_last_error());
    vlm_index_close(&ix);
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
  q = malloc((size_t)E * sizeof(float));
  if (!q) { fprintf(stderr, "vlm search: out of memory\n"); goto done; }
  if (text) {
    if (vlm_encoder_texts(&enc, &text, 1, q) != VLM_OK) { fprintf(stderr, "vlm search: %s\n", vlm_last_error()); goto done; }
  } else {
    pix = malloc((size_t)(3 * S * S) * sizeof(float));
    vlm_decode_opts d = {0};
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
  double t0 = vlm_now();
  k = vlm_knn_search(ix.emb, ix.n, E, q, k, idx, scores);
  double ms = (vlm_now() - t0) * 1e3;
  if (json) {
    printf("{\"index\": ");
    vlm_tools_json_str(stdout, index);
    printf(", \"kind\": \"%s\", \"model_identity\": \"%s\", \"query\": {\"%s\": ", ix.kind, ix.identity,
           text ? "text" : "image");
    vlm_tools_json_str(stdout, text ? text : image);
    printf("},\n \"results\": [");
  }
  for (int j = 0; j < k; j++) {
    char *item = vlm_index_item(&ix, idx[j]);
    if (!item) { fprintf(stderr, "vlm search: out of memory\n"); goto done; }
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
  if (json) printf("\n ]}\n");
  vlm_log(VLM_LOG_DEBUG, "search: %lld x %lld scanned in %.2f ms", (long long)ix.n, (long long)E, ms);
  rc = 0;
done:
  free(q); free(pix); free(idx); free(scores);
  vlm_encoder_close(&enc);
  vlm_index_close(&ix);
  return rc;
}
