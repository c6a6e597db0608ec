#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "ziprerank/errors.hpp"
#include "ziprerank/train.hpp"

namespace ziprerank {

at::Tensor rank_net(const at::Tensor& y_pred, const at::Tensor& y_true, bool weighted) {
  const int64_t n = y_pred.numel();
  if (y_true.numel() != n) throw InternalError("rank_net: predictions and labels differ in length");
  const at::Tensor truth = y_true.detach().to(at::kCPU, at::kDouble).contiguous();
  const double* t = truth.data_ptr<double>();

  // 1-based ranks in the descending sort of y_true; a stable sort keeps tied items in index order.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return t[a] > t[b]; });
  std::vector<int64_t> rank(n);
  for (int64_t k = 0; k < n; ++k) rank[order[k]] = k + 1;

  // Ordered pairs the reference keeps: y_true[i] - y_true[j] > 0 and finite.
  std::vector<int64_t> first, second;
  std::vector<double> weight;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const double d = t[i] - t[j];
      if (!(d > 0) || std::isinf(d)) continue;
      first.push_back(i);
      second.push_back(j);
      weight.push_back(1.0 / static_cast<double>(rank[i] + rank[j]));
    }
  }
  const auto dev = y_pred.device();
  const at::Tensor pred = y_pred.reshape({-1});
  if (first.empty()) return at::full({}, std::numeric_limits<double>::quiet_NaN(), pred.options());
  const auto idx = at::TensorOptions().dtype(at::kLong);
  const at::Tensor diffs = pred.index_select(0, at::tensor(first, idx).to(dev)) -
                           pred.index_select(0, at::tensor(second, idx).to(dev));
  const at::Tensor target = at::ones_like(diffs);
  const at::Tensor w =
      weighted
          ? at::tensor(weight, at::TensorOptions().dtype(at::kDouble)).to(dev, diffs.scalar_type())
          : at::Tensor();
  return at::binary_cross_entropy_with_logits(diffs, target, w, /*pos_weight=*/{},
                                              at::Reduction::Mean);
}

at::Tensor ranknet_loss(const at::Tensor& scores, const std::vector<int64_t>& rank_of) {
  const int64_t n = scores.numel();
  if (static_cast<int64_t>(rank_of.size()) != n)
    throw InternalError("ranknet_loss: one rank per score needed");
  // The model's own scores, sorted, reassigned in the teacher's order: only the order of y_true
  // matters to the loss, and this keeps its scale the model's.
  const at::Tensor sorted =
      std::get<0>(scores.detach().reshape({-1}).sort(/*dim=*/0, /*descending=*/true));
  const at::Tensor y_true = sorted.index_select(
      0, at::tensor(rank_of, at::TensorOptions().dtype(at::kLong)).to(scores.device()));
  return rank_net(scores.reshape({-1}), y_true, /*weighted=*/true);
}

std::vector<double> soft_ranking_target(int64_t n, const std::vector<int64_t>& ranking,
                                        const std::vector<int64_t>& gt, double decay,
                                        const std::vector<bool>& valid) {
  auto ok = [&](int64_t i) { return i >= 0 && i < n && (valid.empty() || valid[i]); };
  std::vector<int64_t> order;
  for (int64_t g : gt) {
    if (ok(g)) order.push_back(g);
  }
  for (int64_t c : ranking) {
    if (ok(c) && std::find(gt.begin(), gt.end(), c) == gt.end()) order.push_back(c);
  }
  std::vector<double> p(n, 0.0);
  // A later position of the same candidate overwrites an earlier one, as the reference's
  // assignment into its weight vector does.
  for (size_t pos = 0; pos < order.size(); ++pos)
    p[order[pos]] = std::pow(decay, static_cast<double>(pos));
  const double sum = std::accumulate(p.begin(), p.end(), 0.0);
  if (sum < 1e-10) return std::vector<double>(n, 0.0);
  for (double& v : p) v /= sum;
  return p;
}

at::Tensor soft_ranking_loss(const at::Tensor& scores, const std::vector<int64_t>& ranking,
                             const std::vector<int64_t>& gt, double decay) {
  const at::Tensor s = scores.reshape({-1});
  const int64_t n = s.numel();
  const at::Tensor finite = s.detach().isinf().logical_not().to(at::kCPU).contiguous();
  std::vector<bool> valid(n);
  std::vector<int64_t> valid_rows;
  for (int64_t i = 0; i < n; ++i) {
    valid[i] = finite.data_ptr<bool>()[i];
    if (valid[i]) valid_rows.push_back(i);
  }
  const std::vector<double> p = soft_ranking_target(n, ranking, gt, decay, valid);
  std::vector<double> target;
  for (int64_t i : valid_rows) target.push_back(p[i]);
  const double mass = std::accumulate(target.begin(), target.end(), 0.0);
  if (valid_rows.empty() || mass == 0.0) return at::zeros({}, s.options());
  const at::Tensor v = s.index_select(
      0, at::tensor(valid_rows, at::TensorOptions().dtype(at::kLong)).to(s.device()));
  const at::Tensor q =
      at::tensor(target, at::TensorOptions().dtype(at::kDouble)).to(s.device(), v.scalar_type());
  return -(q * at::log_softmax(v, 0)).sum();
}

double top1_agreement(const at::Tensor& scores, const std::vector<int64_t>& ranking,
                      const std::vector<int64_t>& gt) {
  const at::Tensor s = scores.detach().reshape({-1}).to(at::kCPU, at::kDouble).contiguous();
  const int64_t n = s.numel();
  int64_t best = -1;
  for (int64_t g : gt) {
    if (g >= 0 && g < n) {
      best = g;
      break;
    }
  }
  if (best < 0 && !ranking.empty() && ranking[0] >= 0 && ranking[0] < n) best = ranking[0];
  if (best < 0) return NAN;
  const double* v = s.data_ptr<double>();
  int64_t top = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (v[i] > v[top]) top = i;
  }
  return top == best ? 1.0 : 0.0;
}

at::Tensor token_nll_sum(const at::Tensor& logits, const at::Tensor& targets) {
  const at::Tensor logp = at::log_softmax(logits.to(at::kFloat), -1);
  return -logp.gather(1, targets.to(logits.device()).reshape({-1, 1})).sum();
}

double cosine_with_warmup(int64_t step, int64_t warmup_steps, int64_t total_steps,
                          double num_cycles) {
  if (step < warmup_steps) {
    return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  }
  const double progress = static_cast<double>(step - warmup_steps) /
                          static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  constexpr double kPi = 3.14159265358979323846;
  return std::max(0.0, 0.5 * (1.0 + std::cos(kPi * num_cycles * 2.0 * progress)));
}

}  // namespace ziprerank
