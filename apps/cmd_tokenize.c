/* vlm tokenize: captions -> CLIP BPE ids, one JSON line per caption. */
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
          "usage: vlm tokenize [--vocab PATH] [--context-length N] [--pad zero|eot] [--decode | --full]\n"
          "                    [--stats] [FILE...]\n"
          "\n"
          "Reads captions one per line from the FILEs (or stdin, or '-') and prints one JSON\n"
          "line per caption, {\"ids\": [...]}, with open_clip's tokenization: <|startoftext|>,\n"
          "the BPE ids of the cleaned caption, <|endoftext|>, truncated to the context length\n"
          "(the last id forced to <|endoftext|>) and padded.\n"
          "\n"
          "Options:\n"
          "  --vocab PATH          OpenAI's bpe_simple_vocab_16e6.txt.gz, a Hugging Face\n"
          "                        vocab.json (merges.txt beside it), a folder holding both,\n"
          "                        or a fast tokenizer's tokenizer.json;\n"
          "                        default: $VLM_VOCAB (--tokenizer PATH: the same, as the\n"
          "                        other commands name it)\n"
          "  --context-length N    tokens per caption (default 77); 0: no truncation, no padding\n"
          "  --pad zero|eot        padding id: 0 as open_clip (default) or <|endoftext|> as HF\n"
          "                        (not with --context-length 0)\n"
          "  --decode              print {\"text\": ...}, the text of each caption's ids, instead\n"
          "                        (what lies between <|startoftext|> and the first <|endoftext|>)\n"
          "  --full                print {\"line\", \"text\", \"n_tokens\", \"truncated\", \"ids\"}:\n"
          "                        the caption's number (from 0, over all the input), its text,\n"
          "                        its token count before truncation (sot and eot included)\n"
          "                        and whether it was cut\n"
          "  --stats               report captions/s on stderr\n"
          "Options may come before or after the FILEs; '--' ends them.\n"
          "\n"
          "Invalid UTF-8 in a caption is read as U+FFFD (Python's errors=\"replace\"). A line's end\n"
          "is '\\n' or '\\r\\n' (a Windows editor's): neither is part of the caption.\n"
          "\n"
          "Examples:\n"
          "  echo 'a photo of a cat' | vlm tokenize --vocab bpe_simple_vocab_16e6.txt.gz\n"
          "  vlm tokenize --vocab hf-clip/ --context-length 32 --pad eot captions.txt\n");
}

typedef struct {
  vlm_tokenizer *tok;
  int ctx, pad_eot, decode, full;
  int32_t *out;
  char *obuf;
  size_t ocap;
  long long count;
} tok_job;

static char *put_int(char *p, int32_t v) {
  char tmp[16];
  int n = 0;
  uint32_t u = v < 0 ? (uint32_t)(-(int64_t)v) : (uint32_t)v;
  do { tmp[n++] = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) *p++ = '-';
  while (n) *p++ = tmp[--n];
  return p;
}

/* A JSON string as Python's json.dumps(ensure_ascii=False) writes it; invalid
 * UTF-8 is written as U+FFFD. */
static void emit_json_string(const char *s, size_t n) {
  putchar('"');
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  while (p < end) {
    unsigned c = *p;
    if (c == '"' || c == '\\') { putchar('\\'); putchar((int)c); p++; continue; }
    if (c < 0x20) {
      const char *esc = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
      if (esc) fputs(esc, stdout);
      else printf("\\u%04x", c);
      p++;
      continue;
    }
    if (c < 0x80) { putchar((int)c); p++; continue; }
    /* copy one valid UTF-8 sequence; an invalid one becomes one U+FFFD per
     * maximal invalid subpart, as Python's errors="replace" */
    size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 1;
    size_t k = 1;
    while (need > 1 && k < need && p + k < end) {
      unsigned lo = 0x80, hi = 0xBF;
      if (k == 1 && c == 0xE0) lo = 0xA0;
      if (k == 1 && c == 0xED) hi = 0x9F;
      if (k == 1 && c == 0xF0) lo = 0x90;
      if (k == 1 && c == 0xF4) hi = 0x8F;
      if (p[k] < lo || p[k] > hi) break;
      k++;
    }
    if (need > 1 && k == need) fwrite(p, 1, need, stdout);
    else fputs("\xef\xbf\xbd", stdout);
    p += k;
  }
  putchar('"');
}

static int do_line(tok_job *j, const char *line, size_t len) {
  int32_t *ids = j->out;
  size_t n;
  int32_t *dyn = NULL;
  int n_tokens = 0;
  if (j->ctx > 0) {
    int32_t pad = j->pad_eot ? vlm_tokenizer_eot(j->tok) : 0;
    if ((n_tokens = vlm_tokenizer_encode_ctx(j->tok, line, len, j->ctx, pad, ids)) < 0) return 0;
    n = (size_t)j->ctx;
  } else {
    int32_t *bpe;
    size_t nb;
    if (vlm_tokenizer_encode(j->tok, line, len, &bpe, &nb)) return 0;
    dyn = malloc((nb + 2) * sizeof *dyn);
    if (!dyn) { free(bpe); return 0; }
    dyn[0] = vlm_tokenizer_sot(j->tok);
    if (nb) memcpy(dyn + 1, bpe, nb * sizeof *dyn);
    dyn[nb + 1] = vlm_tokenizer_eot(j->tok);
    free(bpe);
    ids = dyn;
    n = nb + 2;
    n_tokens = (int)n;
  }
  if (j->full) {
    printf("{\"line\": %lld, \"text\": ", j->count);
    emit_json_string(line, len);
    printf(", \"n_tokens\": %d, \"truncated\": %s, ", n_tokens, j->ctx > 0 && n_tokens > j->ctx ? "true" : "false");
  }
  if (j->decode) {
    char *s = vlm_tokenizer_decode_text(j->tok, ids, n);
    free(dyn);
    if (!s) return 0;
    fputs("{\"text\": ", stdout);
    emit_json_string(s, strlen(s));
    fputs("}\n", stdout);
    free(s);
    j->count++;
    return 1;
  }
  size_t need = 16 + n * 13;
  if (need > j->ocap) {
    char *nb = realloc(j->obuf, need);
    if (!nb) { free(dyn); return 0; }
    j->obuf = nb;
    j->ocap = need;
  }
  char *p = j->obuf;
  if (j->full) {
    memcpy(p, "\"ids\": [", 8);
    p += 8;
  } else {
    memcpy(p, "{\"ids\": [", 9);
    p += 9;
  }
  for (size_t i = 0; i < n; i++) {
    if (i) { *p++ = ','; *p++ = ' '; }
    p = put_int(p, ids[i]);
  }
  memcpy(p, "]}\n", 3);
  p += 3;
  fwrite(j->obuf, 1, (size_t)(p - j->obuf), stdout);
  free(dyn);
  j->count++;
  return 1;
}

static int do_file(tok_job *j, FILE *f, const char *name) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t r;
  while ((r = getline(&line, &cap, f)) >= 0) {
    size_t len = (size_t)r;
    if (len && line[len - 1] == '\n') len--;
    if (len && line[len - 1] == '\r') len--;   /* a CRLF line end (a Windows editor's) is no part of the text */
    if (!do_line(j, line, len)) {
      fprintf(stderr, "vlm tokenize: %s: out of memory\n", name);
      free(line);
      return 0;
    }
  }
  free(line);
  if (ferror(f)) {
    fprintf(stderr, "vlm tokenize: %s: read error\n", name);
    return 0;
  }
  return 1;
}

int vlm_cmd_tokenize(int argc, char **argv) {
  const char *vocab = getenv("VLM_VOCAB");
  long long ctx = 77;
  int pad_eot = 0, decode = 0, stats = 0, full = 0, pad_set = 0;
  /* options anywhere; the other arguments are the files, in order ('--' ends the options) */
  char **files = calloc((size_t)argc, sizeof *files);
  int n_files = 0, opts_done = 0;
  if (!files) { fprintf(stderr, "vlm tokenize: out of memory\n"); return 1; }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (opts_done || a[0] != '-' || !a[1]) { files[n_files++] = argv[i]; continue; }
    if (vlm_app_is_help(a)) { usage(stdout); free(files); return 0; }
    if (!strcmp(a, "--")) { opts_done = 1; continue; }
    if (!strcmp(a, "--decode")) { decode = 1; continue; }
    if (!strcmp(a, "--full")) { full = 1; continue; }
    if (!strcmp(a, "--stats")) { stats = 1; continue; }
    if (strcmp(a, "--vocab") && strcmp(a, "--tokenizer") && strcmp(a, "--context-length") && strcmp(a, "--pad")) {
      free(files);
      return vlm_app_bad_arg("vlm tokenize", a);
    }
    const char *v = vlm_app_value("vlm tokenize", argc, argv, &i);
    if (!v) { free(files); return 2; }
    if (!strcmp(a, "--context-length")) {
      if (!vlm_app_parse_int("vlm tokenize", "--context-length", v, 0, 1 << 20, &ctx)) { free(files); return 2; }
    } else if (!strcmp(a, "--pad")) {
      pad_set = 1;
      if (!strcmp(v, "zero")) pad_eot = 0;
      else if (!strcmp(v, "eot")) pad_eot = 1;
      else { fprintf(stderr, "vlm tokenize: --pad expects 'zero' or 'eot', got '%s'\n", v); free(files); return 2; }
    } else {
      vocab = v;
    }
  }
  if (decode && full) {
    fprintf(stderr, "vlm tokenize: --decode and --full are exclusive (--full prints the text and the ids)\n");
    free(files);
    return 2;
  }
  if (pad_set && ctx == 0) {
    fprintf(stderr, "vlm tokenize: --pad needs a --context-length (0: no padding)\n");
    free(files);
    return 2;
  }
  if (!vocab || !*vocab) {
    fprintf(stderr, "vlm tokenize: no vocabulary: pass --vocab PATH or set VLM_VOCAB\n");
    free(files);
    return 2;
  }
  tok_job j = {0};
  if (vlm_tokenizer_load(&j.tok, vocab)) {
    fprintf(stderr, "vlm tokenize: %s\n", vlm_last_error());
    free(files);
    return 1;
  }
  j.ctx = (int)ctx;
  j.pad_eot = pad_eot;
  j.decode = decode;
  j.full = full;
  j.out = malloc((size_t)(ctx > 0 ? ctx : 1) * sizeof *j.out);
  if (!j.out) { vlm_tokenizer_free(j.tok); free(files); fprintf(stderr, "vlm tokenize: out of memory\n"); return 1; }
  static char obuf[1 << 16];
  setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int ok = 1;
  if (n_files == 0) ok = do_file(&j, stdin, "<stdin>");
  for (int k = 0; k < n_files && ok; k++) {
    if (!strcmp(files[k], "-")) { ok = do_file(&j, stdin, "<stdin>"); continue; }
    FILE *f = fopen(files[k], "rb");
    if (!f) {
      fprintf(stderr, "vlm tokenize: %s: cannot open: %s\n", files[k], strerror(errno));
      ok = 0;
      break;
    }
    struct stat sb;   /* a folder opens, then fails to read with a bare "read error" */
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
      fprintf(stderr, "vlm tokenize: %s: is a directory, not a text file (one caption per line)\n", files[k]);
      fclose(f);
      ok = 0;
      break;
    }
    ok = do_file(&j, f, files[k]);
    fclose(f);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (fflush(stdout) != 0) { fprintf(stderr, "vlm tokenize: write error on stdout\n"); ok = 0; }
  if (stats) {
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "vlm tokenize: %lld captions in %.3f s (%.0f captions/s)\n", j.count, s, s > 0 ? (double)j.count / s : 0.0);
  }
  free(j.out);
  free(j.obuf);
  free(files);
  vlm_tokenizer_free(j.tok);
  return ok ? 0 : 1;
}
