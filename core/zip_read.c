/* Zip archive reader for torch files: the central directory is parsed and checked in
 * full against the file (a read-only mapping owned by the caller); entry data is handed
 * out as pointers into it. Only what PyTorch archives need: one disk, zip64 records,
 * stored (uncompressed) entries for reading (compressed entries are listed, not read).
 *
 * Layout (APPNOTE): local header (30 bytes + name + extra) then the data of each entry;
 * the central directory (46 bytes + name + extra + comment per entry); optionally the
 * zip64 end record and its locator; the end of central directory record (22 bytes +
 * comment). torch writes zeros for the CRC and sizes in local headers (data descriptors
 * follow the data), so the sizes and CRCs come from the central directory. */
#define _GNU_SOURCE
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

#define NM "\"%.200s%s\""
#define NMARG(s) (s), (strlen(s) > 200 ? "..." : "")

/* Shared with safetensors_read.c: offset of the first byte that is not valid UTF-8, or n. */
size_t vlm_st__utf8_check(const uint8_t *s, size_t n);

static int cmp_name_idx(const void *a, const void *b, void *ctx) {
  const vlm_zip *z = ctx;
  return strcmp(z->entries[*(const int *)a].name, z->entries[*(const int *)b].name);
}

static int cmp_header(const void *a, const void *b, void *ctx) {
  const vlm_zip *z = ctx;
  uint64_t x = z->entries[*(const int *)a].header, y = z->entries[*(const int *)b].header;
  return x < y ? -1 : x > y;
}

/* NULL when the name is fine, else why not. */
static const char *bad_name(const char *s, size_t n) {
  if (n == 0) return "is empty";
  if (memchr(s, 0, n)) return "contains a NUL byte";
  if (memchr(s, '\\', n)) return "contains a backslash";
  if (s[0] == '/') return "is an absolute path";
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && s[j] != '/') j++;
    if (j - i == 2 && s[i] == '.' && s[i + 1] == '.') return "has a \"..\" part";
    i = j + 1;
  }
  if (vlm_st__utf8_check((const uint8_t *)s, n) != n) return "is not valid UTF-8";
  return NULL;
}

/* The zip64 extended information extra field (id 1): replaces the 32-bit fields that are all ones. */
static vlm_status zip64_extra(const vlm_zip *z, const char *name, const uint8_t *x, size_t xn, uint64_t *usize,
                              uint64_t *csize, uint64_t *off, int need_u, int need_c, int need_o) {
  while (xn >= 4) {
    uint16_t id = rd16(x), len = rd16(x + 2);
    if ((size_t)len > xn - 4)
      return vlm_error(VLM_ERR_FORMAT, "%s: zip entry " NM ": an extra field runs past its header", z->path,
                       NMARG(name));
    if (id == 1) {
      const uint8_t *q = x + 4;
      size_t left = len;
      uint64_t *want[3] = {need_u ? usize : NULL, need_c ? csize : NULL, need_o ? off : NULL};
      for (int k = 0; k < 3; k++) {
        if (!want[k]) continue;
        if (left < 8)
          return vlm_error(VLM_ERR_FORMAT, "%s: zip entry " NM ": the zip64 extra field is too short", z->path,
                           NMARG(name));
        *want[k] = rd64(q);
        q += 8;
        left -= 8;
      }
      return VLM_OK;
    }
    x += 4 + len;
    xn -= 4 + (size_t)len;
  }
  if (need_u || need_c || need_o)
    return vlm_error(VLM_ERR_FORMAT, "%s: zip entry " NM ": sizes need a zip64 extra field, which is missing",
                     z->path, NMARG(name));
  return VLM_OK;
}

/* Find the end records: the central directory's offset, size and entry count. */
static vlm_status find_end(const vlm_zip *z, uint64_t *cd_off, uint64_t *cd_size, uint64_t *count, uint64_t *cd_end) {
  const uint8_t *b = z->base;
  uint64_t size = z->size, eocd = UINT64_MAX;
  if (size < 22) return vlm_error(VLM_ERR_FORMAT, "%s: %llu bytes, too short for a zip archive", z->path,
                                  (unsigned long long)size);
  uint64_t lo = size - 22 > 65535 ? size - 22 - 65535 : 0;
  for (uint64_t p = size - 22 + 1; p-- > lo;)
    if (rd32(b + p) == SIG_EOCD && p + 22 + rd16(b + p + 20) == size) { eocd = p; break; }
  if (eocd == UINT64_MAX)
    return vlm_error(VLM_ERR_FORMAT, "%s: no zip end of central directory record (truncated or not a zip archive)",
                     z->path);
  const uint8_t *e = b + eocd;
  if (rd16(e + 4) != 0 || rd16(e + 6) != 0)
    return vlm_error(VLM_ERR_FORMAT, "%s: a multi-disk zip archive (not supported)", z->path);
  *count = rd16(e + 10);
  *cd_size = rd32(e + 12);
  *cd_off = rd32(e + 16);
  *cd_end = eocd;
  if (eocd >= 20 && rd32(b + eocd - 20) == SIG_LOC64) {
    const uint8_t *l = b + eocd - 20;
    uint64_t e64 = rd64(l + 8);
    if (rd32(l + 4) != 0 || rd32(l + 16) > 1)
      return vlm_error(VLM_ERR_FORMAT, "%s: a multi-disk zip64 archive (not supported)", z->path);
    if (e64 > eocd - 20 || eocd - 20 - e64 < 56 || rd32(b + e64) != SIG_EOCD64)
      return vlm_error(VLM_ERR_FORMAT, "%s: the zip64 locator points to no zip64 end record", z->path);
    const uint8_t *r = b + e64;
    if (rd32(r + 16) != 0 || rd32(r + 20) != 0)
      return vlm_error(VLM_ERR_FORMAT, "%s: a multi-disk zip64 archive (not supported)", z->path);
    *count = rd64(r + 32);
    *cd_size = rd64(r + 40);
    *cd_off = rd64(r + 48);
    *cd_end = e64;
  }
  if (*cd_off > *cd_end || *cd_size > *cd_end - *cd_off)
    return vlm_error(VLM_ERR_FORMAT,
                     "%s: the zip central directory (%llu bytes at offset %llu) lies outside the file (%llu bytes)",
                     z->path, (unsigned long long)*cd_size, (unsigned long long)*cd_off, (unsigned long long)size);
  if (*count > *cd_size / 46)
    return vlm_error(VLM_ERR_FORMAT, "%s: the zip central directory claims %llu entries in %llu bytes", z->path,
                     (unsigned long long)*count, (unsigned long long)*cd_size);
  return VLM_OK;
}

static vlm_status read_central(vlm_zip *z, uint64_t cd_off, uint64_t cd_size, uint64_t count) {
  const uint8_t *b = z->base;
  z->entries = calloc(count ? (size_t)count : 1, sizeof(vlm_zip_entry));
  if (!z->entries) return vlm_error(VLM_ERR_OOM, "%s: out of memory for %llu zip entries", z->path,
                                    (unsigned long long)count);
  uint64_t p = cd_off, end = cd_off + cd_size;
  for (uint64_t k = 0; k < count; k++) {
    if (end - p < 46 || rd32(b + p) != SIG_CENTRAL)
      return vlm_error(VLM_ERR_FORMAT, "%s: zip central directory entry %llu (offset %llu) is damaged", z->path,
                       (unsigned long long)k, (unsigned long long)p);
    const uint8_t *h = b + p;
    size_t nl = rd16(h + 28), xl = rd16(h + 30), cl = rd16(h + 32);
    if (end - p - 46 < nl + xl + cl)
      return vlm_error(VLM_ERR_FORMAT, "%s: zip central directory entry %llu runs past the directory", z->path,
                       (unsigned long long)k);
    const char *nm = (const char *)h + 46;
    vlm_zip_entry *e = &z->entries[z->n];
    if (!(e->name = malloc(nl + 1))) return vlm_error(VLM_ERR_OOM, "%s: out of memory", z->path);
    memcpy(e->name, nm, nl);
    e->name[nl] = 0;
    z->n++;
    const char *why = bad_name(nm, nl);
    if (why) return vlm_error(VLM_ERR_FORMAT, "%s: zip entry %llu: its name " NM " %s", z->path,
                              (unsigned long long)k, NMARG(e->name), why);
    e->flags = rd16(h + 8);
    e->method = rd16(h + 10);
    e->crc = rd32(h + 16);
    e->size = rd32(h + 20);
    e->usize = rd32(h + 24);
    e->header = rd32(h + 42);
    if (rd16(h + 34) != 0 && rd16(h + 34) != 0xffff)
      return vlm_error(VLM_ERR_FORMAT, "%s: zip entry " NM " is on another disk", z->path, NMARG(e->name));
    vlm_status s = zip64_extra(z, e->name, h + 46 + nl, xl, &e->usize, &e->size, &e->header,
                               e->usize == 0xffffffffu, e->size == 0xffffffffu, e->header == 0xffffffffu);
    if (s != VLM_OK) return s;
    p += 46 + nl + xl + cl;
  }
  return VLM_OK;
}

/* Local headers: where each entry's data starts; data before the central directory, no overlaps. */
static vlm_status check_local(vlm_zip *z, uint64_t cd_off) {
  const uint8_t *b = z->base;
  int *order = malloc((size_t)(z->n ? z->n : 1) * sizeof(int));
  if (!order) return vlm_error(VLM_ERR_OOM, "%s: out of memory", z->path);
  for (int i = 0; i < z->n; i++) order[i] = i;
  qsort_r(order, (size_t)z->n, sizeof(int), cmp_header, z);
  vlm_status s = VLM_OK;
  uint64_t prev_end = 0;
  const char *prev = NULL;
  for (int k = 0; k < z->n && s == VLM_OK; k++) {
    vlm_zip_entry *e = &z->entries[order[k]];
    uint64_t h = e->header;
    if (h > cd_off || cd_off - h < 30 || rd32(b + h) != SIG_LOCAL) {
      s = vlm_error(VLM_ERR_FORMAT, "%s: zip entry " NM ": no local header at offset %llu", z->path, NMARG(e->name),
                    (unsigned long long)h);
      break;
    }
    if (prev && h < prev_end) {
      s = vlm_error(VLM_ERR_FORMAT, "%s: zip entries " NM " and " NM " overlap", z->path, NMARG(prev),
                    NMARG(e->name));
      break;
    }
    size_t nl = rd16(b + h + 26), xl = rd16(b + h + 28);
    size_t want = strlen(e->name);
    if (cd_off - h - 30 < nl + xl || nl != want || memcmp(b + h + 30, e->name, nl)) {
      s = vlm_error(VLM_ERR_FORMAT, "%s: zip entry " NM ": its local header does not match the central directory",
                    z->path, NMARG(e->name));
      break;
    }
    e->offset = h + 30 + nl + xl;
    if (e->size > cd_off - e->offset) {
      s = vlm_error(VLM_ERR_FORMAT, "%s: zip entry " NM ": %llu bytes at offset %llu run past the data (truncated?)",
                    z->path, NMARG(e->name), (unsigned long long)e->size, (unsigned long long)e->offset);
      break;
    }
    prev_end = e->offset + e->size;
    prev = e->name;
  }
  free(order);
  return s;
}

vlm_status vlm_zip_open(vlm_zip *z, const char *path, const uint8_t *base, uint64_t size) {
  memset(z, 0, sizeof *z);
  z->path = path;
  z->base = base;
  z->size = size;
  uint64_t cd_off = 0, cd_size = 0, count = 0, cd_end = 0;
  vlm_status s = find_end(z, &cd_off, &cd_size, &count, &cd_end);
  if (s == VLM_OK) s = read_central(z, cd_off, cd_size, count);
  if (s == VLM_OK) s = check_local(z, cd_off);
  if (s == VLM_OK && !(z->sorted = malloc((size_t)(z->n ? z->n : 1) * sizeof(int))))
    s = vlm_error(VLM_ERR_OOM, "%s: out of memory", path);
  if (s == VLM_OK) {
    for (int i = 0; i < z->n; i++) z->sorted[i] = i;
    qsort_r(z->sorted, (size_t)z->n, sizeof(int), cmp_name_idx, z);
    for (int i = 1; i < z->n && s == VLM_OK; i++)
      if (!strcmp(z->entries[z->sorted[i - 1]].name, z->entries[z->sorted[i]].name))
        s = vlm_error(VLM_ERR_FORMAT, "%s: zip entry " NM " appears twice", path,
                      NMARG(z->entries[z->sorted[i]].name));
  }
  if (s != VLM_OK) vlm_zip_close(z);
  return s;
}

void vlm_zip_close(vlm_zip *z) {
  if (!z) return;
  for (int i = 0; i < z->n; i++) free(z->entries[i].name);
  free(z->entries);
  free(z->sorted);
  memset(z, 0, sizeof *z);
}

const vlm_zip_entry *vlm_zip_find(const vlm_zip *z, const char *name) {
  int lo = 0, hi = z->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    const vlm_zip_entry *e = &z->entries[z->sorted[mid]];
    int c = strcmp(e->name, name);
    if (!c) return e;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

vlm_status vlm_zip_data(const vlm_zip *z, const vlm_zip_entry *e, const uint8_t **data) {
  if (e->flags & 1)
    return vlm_error(VLM_ERR_UNSUPPORTED, "%s: zip entry " NM " is encrypted", z->path, NMARG(e->name));
  if (e->method != 0)
    return vlm_error(VLM_ERR_UNSUPPORTED,
                     "%s: zip entry " NM " is compressed (method %d); torch.save stores entries uncompressed: "
                     "re-save the file with torch.save instead of re-zipping it", z->path, NMARG(e->name), e->method);
  if (e->usize != e->size)
    return vlm_error(VLM_ERR_FORMAT, "%s: zip entry " NM " is stored but its sizes differ (%llu and %llu)", z->path,
                     NMARG(e->name), (unsigned long long)e->size, (unsigned long long)e->usize);
  uint32_t c = vlm_crc32(0, z->base + e->offset, (size_t)e->size);
  if (c != e->crc)
    return vlm_error(VLM_ERR_FORMAT, "%s: zip entry " NM ": CRC-32 mismatch (0x%08x, the archive says 0x%08x): "
                     "the file is damaged", z->path, NMARG(e->name), c, e->crc);
  *data = z->base + e->offset;
  return VLM_OK;
}
