/* libFuzzer target: the PyTorch file reader. An input starting with "PK" is the whole
 * file; any other input is data.pkl inside a valid archive (right CRCs) that also holds
 * storages data/0 .. data/31 of 512 bytes each, so mutations reach the pickle machine and
 * the tensor checks instead of stopping at a CRC. Every input either opens (and then every
 * entry's bytes lie in the mapping or the copies, names are sorted and found, float entries
 * read) or fails with a message naming the file; nothing may crash, hang or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

static void wrap(const char *path, const uint8_t *pk, size_t n) {
  static uint8_t store[512];
  for (int i = 0; i < 512; i++) store[i] = (uint8_t)(i * 7 + 1);
  FILE *f = fopen(path, "wb");
  if (!f) return;
  vlm_zip_writer zw;
  vlm_zip_writer_init(&zw, f, path);
  vlm_zip_writer_add(&zw, "arch/data.pkl", pk, n, VLM_CPU);
  char name[32];
  for (int k = 0; k < 32; k++) {
    snprintf(name, sizeof name, "arch/data/%d", k);
    vlm_zip_writer_add(&zw, name, store, sizeof store, VLM_CPU);
  }
  vlm_zip_writer_add(&zw, "arch/version", "3\n", 2, VLM_CPU);
  vlm_zip_writer_finish(&zw);
  vlm_zip_writer_free(&zw);
  fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[64];
  if (!path[0]) snprintf(path, sizeof path, "/tmp/vlm-fuzz-torch-%d.pt", (int)getpid());
  if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
  } else {
    wrap(path, data, size);
  }
  vlm_safetensors st;
  if (vlm_torch_open(&st, path) == VLM_OK) {
    const uint8_t *own = st.owned;
    for (int i = 0; i < st.n_entries; i++) {
      const vlm_st_entry *e = &st.entries[i];
      if (e->begin > e->end) abort();
      uint64_t nb = e->end - e->begin, numel = 1;
      for (int d = 0; d < e->ndim; d++) numel *= (uint64_t)e->shape[d];
      if (nb != numel * vlm_dtype_size(e->dtype)) abort();
      const uint8_t *p = e->data;
      int in_own = own && p >= own && p < own + st.owned_size;
      if (in_own ? p + nb > own + st.owned_size
                 : nb && (p < st.data || p + nb > st.data + st.data_size))
        abort();
      volatile uint8_t acc = 0;
      for (uint64_t k = 0; k < nb; k++) acc ^= p[k];
      (void)acc;
      if (vlm_st_find(&st, e->name) != e) abort();
      if (numel <= 4096 && (e->dtype == VLM_F32 || e->dtype == VLM_F16 || e->dtype == VLM_BF16 ||
                            e->dtype == VLM_F64)) {
        float buf[4096];
        if (vlm_st_read_f32(&st, e, buf, (int64_t)numel) != VLM_OK) abort();
      }
    }
    if (vlm_st_keep_prefix(&st, "a") != VLM_OK) abort();
    for (int i = 1; i < st.n_entries; i++)
      if (strcmp(st.entries[i - 1].name, st.entries[i].name) >= 0) abort();
    vlm_st_close(&st);
  } else if (!strstr(vlm_last_error(), path)) {
    fprintf(stderr, "error message does not name the file: %s\n", vlm_last_error());
    abort();
  }
  return 0;
}
