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
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (vlm_app_is_help(a)) { usage(stdout); return 0; }
    if (!strcmp(a, "--vocab-size") && i + 1 < argc) {
      if (!vlm_app_parse_int("vlm bpe-train", "--vocab-size", argv[++i], VLM_BPE_MIN_VOCAB, 1 << 24, &vocab_size)) return 2;
      continue;
    }
    if (!strcmp(a, "--out") && i + 1 < argc) { out = argv[++i]; continue; }
    if (!strcmp(a, "--")) { i++; break; }
    if (a[0] == '-' && a[1]) {
      fprintf(stderr, "vlm bpe-train: unknown option '%s' (or missing value)\n", a);
      usage(stderr);
      return 2;
    }
    break;
  }
  if (!vocab_size || !out) {
    fprintf(stderr, "vlm bpe-train: --vocab-size and --out are required\n");
    usage(stderr);
    return 2;
  }
  corpus c = {0};
  int ok = 1;
  if (i >= argc) ok = read_lines(&c, stdin, "<stdin>");
  for (; i < argc && ok; i++) {
    FILE *f = strcmp(argv[i], "-") ? fopen(argv[i], "rb") : stdin;
    if (!f) { fprintf(stderr, "vlm bpe-train: %s: cannot open: %s\n", argv[i], strerror(errno)); ok = 0; break; }
    ok = read_lines(&c, f, argv[i]);
    if (f != stdin) fclose(f);
  }
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
