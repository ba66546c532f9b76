/* libFuzzer target for the CLIP tokenizer: arbitrary bytes as a caption
 * (cleaning, pre-tokenizer, BPE, context truncation, decode, dropout) and, when
 * the first byte is 'V', as a Hugging Face vocab.json + merges.txt pair split
 * at the first NUL, or 'J', as a tokenizer.json (the loaders must reject or load it, never
 * crash).
 *
 * Run with scripts/fuzz.sh (it sets VLM_VOCAB to the OpenAI vocabulary in
 * ../shared/data and seeds from ../shared/fixtures/tokenizer/captions.txt). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text/text.h"

static vlm_tokenizer *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  const char *v = getenv("VLM_VOCAB");
  if (!v || vlm_tokenizer_load(&g_tok, v)) {
    fprintf(stderr, "fuzz_tokenizer: set VLM_VOCAB to bpe_simple_vocab_16e6.txt.gz (%s)\n", v ? vlm_last_error() : "unset");
    exit(1);
  }
  return 0;
}

static void fuzz_loader(const uint8_t *data, size_t n) {
  static char dir[64];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/vlm_fuzz_tok_%d", (int)getpid());
    char cmd[96];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0) return;
  }
  const uint8_t *z = memchr(data, 0, n);
  size_t nv = z ? (size_t)(z - data) : n;
  char p[128];
  snprintf(p, sizeof p, "%s/vocab.json", dir);
  FILE *f = fopen(p, "wb");
  if (!f) return;
  fwrite(data, 1, nv, f);
  fclose(f);
  snprintf(p, sizeof p, "%s/merges.txt", dir);
  f = fopen(p, "wb");
  if (!f) return;
  if (z) fwrite(z + 1, 1, n - nv - 1, f);
  fclose(f);
  vlm_tokenizer *t = NULL;
  if (vlm_tokenizer_load(&t, dir) == VLM_OK) {
    int32_t out[16];
    vlm_tokenizer_encode_ctx(t, "a photo of a cat", 16, 16, 0, out);
    vlm_tokenizer_free(t);
  }
}

/* The bytes as a fast tokenizer's tokenizer.json. */
static void fuzz_json(const uint8_t *data, size_t n) {
  char p[128];
  snprintf(p, sizeof p, "/tmp/vlm_fuzz_tokjson_%d.json", (int)getpid());
  FILE *f = fopen(p, "wb");
  if (!f) return;
  fwrite(data, 1, n, f);
  fclose(f);
  vlm_tokenizer *t = NULL;
  if (vlm_tokenizer_load_hf_json(&t, p) == VLM_OK) {
    int32_t out[16];
    vlm_tokenizer_encode_ctx(t, "a photo of a cat", 16, 16, 0, out);
    vlm_tokenizer_free(t);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (n > 0 && data[0] == 'V') { fuzz_loader(data + 1, n - 1); return 0; }
  if (n > 0 && data[0] == 'J') { fuzz_json(data + 1, n - 1); return 0; }
  char *c = vlm_tokenizer_clean((const char *)data, n);
  free(c);
  int32_t out[77];
  int k = vlm_tokenizer_encode_ctx(g_tok, (const char *)data, n, 77, 0, out);
  if (k < 0) abort();
  for (int i = 0; i < 77; i++)
    if (out[i] < 0 || out[i] >= vlm_tokenizer_vocab_size(g_tok)) abort();
  char *d = vlm_tokenizer_decode(g_tok, out, 77);
  free(d);
  if (n > 1 && (data[n - 1] & 7) == 0) {   /* sometimes with dropout */
    vlm_tokenizer_set_dropout(g_tok, 0.25f, data[0]);
    int32_t *ids;
    size_t m;
    if (vlm_tokenizer_encode(g_tok, (const char *)data, n, &ids, &m) == VLM_OK) free(ids);
    vlm_tokenizer_set_dropout(g_tok, 0.0f, 0);
  }
  return 0;
}
