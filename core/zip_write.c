/* Zip writer for torch files: stored entries whose data starts at a multiple of 64 bytes
 * in the file (padding in an extra field, as torch does, so that a mapping of the file
 * gives aligned tensors), CRC-32 and sizes in the local headers (no data descriptors),
 * zip64 extra fields and end records only where a value does not fit in 32 (16) bits.
 * Offsets are counted here, so the FILE may be a pipe. */
#define _GNU_SOURCE
#include "core/core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 64
#define PAD_ID 0x4246   /* "FB": the padding extra field */
#define STAGE (64u << 20)

struct vlm_zip_went {
  char *name;
  uint64_t header, size;
  uint32_t crc;
};

static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void wr64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

void vlm_zip_writer_init(vlm_zip_writer *zw, FILE *f, const char *path) {
  memset(zw, 0, sizeof *zw);
  zw->f = f;
  zw->path = path;
}

void vlm_zip_writer_free(vlm_zip_writer *zw) {
  if (!zw) return;
  for (int i = 0; i < zw->n; i++) free(zw->e[i].name);
  free(zw->e);
  zw->e = NULL;
  zw->n = zw->cap = 0;
}

static vlm_status put(vlm_zip_writer *zw, const void *p, size_t n) {
  errno = 0;
  if (n && fwrite(p, 1, n, zw->f) != n)
    return vlm_error(VLM_ERR_IO, "%s: cannot write: %s", zw->path, strerror(errno ? errno : EIO));
  zw->pos += n;
  return VLM_OK;
}

/* CRC of (and, when f is set, write) n bytes on dev, through a bounded host buffer for CUDA. */
static vlm_status pass(vlm_zip_writer *zw, const void *data, uint64_t n, vlm_device dev, int write, uint32_t *crc) {
  if (dev == VLM_CPU) {
    if (write) return put(zw, data, (size_t)n);
    *crc = vlm_crc32(0, data, (size_t)n);
    return VLM_OK;
  }
  size_t chunk = n < STAGE ? (size_t)n : STAGE;
  uint8_t *buf = malloc(chunk ? chunk : 1);
  if (!buf) return vlm_error(VLM_ERR_OOM, "%s: out of memory for a staging buffer", zw->path);
  vlm_status s = VLM_OK;
  uint32_t c = 0;
  for (uint64_t off = 0; off < n && s == VLM_OK; off += chunk) {
    size_t k = n - off < chunk ? (size_t)(n - off) : chunk;
    vlm_memcpy(buf, VLM_CPU, (const uint8_t *)data + off, dev, k);
    if (write) s = put(zw, buf, k);
    else c = vlm_crc32(c, buf, k);
  }
  free(buf);
  if (!write) *crc = c;
  return s;
}

vlm_status vlm_zip_writer_add(vlm_zip_writer *zw, const char *name, const void *data, uint64_t n, vlm_device dev) {
  size_t nl = strlen(name);
  if (nl == 0 || nl > 0xffff) return vlm_error(VLM_ERR_ARG, "%s: zip entry name of %zu bytes", zw->path, nl);
  if (zw->n == zw->cap) {
    int nc = zw->cap ? zw->cap * 2 : 16;
    struct vlm_zip_went *ne = realloc(zw->e, (size_t)nc * sizeof *ne);
    if (!ne) return vlm_error(VLM_ERR_OOM, "%s: out of memory", zw->path);
    zw->e = ne;
    zw->cap = nc;
  }
  struct vlm_zip_went *e = &zw->e[zw->n];
  memset(e, 0, sizeof *e);
  if (!(e->name = strdup(name))) return vlm_error(VLM_ERR_OOM, "%s: out of memory", zw->path);
  zw->n++;
  e->header = zw->pos;
  e->size = n;
  vlm_status s = pass(zw, data, n, dev, 0, &e->crc);
  if (s != VLM_OK) return s;

  int big = zw->force_zip64 || n >= 0xffffffffu;
  uint8_t h[30 + 20 + 4 + ALIGN];
  size_t x = big ? 20 : 0;   /* the zip64 extra field: usize, csize */
  uint64_t data_at = e->header + 30 + nl + x + 4;
  size_t pad = (size_t)((ALIGN - data_at % ALIGN) % ALIGN);
  wr32(h, 0x04034b50u);
  wr16(h + 4, big ? 45 : 20);
  wr16(h + 6, 1u << 11);   /* names are UTF-8 */
  wr16(h + 8, 0);          /* stored */
  wr16(h + 10, 0);
  wr16(h + 12, 0x21);      /* 1980-01-01 */
  wr32(h + 14, e->crc);
  wr32(h + 18, big ? 0xffffffffu : (uint32_t)n);
  wr32(h + 22, big ? 0xffffffffu : (uint32_t)n);
  wr16(h + 26, (uint16_t)nl);
  wr16(h + 28, (uint16_t)(x + 4 + pad));
  if ((s = put(zw, h, 30)) != VLM_OK || (s = put(zw, name, nl)) != VLM_OK) return s;
  uint8_t *q = h;
  if (big) {
    wr16(q, 1);
    wr16(q + 2, 16);
    wr64(q + 4, n);
    wr64(q + 12, n);
    q += 20;
  }
  wr16(q, PAD_ID);
  wr16(q + 2, (uint16_t)pad);
  memset(q + 4, 'Z', pad);
  if ((s = put(zw, h, x + 4 + pad)) != VLM_OK) return s;
  return pass(zw, data, n, dev, 1, NULL);
}

vlm_status vlm_zip_writer_finish(vlm_zip_writer *zw) {
  uint64_t cd_off = zw->pos;
  vlm_status s = VLM_OK;
  for (int i = 0; i < zw->n && s == VLM_OK; i++) {
    const struct vlm_zip_went *e = &zw->e[i];
    size_t nl = strlen(e->name);
    int bs = zw->force_zip64 || e->size >= 0xffffffffu, bo = zw->force_zip64 || e->header >= 0xffffffffu;
    size_t x = (bs || bo) ? 4 + (bs ? 16 : 0) + (bo ? 8 : 0) : 0;
    uint8_t h[46 + 28];
    wr32(h, 0x02014b50u);
    wr16(h + 4, (3u << 8) | 45);   /* made by: Unix, zip 4.5 */
    wr16(h + 6, x ? 45 : 20);
    wr16(h + 8, 1u << 11);
    wr16(h + 10, 0);
    wr16(h + 12, 0);
    wr16(h + 14, 0x21);
    wr32(h + 16, e->crc);
    wr32(h + 20, bs ? 0xffffffffu : (uint32_t)e->size);
    wr32(h + 24, bs ? 0xffffffffu : (uint32_t)e->size);
    wr16(h + 28, (uint16_t)nl);
    wr16(h + 30, (uint16_t)x);
    wr16(h + 32, 0);
    wr16(h + 34, 0);
    wr16(h + 36, 0);
    wr32(h + 38, 0644u << 16);
    wr32(h + 42, bo ? 0xffffffffu : (uint32_t)e->header);
    uint8_t *q = h + 46;
    if (x) {
      wr16(q, 1);
      wr16(q + 2, (uint16_t)(x - 4));
      q += 4;
      if (bs) { wr64(q, e->size); wr64(q + 8, e->size); q += 16; }
      if (bo) { wr64(q, e->header); q += 8; }
    }
    if ((s = put(zw, h, 46)) == VLM_OK && (s = put(zw, e->name, nl)) == VLM_OK) s = put(zw, h + 46, x);
  }
  if (s != VLM_OK) return s;
  uint64_t cd_size = zw->pos - cd_off, count = (uint64_t)zw->n;
  int big = zw->force_zip64 || count >= 0xffff || cd_size >= 0xffffffffu || cd_off >= 0xffffffffu;
  uint8_t r[56 + 20 + 22];
  size_t k = 0;
  if (big) {
    uint64_t at = zw->pos;
    wr32(r, 0x06064b50u);
    wr64(r + 4, 44);
    wr16(r + 12, (3u << 8) | 45);
    wr16(r + 14, 45);
    wr32(r + 16, 0);
    wr32(r + 20, 0);
    wr64(r + 24, count);
    wr64(r + 32, count);
    wr64(r + 40, cd_size);
    wr64(r + 48, cd_off);
    wr32(r + 56, 0x07064b50u);
    wr32(r + 60, 0);
    wr64(r + 64, at);
    wr32(r + 72, 1);
    k = 76;
  }
  uint8_t *e = r + k;
  wr32(e, 0x06054b50u);
  wr16(e + 4, 0);
  wr16(e + 6, 0);
  wr16(e + 8, big ? 0xffff : (uint16_t)count);
  wr16(e + 10, big ? 0xffff : (uint16_t)count);
  wr32(e + 12, big ? 0xffffffffu : (uint32_t)cd_size);
  wr32(e + 16, big ? 0xffffffffu : (uint32_t)cd_off);
  wr16(e + 20, 0);
  return put(zw, r, k + 22);
}
