/* The plumbing around a stack of pre-LN blocks (core/core.h's vlm_block_*) that the towers
 * (vision/vit.c, text/encoder.c) and the CoCa heads share: the per-layer arrays, the layout of
 * the blocks' activations, and parameter names under a prefix. */
#ifndef VLM_CORE_BLOCK_STACK_H
#define VLM_CORE_BLOCK_STACK_H
#include "core/core.h"

/* calloc of max(layers, 1) elements of size bytes each: NULL when out of memory. */
void *vlm_layers_calloc(int64_t layers, size_t size);
/* fn(ctx, PREFIX SUFFIX, t): one parameter under its full name. */
void vlm_param_visit_named(vlm_param_visit_fn fn, void *ctx, const char *prefix, const char *suffix, vlm_tensor *t);
/* Blocks 0..layers-1 under PREFIX "transformer.resblocks.I." (open_clip's names). */
void vlm_block_stack_params_visit(vlm_block_params *p, int64_t layers, const char *prefix, vlm_param_visit_fn fn,
                                  void *ctx);
/* The activations of `layers` blocks over [B, L] rows: one set a block for training
 * (with_backward); for inference one forward-only set, s[0], that every layer reuses. */
void vlm_block_stack_acts_layout(vlm_block_acts *s, vlm_arena *a, const vlm_block_config *c, int64_t layers,
                                 int64_t B, int64_t L, int with_backward);
#endif
