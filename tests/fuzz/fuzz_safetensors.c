/* libFuzzer target: the safetensors reader on arbitrary bytes. Every input
 * either opens (and then every entry lies inside the data section and reads
 * back) or fails with a message naming the file; nothing may crash or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[64];
  if (!path[0]) snprintf(path, sizeof path, "/tmp/vlm-fuzz-st-%d.safetensors", (int)getpid());
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  if (size) fwrite(data, 1, size, f);
  fclose(f);
  vlm_safetensors st;
  if (vlm_st_open(&st, path) == VLM_OK) {
    for (int i = 0; i < st.n_entries; i++) {
      const vlm_st_entry *e = &st.entries[i];
      if (e->end > st.data_size || e->begin > e->end) abort();
      /* Touch every byte: ASan catches a range outside the mapping. */
      volatile uint8_t acc = 0;
      const uint8_t *p = e->data;
      for (uint64_t k = 0; k < e->end - e->begin; k++) acc ^= p[k];
      (void)acc;
      if (vlm_st_find(&st, e->name) != e) abort();
      int64_t n = 1;
      for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
      if (n <= 4096 && (e->dtype == VLM_F32 || e->dtype == VLM_F16 || e->dtype == VLM_BF16 || e->dtype == VLM_F64)) {
        float buf[4096];
        if (vlm_st_read_f32(&st, e, buf, n) != VLM_OK) abort();
      }
    }
    vlm_st_close(&st);
  } else if (!strstr(vlm_last_error(), path)) {
    fprintf(stderr, "error message does not name the file: %s\n", vlm_last_error());
    abort();
  }
  return 0;
}
