/* example_embed: the C API (include/vlm.h) in one program.
 *
 *   example_embed MODEL [--tokenizer PATH] [--classes A,B,C] [--print] [--text STR]... IMAGE...
 *
 * Loads MODEL, embeds the images and texts, prints each embedding's norm and first
 * values (all of them with --print, one line each: "image PATH v0 v1 ..."), the
 * image x text cosine similarities, and with --classes the zero-shot top 3 of each
 * image (open_clip's 80 templates). Build it against an installed vlm with
 *   cc embed.c $(pkg-config --cflags --libs vlm) -lm -o embed
 * (-lm: this program calls sqrt; run it with the library on the loader path, e.g.
 * LD_LIBRARY_PATH=PREFIX/lib, when PREFIX is not a system one). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vlm.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL [--tokenizer PATH] [--classes A,B,C] [--print] [--text STR]... IMAGE...\n", argv[0]);
    return 2;
  }
  vlm_model_options opt = {0};
  const char *classes = NULL;
  const char **images = calloc((size_t)argc, sizeof *images), **texts = calloc((size_t)argc, sizeof *texts);
  int n_img = 0, n_txt = 0, print_all = 0;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) opt.tokenizer = argv[++i];
    else if (!strcmp(argv[i], "--classes") && i + 1 < argc) classes = argv[++i];
    else if (!strcmp(argv[i], "--text") && i + 1 < argc) texts[n_txt++] = argv[++i];
    else if (!strcmp(argv[i], "--print")) print_all = 1;
    else images[n_img++] = argv[i];
  }
  const char *err = NULL;
  vlm_model *m = vlm_model_load_ex(argv[1], &opt, &err);
  if (!m) {
    fprintf(stderr, "example_embed: %s\n", err);
    return 1;
  }
  int E = vlm_model_embed_dim(m);
  printf("model %s: %d-d embeddings, %dx%d images, %d text tokens, identity %s, tokenizer %s\n", argv[1], E,
         vlm_model_image_size(m), vlm_model_image_size(m), vlm_model_context_length(m), vlm_model_identity(m),
         vlm_model_has_tokenizer(m) ? "yes" : "no");
  float *ie = malloc(((size_t)n_img + 1) * E * sizeof(float)), *te = malloc(((size_t)n_txt + 1) * E * sizeof(float));
  int rc = 0;
  if (n_img && vlm_embed_image_files(m, images, n_img, ie)) {
    fprintf(stderr, "example_embed: %s\n", vlm_get_last_error());
    rc = 1;
    n_img = 0;
  }
  if (n_txt && vlm_embed_texts(m, texts, n_txt, te)) {
    fprintf(stderr, "example_embed: %s\n", vlm_get_last_error());
    rc = 1;
    n_txt = 0;
  }
  for (int k = 0; k < 2; k++) {
    int n = k ? n_txt : n_img;
    for (int i = 0; i < n; i++) {
      const float *v = (k ? te : ie) + (size_t)i * E;
      double s = 0;
      for (int d = 0; d < E; d++) s += (double)v[d] * v[d];
      printf("%s %s", k ? "text" : "image", k ? texts[i] : images[i]);
      if (print_all) {
        for (int d = 0; d < E; d++) printf(" %.7g", v[d]);
        printf("\n");
      } else {
        printf(": norm %.6f, [%.4f %.4f %.4f ...]\n", sqrt(s), v[0], v[E > 1], v[E > 2 ? 2 : 0]);
      }
    }
  }
  for (int i = 0; i < n_img && n_txt; i++) {
    printf("similarity %s:", images[i]);
    for (int j = 0; j < n_txt; j++) {
      double s = 0;
      for (int d = 0; d < E; d++) s += (double)ie[(size_t)i * E + d] * te[(size_t)j * E + d];
      printf(" %.4f", s);
    }
    printf("\n");
  }
  if (classes && n_img) {
    /* split "a,b,c" */
    char *buf = malloc(strlen(classes) + 1);
    strcpy(buf, classes);
    const char **names = calloc(strlen(classes) + 1, sizeof *names);
    int nc = 0;
    for (char *p = strtok(buf, ","); p; p = strtok(NULL, ",")) names[nc++] = p;
    vlm_classifier *c = vlm_classifier_new(m, names, nc, "openai", NULL, 0);
    if (!c) {
      fprintf(stderr, "example_embed: %s\n", vlm_get_last_error());
      rc = 1;
    } else {
      for (int i = 0; i < n_img; i++) {
        vlm_class_score top[3];
        int k = vlm_classify(c, ie + (size_t)i * E, 3, top);
        printf("zeroshot %s:", images[i]);
        for (int j = 0; j < k; j++) printf(" %s %.4f", names[top[j].index], top[j].prob);
        printf("\n");
      }
      vlm_classifier_free(c);
    }
    free(names);
    free(buf);
  }
  char cap[256];
  if (n_img) {   /* CoCa models caption; CLIP models say they cannot */
    if (vlm_caption(m, images[0], cap, sizeof cap) < 0) printf("caption: %s\n", vlm_get_last_error());
    else printf("caption %s\t%s\n", images[0], cap);
  }
  free(ie);
  free(te);
  free(images);
  free(texts);
  vlm_model_free(m);
  return rc;
}
