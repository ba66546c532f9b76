/* Kernel scratch memory: per calling thread, a few slots that grow to the
 * largest request seen and are then reused, so steady-state training and
 * inference allocate nothing per op call. */
#include <stdlib.h>

#include "core/core.h"

typedef struct { void *p; size_t cap; } slot;
static _Thread_local slot tl_slots[VLM_SCRATCH_SLOTS];

void *vlm_scratch(int s, size_t bytes) {
  VLM_CHECK(s >= 0 && s < VLM_SCRATCH_SLOTS, "scratch slot %d", s);
  slot *b = &tl_slots[s];
  if (bytes > b->cap) {
    size_t cap = (bytes + 4095) & ~(size_t)4095;
    free(b->p);
    b->p = aligned_alloc(VLM_ARENA_ALIGN, cap);
    VLM_CHECK(b->p, "out of memory for %zu bytes of kernel scratch", cap);
    b->cap = cap;
  }
  return b->p;
}

void vlm_scratch_release(void) {
  for (int s = 0; s < VLM_SCRATCH_SLOTS; s++) {
    free(tl_slots[s].p);
    tl_slots[s].p = NULL;
    tl_slots[s].cap = 0;
  }
}
