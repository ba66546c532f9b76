/* Kernel scratch memory: per calling thread, a few slots that grow to the
 * largest request seen and are then reused, so steady-state training and
 * inference allocate nothing per op call.
 *
 * A thread's slots are freed when it exits: the first allocation registers the
 * thread's slot array under a pthread key whose destructor frees them (threads
 * of an application that calls libvlm come and go; each used to leave its
 * buffers behind). The process's own long-lived threads (the main thread,
 * OpenMP's workers) keep theirs until the process ends, as before. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/core.h"

typedef struct { void *p; size_t cap; } slot;
static _Thread_local slot tl_slots[VLM_SCRATCH_SLOTS];

static atomic_long g_live;   /* live per-thread kernel buffers, all threads (vlm_scratch_live) */

void vlm_scratch_count(long delta) { atomic_fetch_add(&g_live, delta); }
long vlm_scratch_live(void) { return atomic_load(&g_live); }

static void free_slots(slot *s) {
  for (int i = 0; i < VLM_SCRATCH_SLOTS; i++) {
    if (s[i].p) vlm_scratch_count(-1);
    free(s[i].p);
    s[i].p = NULL;
    s[i].cap = 0;
  }
}

static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static void thread_exit(void *slots) { free_slots(slots); }
static void key_init(void) { VLM_CHECK(pthread_key_create(&g_key, thread_exit) == 0, "scratch: pthread_key_create failed"); }

/* Called when this thread allocates: makes sure its slots are freed at its exit
 * (again after a destructor ran, should the thread use scratch in a later one). */
static void register_thread(void) {
  pthread_once(&g_key_once, key_init);
  if (!pthread_getspecific(g_key))
    VLM_CHECK(pthread_setspecific(g_key, tl_slots) == 0, "scratch: pthread_setspecific failed");
}

void *vlm_scratch(int s, size_t bytes) {
  VLM_CHECK(s >= 0 && s < VLM_SCRATCH_SLOTS, "scratch slot %d", s);
  slot *b = &tl_slots[s];
  if (bytes > b->cap) {
    size_t cap = (bytes + 4095) & ~(size_t)4095;
    register_thread();
    if (!b->p) vlm_scratch_count(1);
    free(b->p);
    b->p = aligned_alloc(VLM_ARENA_ALIGN, cap);
    VLM_CHECK(b->p, "out of memory for %zu bytes of kernel scratch", cap);
    b->cap = cap;
  }
  return b->p;
}

void vlm_scratch_release(void) { free_slots(tl_slots); }
