/* A PyTorch checkpoint larger than 4 GiB (ViT-g-14 and ViT-bigG-14 are 5.5 and 10 GB in fp32):
 * its zip needs zip64 records, and the tensors after the first 4 GiB have 64-bit offsets. The
 * archive is built here as a sparse file: torch's records for a small state dict (made by vlm's
 * writer, whose output torch.load reads: tests/data/torch/check_written.py) placed after an
 * unreferenced 4.5 GiB storage that is a hole in the file, so the test writes a few KB. The
 * tensor read back must be the one written, from an offset above 2^32. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gradcheck.h"
#include "core/core.h"

typedef struct {
  uint8_t b[512];
  size_t n;
} rec;

static void p16(rec *r, uint32_t v) { r->b[r->n++] = (uint8_t)v; r->b[r->n++] = (uint8_t)(v >> 8); }
static void p32(rec *r, uint32_t v) { p16(r, v & 0xffff); p16(r, v >> 16); }
static void p64(rec *r, uint64_t v) { p32(r, (uint32_t)v); p32(r, (uint32_t)(v >> 32)); }
static void pstr(rec *r, const char *s) { size_t k = strlen(s); memcpy(r->b + r->n, s, k); r->n += k; }

#define BIG ((uint64_t)9 << 29)   /* 4.5 GiB */

typedef struct {
  const char *name;
  const uint8_t *data;   /* NULL: BIG bytes of hole */
  uint64_t size;
  uint32_t crc;
  uint64_t header;       /* where its local header went */
} ent;

static int put_at(int fd, const rec *r, uint64_t off) {
  return pwrite(fd, r->b, r->n, (off_t)off) == (ssize_t)r->n;
}

/* Local header (zip64 sizes for the hole), then the data. Returns the offset after the data. */
static uint64_t write_local(int fd, ent *e, uint64_t off, int *ok) {
  rec r = {0};
  const int z64 = e->size >= 0xffffffffu;
  p32(&r, 0x04034b50u);
  p16(&r, 45);
  p16(&r, 0);
  p16(&r, 0);
  p32(&r, 0);
  p32(&r, e->crc);
  p32(&r, z64 ? 0xffffffffu : (uint32_t)e->size);
  p32(&r, z64 ? 0xffffffffu : (uint32_t)e->size);
  p16(&r, (uint32_t)strlen(e->name));
  p16(&r, z64 ? 20 : 0);
  pstr(&r, e->name);
  if (z64) {
    p16(&r, 1);
    p16(&r, 16);
    p64(&r, e->size);
    p64(&r, e->size);
  }
  e->header = off;
  *ok &= put_at(fd, &r, off);
  off += r.n;
  if (e->data) *ok &= pwrite(fd, e->data, e->size, (off_t)off) == (ssize_t)e->size;
  return off + e->size;   /* a hole when there is no data */
}

static void write_central(rec *r, const ent *e) {
  const int zs = e->size >= 0xffffffffu, zo = e->header >= 0xffffffffu;
  p32(r, 0x02014b50u);
  p16(r, 45);
  p16(r, 45);
  p16(r, 0);
  p16(r, 0);
  p32(r, 0);
  p32(r, e->crc);
  p32(r, zs ? 0xffffffffu : (uint32_t)e->size);
  p32(r, zs ? 0xffffffffu : (uint32_t)e->size);
  p16(r, (uint32_t)strlen(e->name));
  p16(r, (zs || zo) ? 4 + (zs ? 16 : 0) + (zo ? 8 : 0) : 0);
  p16(r, 0);
  p16(r, 0);
  p16(r, 0);
  p32(r, 0);
  p32(r, zo ? 0xffffffffu : (uint32_t)e->header);
  pstr(r, e->name);
  if (zs || zo) {
    p16(r, 1);
    p16(r, (zs ? 16 : 0) + (zo ? 8 : 0));
    if (zs) { p64(r, e->size); p64(r, e->size); }
    if (zo) p64(r, e->header);
  }
}

int main(void) {
  char dir[] = "/tmp/vlm-zip64-XXXXXX";
  if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return vt_finish(); }
  char small[256], big[256];
  snprintf(small, sizeof small, "%s/small.pt", dir);
  snprintf(big, sizeof big, "%s/big.pt", dir);
  /* the small archive: one F32 [2, 3] tensor "w" = 1..6 */
  static float w6[6] = {1, 2, 3, 4, 5, 6};
  int64_t shape[2] = {2, 3};
  vlm_st_writer *w = vlm_st_writer_new();
  CHECK(vlm_st_writer_add(w, "w", VLM_F32, 2, shape, w6) == VLM_OK && vlm_st_writer_save_torch(w, small) == VLM_OK,
        "write %s: %s", small, vlm_last_error());
  vlm_st_writer_free(w);
  size_t n = 0;
  uint8_t *buf = vt_read_file(small, &n);
  vlm_zip z;
  if (!buf || vlm_zip_open(&z, small, buf, n) != VLM_OK) {
    CHECK(0, "open %s: %s", small, vlm_last_error());
    free(buf);
    return vt_finish();
  }
  const vlm_zip_entry *pkl = vlm_zip_find(&z, "small/data.pkl"), *d0 = vlm_zip_find(&z, "small/data/0");
  CHECK(pkl && d0, "the small archive's records");
  if (!pkl || !d0) return vt_finish();
  /* the big one: data.pkl, an unreferenced 4.5 GiB storage (a hole), then the tensor's storage
   * and the version record above 4 GiB, zip64 end records */
  ent e[4] = {
    {"big/data.pkl", buf + pkl->offset, pkl->size, pkl->crc, 0},
    {"big/data/999", NULL, BIG, 0, 0},
    {"big/data/0", buf + d0->offset, d0->size, d0->crc, 0},
    {"big/version", (const uint8_t *)"3\n", 2, vlm_crc32(0, "3\n", 2), 0},
  };
  int fd = open(big, O_CREAT | O_TRUNC | O_WRONLY, 0644), ok = fd >= 0;
  uint64_t off = 0;
  for (int i = 0; i < 4 && ok; i++) {
    /* data 64-byte aligned, as torch writes it (a misaligned storage would be read as a copy) */
    const uint64_t hdr = 30 + strlen(e[i].name) + (e[i].size >= 0xffffffffu ? 20 : 0);
    if (i > 0) off = ((off + hdr + 63) / 64) * 64 - hdr;
    off = write_local(fd, &e[i], off, &ok);
  }
  rec cd = {0};
  for (int i = 0; i < 4; i++) write_central(&cd, &e[i]);
  const uint64_t cd_off = off;
  ok = ok && put_at(fd, &cd, cd_off);
  off += cd.n;
  rec end = {0};
  p32(&end, 0x06064b50u);   /* zip64 end of central directory */
  p64(&end, 44);
  p16(&end, 45);
  p16(&end, 45);
  p32(&end, 0);
  p32(&end, 0);
  p64(&end, 4);
  p64(&end, 4);
  p64(&end, cd.n);
  p64(&end, cd_off);
  p32(&end, 0x07064b50u);   /* its locator */
  p32(&end, 0);
  p64(&end, off);
  p32(&end, 1);
  p32(&end, 0x06054b50u);   /* end of central directory */
  p16(&end, 0);
  p16(&end, 0);
  p16(&end, 4);
  p16(&end, 4);
  p32(&end, (uint32_t)cd.n);
  p32(&end, 0xffffffffu);
  p16(&end, 0);
  ok = ok && put_at(fd, &end, off);
  if (fd >= 0) close(fd);
  vlm_zip_close(&z);
  free(buf);
  CHECK(ok, "write %s", big);
  struct stat sb;
  CHECK(stat(big, &sb) == 0 && (uint64_t)sb.st_size > BIG, "%s is %lld bytes", big, (long long)sb.st_size);
  printf("%s: %lld bytes, %lld on disk; the tensor's storage at offset %llu\n", big, (long long)sb.st_size,
         (long long)sb.st_blocks * 512, (unsigned long long)e[2].header);

  vlm_safetensors st;
  vlm_status s = vlm_torch_open(&st, big);
  CHECK(s == VLM_OK, "open the 4.5 GiB archive: %s", vlm_last_error());
  if (s == VLM_OK) {
    const vlm_st_entry *t = vlm_st_find(&st, "w");
    float got[6] = {0};
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && vlm_st_read_f32(&st, t, got, 6) == VLM_OK &&
              !memcmp(got, w6, sizeof got),
          "the tensor above 4 GiB: %g %g %g %g %g %g", got[0], got[1], got[2], got[3], got[4], got[5]);
    CHECK(t && (const uint8_t *)t->data - (const uint8_t *)st.map > (ptrdiff_t)0xffffffffu,
          "it was read from above 2^32");
    vlm_st_close(&st);
  }
  unlink(big);
  unlink(small);
  rmdir(dir);
  return vt_finish();
}
