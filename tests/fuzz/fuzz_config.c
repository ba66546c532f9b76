/* libFuzzer target: the model config parsers on arbitrary bytes. The first byte
 * picks the schema (0: open_clip CLIP model_cfg, 1: Hugging Face CLIPConfig,
 * 2: open_clip CoCa); the rest is the JSON text. Every input parses or fails
 * with a message naming the source; a parsed config is within vlm's size
 * limits, its parameter count fits, and when small its parameters and
 * activations are laid out, allocated and freed (UBSan watches the size
 * arithmetic). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static void fail(const char *what) {
  fprintf(stderr, "fuzz_config: %s\n", what);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  char *json = malloc(size);
  if (!json) return 0;
  memcpy(json, data + 1, size - 1);
  json[size - 1] = 0;
  int kind = data[0] % 3;
  vlm_status st;
  if (kind < 2) {
    vlm_clip_config c;
    st = kind ? vlm_clip_config_parse_hf(&c, json, "fuzz.json") : vlm_clip_config_parse(&c, json, "fuzz.json");
    if (st == VLM_OK) {
      if (c.vision.width > 65536 || c.text.width > 65536 || c.text.vocab_size > (1 << 24) ||
          c.vision.image_size / c.vision.patch_size > 512 || c.text.context_length > 65536)
        fail("a parsed CLIP config is past the limits");
      int64_t v = 0, t = 0, n = vlm_clip_config_num_params(&c, &v, &t);
      if (n < 0 || v < 0 || t < 0 || n != v + t + 1) fail("parameter count");
      if (n < 200000) {
        vlm_clip_params p;
        if (vlm_clip_params_init(&p, &c) == VLM_OK) {
          vlm_clip_acts a;
          int64_t L = c.text.context_length < 8 ? c.text.context_length : 8;
          if (vlm_clip_acts_init(&a, &c, 2, L, 1) == VLM_OK) vlm_clip_acts_free(&a);
          vlm_clip_params_free(&p);
        }
      }
    }
  } else {
    vlm_coca_config c;
    st = vlm_coca_config_parse(&c, json, "fuzz.json");
    if (st == VLM_OK && (c.vision.width > 65536 || c.text.vocab_size > (1 << 24) || c.decoder.mlp_width > (1 << 18)))
      fail("a parsed CoCa config is past the limits");
    if (st == VLM_OK && c.vision.width * c.vision.width * (c.vision.layers + 1) < 100000 &&
        c.text.width * c.text.width * (c.text.layers + c.decoder.layers + 1) < 100000 && c.text.vocab_size < 4096 &&
        c.vision.image_size / c.vision.patch_size <= 16) {
      vlm_coca_params p;
      if (vlm_coca_params_init(&p, &c) == VLM_OK) {
        vlm_coca_acts a;
        int64_t L = c.text.context_length < 8 ? c.text.context_length : 8;
        if (L > c.decoder.context_length) L = c.decoder.context_length;
        if (vlm_coca_acts_init(&a, &c, 2, L, 1) == VLM_OK) vlm_coca_acts_free(&a);
        vlm_coca_params_free(&p);
      }
    }
  }
  if (st != VLM_OK && !strstr(vlm_last_error(), "fuzz.json")) {
    fprintf(stderr, "error does not name the source: %s\n", vlm_last_error());
    abort();
  }
  free(json);
  return 0;
}
