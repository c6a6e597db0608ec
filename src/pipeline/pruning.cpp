#include "ziprerank/pruning.hpp"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <set>

#include "ziprerank/errors.hpp"

namespace ziprerank {

namespace {
// L2 normalisation of rows with the norm clamped at eps (as torch.nn.functional.normalize).
at::Tensor normalize_rows(const at::Tensor& x, double eps) {
  return x / x.norm(2, {-1}, /*keepdim=*/true).clamp_min(eps);
}
}  // namespace

int64_t kept_token_count(int64_t n, double keep_ratio) {
  // Python's round() rounds half to even; nearbyint does too in the default rounding mode.
  const auto k = static_cast<int64_t>(std::nearbyint(keep_ratio * static_cast<double>(n)));
  return std::max<int64_t>(1, std::min(k, n));
}

std::vector<at::Tensor> select_visual_tokens(const at::Tensor& text_embeds,
                                             const std::vector<at::Tensor>& image_embeds,
                                             double keep_ratio) {
  at::NoGradGuard no_grad;
  if (text_embeds.size(0) == 0)
    throw InputError("no text tokens before the first image to prune against");
  const at::Tensor text_n = normalize_rows(text_embeds.detach(), 1e-12);
  std::vector<at::Tensor> out;
  for (const at::Tensor& e : image_embeds) {
    const int64_t n = e.size(0);
    const int64_t k = kept_token_count(n, keep_ratio);
    const at::Tensor image_n = normalize_rows(e.detach(), 1e-12);
    // [T, N] similarities; each visual token keeps its best match over the text tokens.
    const at::Tensor best = std::get<0>(at::mm(text_n, image_n.t()).max(0));
    const at::Tensor top = std::get<1>(at::topk(best, k, 0));
    out.push_back(std::get<0>(at::sort(top)));
  }
  return out;
}

std::vector<int64_t> pruning_text_rows(const ModelConfig& c, const std::vector<int64_t>& ids,
                                       const PruningText& span) {
  // The requested rows before the first image, except vision markers and pads.
  auto is_visual = [&](int64_t t) { return t == c.image_token_id || t == c.video_token_id; };
  int64_t stop = 0;
  while (stop < static_cast<int64_t>(ids.size()) && !is_visual(ids[static_cast<size_t>(stop)]))
    ++stop;
  if (span.end >= 0) stop = std::min(stop, span.end);
  std::vector<int64_t> rows;
  for (int64_t i = std::max<int64_t>(0, span.begin); i < stop; ++i) {
    const int64_t t = ids[static_cast<size_t>(i)];
    if (t != c.vision_start_token_id && t != c.vision_end_token_id) rows.push_back(i);
  }
  return rows;
}

PruningText pruning_text(const ModelConfig& config, const PromptTokens& prompt) {
  if (config.qi_early_text_mode == "query") return {prompt.query_begin, prompt.query_end};
  if (config.qi_early_text_mode != "query_only") return {};
  // The reference's query_only: from just after the last newline token (Qwen's ids for "\n",
  // "\n\n", ...) before the first image up to that image; it refuses a prompt where that
  // newline is missing or within the first 10 tokens.
  static const std::set<int64_t> newlines{198, 271, 628, 1432, 720};
  const auto& ids = prompt.ids;
  size_t first_image = 0;
  while (first_image < ids.size() && ids[first_image] != config.image_token_id) ++first_image;
  for (size_t pos = first_image; pos-- > 0;) {
    if (!newlines.count(ids[pos])) continue;
    if (pos + 1 > 10) return {static_cast<int64_t>(pos + 1), -1};
    break;
  }
  throw InputError(
      "qi_early_text_mode query_only: no newline token after the first 10 tokens before the "
      "first image (the reference's marker); use all_before_image");
}

at::Tensor pruning_text_embeds(const Qwen3VLModel& model, const PromptTokens& prompt) {
  const ModelConfig& c = model.config();
  std::vector<int64_t> ids;
  for (int64_t r : pruning_text_rows(c, prompt.ids, pruning_text(c, prompt)))
    ids.push_back(prompt.ids[static_cast<size_t>(r)]);
  return model.embed(at::tensor(ids, at::kLong)).to(at::kFloat);
}

AssembledSequence assemble_sequence(const Qwen3VLModel& model, const std::vector<int64_t>& ids,
                                    const std::vector<ImageGrid>& grids,
                                    const VisionFeatures& vision, double keep_ratio,
                                    const PruningText& text_span) {
  const ModelConfig& c = model.config();
  const at::Tensor id_t = at::tensor(ids, at::kLong);
  const at::Tensor embeds = model.embed(id_t);                                         // [S, D]
  const at::Tensor positions = mrope_position_ids(ids, grids, c).to(embeds.device());  // [3, S]
  const auto dev = embeds.device();

  // Locate each image's run of pad tokens.
  std::vector<int64_t> starts;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == c.image_token_id && (i == 0 || ids[i - 1] != c.image_token_id)) {
      starts.push_back(static_cast<int64_t>(i));
    }
  }
  if (starts.size() != vision.tokens_per_image.size()) {
    throw InternalError("sequence has " + std::to_string(starts.size()) + " image runs for " +
                        std::to_string(vision.tokens_per_image.size()) + " encoded images");
  }
  std::vector<at::Tensor> per_image;
  int64_t off = 0;
  for (int64_t n : vision.tokens_per_image) {
    per_image.push_back(vision.embeds.narrow(0, off, n));
    off += n;
  }

  std::vector<at::Tensor> kept;  // indices into each image's tokens
  AssembledSequence out;
  out.visual_before = off;
  if (keep_ratio >= 1.0) {
    for (int64_t n : vision.tokens_per_image)
      kept.push_back(at::arange(n, at::TensorOptions().dtype(at::kLong).device(dev)));
  } else {
    const std::vector<int64_t> text_rows = pruning_text_rows(c, ids, text_span);
    const at::Tensor text = embeds.index_select(0, at::tensor(text_rows, at::kLong).to(dev));
    kept = select_visual_tokens(text, per_image, keep_ratio);
  }

  // New order: text rows keep their place; each image run is replaced by its kept tokens.
  std::vector<int64_t> rows;        // source rows in the original sequence
  std::vector<int64_t> visual_src;  // global visual-token index of each kept token
  rows.reserve(ids.size());
  size_t image = 0;
  int64_t visual_base = 0;
  for (size_t i = 0; i < ids.size();) {
    if (image < starts.size() && static_cast<int64_t>(i) == starts[image]) {
      const at::Tensor k = kept[image].to(at::kCPU);
      const auto* kp = k.data_ptr<int64_t>();
      for (int64_t j = 0; j < k.numel(); ++j) {
        rows.push_back(starts[image] + kp[j]);
        visual_src.push_back(visual_base + kp[j]);
      }
      out.kept_per_image.push_back(k.numel());
      i += static_cast<size_t>(vision.tokens_per_image[image]);
      visual_base += vision.tokens_per_image[image];
      ++image;
    } else {
      rows.push_back(static_cast<int64_t>(i));
      ++i;
    }
  }
  out.visual_after = static_cast<int64_t>(visual_src.size());
  const at::Tensor row_t = at::tensor(rows, at::kLong).to(dev);
  const at::Tensor vis_t = at::tensor(visual_src, at::kLong).to(dev);
  const at::Tensor new_ids = id_t.to(dev).index_select(0, row_t);
  const at::Tensor visual_mask = new_ids.eq(c.image_token_id);

  at::Tensor x = embeds.index_select(0, row_t);
  const at::Tensor vis_embeds = vision.embeds.index_select(0, vis_t).to(x.scalar_type());
  x = x.index_put({visual_mask}, vis_embeds);

  out.input.embeds = x.unsqueeze(0);
  out.input.position_ids = positions.index_select(1, row_t).unsqueeze(1);
  out.input.visual_mask = visual_mask.unsqueeze(0);
  for (const at::Tensor& d : vision.deepstack)
    out.input.deepstack.push_back(d.index_select(0, vis_t));
  return out;
}

}  // namespace ziprerank
