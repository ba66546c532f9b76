/* vlm bpe-train: learn a CLIP-style BPE vocabulary from captions. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "apps/apps.h"
#include "core/core.h"
#include "text/text.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: vlm bpe-train --vocab-size N --out DIR [FILE...]\n"
          "\n"
          "Learns byte-level BPE merges from captions (one per line, from the FILEs or stdin)\n"
          "with CLIP's cleaning, pre-tokenizer and byte alphabet, and writes DIR/vocab.json and\n"
          "DIR/merges.txt (Hugging Face format, each written atomically), which 'vlm tokenize\n"
          "--vocab DIR' and the models read. Deterministic: the same captions give the same files.\n"
          "\n"
          "Options:\n"
          "  --vocab-size N   ids in the vocabulary, >= 514: 256 byte symbols, the same with\n"
          "                   </w>, one per merge, <|startoftext|> and <|endoftext|>\n"
          "                   (CLIP's is 49408); fewer when the corpus runs out of pairs\n"
          "  --out DIR        output folder (created if missing)\n"
          "Options may come before or after the FILEs ('-': stdin); '--' ends them.\n"
          "\n"
          "Example:\n"
          "  vlm bpe-train --vocab-size 8192 --out my-vocab captions.txt\n"
          "  vlm tokenize --vocab my-vocab captions.txt\n");
}

typedef struct {
  char **text;
  size_t *len;
  size_t n, cap;
} corpus;

static int read_lines(corpus *c, FILE *f, const char *name) {
  char *line = NULL;
  size_t lcap = 0;
  ssize_t r;
  while ((r = getline(&line, &lcap, f)) >= 0) {
    size_t len = (size_t)r;
    if (len && line[len - 1] == '\n') len--;
    if (len && line[len - 1] == '\r') len--;
    size_t k = 0;   /* a blank line is no caption (and would be counted as one) */
    while (k < len && (line[k] == ' ' || line[k] == '\t')) k++;
    if (k == len) continue;
    if (c->n == c->cap) {
      size_t nc = c->cap ? c->cap * 2 : 1024;
      char **nt = realloc(c->text, nc * sizeof *nt);
      if (!nt) break;
      c->text = nt;
      size_t *nl = realloc(c->len, nc * sizeof *nl);
      if (!nl) break;
      c->len = nl;
      c->cap = nc;
    }
    char *s = malloc(len + 1);
    if (!s) break;
    memcpy(s, line, len);
    s[len] = 0;
    c->text[c->n] = s;
    c->len[c->n] = len;
    c->n++;
  }
  int bad = ferror(f) || r >= 0;
  free(line);
  if (bad) fprintf(stderr, "vlm bpe-train: %s: read error or out of memory\n", name);
  return !bad;
}

int vlm_cmd_bpe_train(int argc, char **argv) {
  long long vocab_size = 0;
  const char *out = NULL;
  /* options anywhere; the other arguments are the files, in order ('--' ends the options) */
  char **files = calloc((size_t)argc, sizeof *files);
  int n_files = 0, opts_done = 0;
  if (!files) { fprintf(stderr, "vlm bpe-train: out of memory\n"); return 1; }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (opts_done || a[0] != '-' || !a[1]) { files[n_files++] = argv[i]; continue; }
    if (vlm_app_is_help(a)) { usage(stdout); free(files); return 0; }
    if (!strcmp(a, "--")) { opts_done = 1; continue; }
    if (strcmp(a, "--vocab-size") && strcmp(a, "--out")) { free(files); return vlm_app_bad_arg("vlm bpe-train", a); }
    const char *v = vlm_app_value("vlm bpe-train", argc, argv, &i);
    if (!v) { free(files); return 2; }
    if (!strcmp(a, "--out")) {
      out = v;
    } else if (!vlm_app_parse_int("vlm bpe-train", "--vocab-size", v, VLM_BPE_MIN_VOCAB, 1 << 24, &vocab_size)) {
      free(files);
      return 2;
    }
  }
  if (!vocab_size || !out) {
    fprintf(stderr, "vlm bpe-train: --vocab-size and --out are required (see 'vlm bpe-train --help')\n");
    free(files);
    return 2;
  }
  corpus c = {0};
  int ok = 1;
  if (n_files == 0) ok = read_lines(&c, stdin, "<stdin>");
  for (int k = 0; k < n_files && ok; k++) {
    FILE *f = strcmp(files[k], "-") ? fopen(files[k], "rb") : stdin;
    if (!f) { fprintf(stderr, "vlm bpe-train: %s: cannot open: %s\n", files[k], strerror(errno)); ok = 0; break; }
    ok = read_lines(&c, f, files[k]);
    if (f != stdin) fclose(f);
  }
  free(files);
  vlm_tokenizer *t = NULL;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (ok && vlm_bpe_train(&t, (const char *const *)c.text, c.len, c.n, (int)vocab_size)) {
    fprintf(stderr, "vlm bpe-train: %s\n", vlm_last_error());
    ok = 0;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (ok && mkdir(out, 0777) != 0 && errno != EEXIST) {
    fprintf(stderr, "vlm bpe-train: %s: cannot create: %s\n", out, strerror(errno));
    ok = 0;
  }
  if (ok && vlm_tokenizer_save_hf(t, out)) {
    fprintf(stderr, "vlm bpe-train: %s\n", vlm_last_error());
    ok = 0;
  }
  if (ok)
    fprintf(stderr, "vlm bpe-train: %zu captions -> %d ids (%d merges) in %.2f s, written to %s/vocab.json and merges.txt\n",
            c.n, vlm_tokenizer_vocab_size(t), vlm_tokenizer_n_merges(t),
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), out);
  vlm_tokenizer_free(t);
  for (size_t k = 0; k < c.n; k++) free(c.text[k]);
  free(c.text);
  free(c.len);
  return ok ? 0 : 1;
}
