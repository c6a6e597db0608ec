// AdamW with float32 state, updating parameters in place from their accumulated gradients.
// Private to the library.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace ziprerank::train {

/// torch.optim.AdamW (single-tensor path, no amsgrad) step for step, so that a run can be
/// compared with PyTorch's; the reference's 8-bit AdamW (bitsandbytes) is not reproduced.
class AdamW {
 public:
  struct Param {
    std::string name;
    at::Tensor value;  ///< the model's parameter (a leaf that requires grad)
    double weight_decay = 0;
    at::Tensor exp_avg, exp_avg_sq;  ///< undefined until the first update
    int64_t steps = 0;
  };

  AdamW(double beta1, double beta2, double eps) : beta1_(beta1), beta2_(beta2), eps_(eps) {}

  void add(const std::string& name, const at::Tensor& value, double weight_decay);
  /// One update at learning rate `lr`. A parameter without a gradient is left alone and its
  /// step count does not advance, as in PyTorch.
  void step(double lr);
  /// torch.nn.utils.clip_grad_norm_: scales every gradient by max_norm / (total L2 norm + 1e-6)
  /// when the total norm exceeds max_norm. Returns the total norm before clipping.
  double clip_grad_norm(double max_norm);
  /// Drops the gradients (PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();

  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }

 private:
  double beta1_, beta2_, eps_;
  std::vector<Param> params_;
};

}  // namespace ziprerank::train
