#include "train/optimizer.hpp"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>

namespace ziprerank::train {

void AdamW::add(const std::string& name, const at::Tensor& value, double weight_decay) {
  Param p;
  p.name = name;
  p.value = value;
  p.weight_decay = weight_decay;
  params_.push_back(std::move(p));
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  for (Param& p : params_) {
    const at::Tensor& grad = p.value.grad();
    if (!grad.defined()) continue;
    if (!p.exp_avg.defined()) {
      p.exp_avg = at::zeros_like(p.value, at::MemoryFormat::Preserve);
      p.exp_avg_sq = at::zeros_like(p.value, at::MemoryFormat::Preserve);
    }
    ++p.steps;
    // Decoupled weight decay; a factor of exactly 1 would change nothing, so it is skipped.
    if (p.weight_decay != 0.0) p.value.mul_(1.0 - lr * p.weight_decay);
    p.exp_avg.mul_(beta1_).add_(grad, 1.0 - beta1_);
    p.exp_avg_sq.mul_(beta2_).addcmul_(grad, grad, 1.0 - beta2_);
    const double t = static_cast<double>(p.steps);
    const double bias_correction1 = 1.0 - std::pow(beta1_, t);
    const double bias_correction2 = 1.0 - std::pow(beta2_, t);
    const double step_size = lr / bias_correction1;
    const at::Tensor denom = (p.exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(eps_);
    p.value.addcdiv_(p.exp_avg, denom, -step_size);
  }
}

double AdamW::clip_grad_norm(double max_norm) {
  at::NoGradGuard no_grad;
  double sq = 0;
  for (Param& p : params_) {
    const at::Tensor& grad = p.value.grad();
    if (grad.defined()) sq += grad.to(at::kDouble).pow(2).sum().item<double>();
  }
  const double norm = std::sqrt(sq);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    for (Param& p : params_) {
      if (p.value.grad().defined()) p.value.mutable_grad().mul_(coef);
    }
  }
  return norm;
}

void AdamW::zero_grad() {
  for (Param& p : params_) p.value.mutable_grad().reset();
}

}  // namespace ziprerank::train
