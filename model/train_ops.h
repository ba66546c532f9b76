/* The model interface of the trainer (model/train.c): what the shared training
 * loop, checkpoints and resume need from a model. Implemented for CLIP and CoCa
 * in model/train.c. */
#ifndef VLM_MODEL_TRAIN_OPS_H
#define VLM_MODEL_TRAIN_OPS_H
#include "model/model.h"

enum { VLM_SET_PARAMS = 0, VLM_SET_GRADS = 1, VLM_SET_EXP_AVG = 2, VLM_SET_EXP_AVG_SQ = 3 };

struct vlm_train_ops {
  const char *name;
  /* Every tensor of one set (params, grads, exp_avg, exp_avg_sq) under its open_clip
   * name, in the same fixed order for every set. */
  void (*visit)(vlm_trainer *tr, int set, vlm_param_visit_fn fn, void *ctx);
  /* Forward + loss + backward of K*B samples, gradients accumulated into the (zeroed)
   * gradient set; returns the loss as open_clip logs it. */
  float (*forward_backward)(vlm_trainer *tr, const vlm_tensor *images, const vlm_tensor *ids);
  /* open_clip_config.json + open_clip_model.safetensors into an existing dir. */
  vlm_status (*save_dir)(vlm_trainer *tr, const char *dir);
  /* The weights from a safetensors file (open_clip names). */
  vlm_status (*load_weights)(vlm_trainer *tr, const char *path);
  void (*free)(vlm_trainer *tr);
};
#endif
