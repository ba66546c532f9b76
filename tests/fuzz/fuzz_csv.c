/* libFuzzer target: the CSV/TSV source on arbitrary bytes. The first byte picks the
 * separator (odd: ',', even: tab); the rest is the file. Opening either fails naming the
 * file or indexes it; then every record is read (image paths point into an empty folder, so
 * reads fail cleanly), each failure naming the file. */
#define _POSIX_C_SOURCE 200809L
#include "source_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char dir[64], path[128];
  if (!dir[0]) {
    fuzz_make_dir(dir, sizeof dir, "csv");
    snprintf(path, sizeof path, "%s/f.csv", dir);
  }
  if (size == 0) return 0;
  if (!fuzz_write_file(path, data + 1, size - 1)) return 0;
  vlm_source_opts o;
  vlm_source_opts_default(&o);
  o.type = VLM_DS_CSV;
  o.csv_separator = (data[0] & 1) ? ',' : '\t';
  o.csv_img_key = "i";
  o.csv_caption_key = "c";
  fuzz_source_run(path, &o, "f.csv", NULL);
  return 0;
}
