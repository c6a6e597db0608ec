// One training (or held-out) sample, in stages: gather the candidates' visual inputs (pages,
// crops, cached features or text stand-ins), the vision features, the sequence and its forward
// pass, the ranking losses, and the gradient of their weighted sum.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>

#include "core/splitmix64.hpp"
#include "train/data.hpp"
#include "train/grounding.hpp"
#include "train/trainer_internal.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/prompt.hpp"
#include "ziprerank/pruning.hpp"
#include "ziprerank/train.hpp"
#include "ziprerank/vision_cache.hpp"

namespace ziprerank {

using detail::SplitMix64;

namespace {

// A random `side` x `side` window of `img` (at its input scale), placed around a random word when
// the page has any (margins teach nothing), else anywhere; `cropped` gets the words whose centre
// it holds, in the window's pixels.
Image crop_near_word(const Image& img, const std::vector<train::PlacedWord>* words, SplitMix64& rng,
                     int side, std::vector<train::PlacedWord>* cropped) {
  const int cw = std::min(side, img.width), ch = std::min(side, img.height);
  int x0 = static_cast<int>(rng.below(static_cast<uint64_t>(img.width - cw + 1)));
  int y0 = static_cast<int>(rng.below(static_cast<uint64_t>(img.height - ch + 1)));
  if (words && !words->empty()) {
    const train::PlacedWord& w = (*words)[rng.below(words->size())];
    x0 = std::clamp(static_cast<int>(w.cx) - cw / 4 - static_cast<int>(rng.below(cw / 2 + 1)), 0,
                    img.width - cw);
    y0 = std::clamp(static_cast<int>(w.cy) - ch / 4 - static_cast<int>(rng.below(ch / 2 + 1)), 0,
                    img.height - ch);
  }
  if (words) {
    for (const train::PlacedWord& w : *words) {
      if (w.cx >= x0 && w.cx < x0 + cw && w.cy >= y0 && w.cy < y0 + ch)
        cropped->push_back({w.text, w.cx - x0, w.cy - y0});
    }
  }
  return crop_image(img, x0, y0, cw, ch);
}

}  // namespace

struct Trainer::SampleInputs {
  std::vector<at::Tensor> pixels;  ///< per image, when the tower runs in this step
  std::vector<ImageGrid> grids;
  std::vector<int64_t> tokens_per_image;
  train::GroundingTargets grounding;
  std::vector<std::shared_ptr<const EncodedPage>> cached_pages;  ///< with a vision cache
  std::vector<int64_t> text_grid_ids;  ///< --text-candidates: the token shown at each grid cell
};

void Trainer::gather_text_candidates(const train::TrainExample& ex, SampleInputs& in) {
  const ModelConfig& c = model_->config();
  const int64_t merge = folder_.preprocessor.merge_size;
  const int64_t patch = folder_.preprocessor.patch_size;
  if (options_.stage == 2) {
    // Each page's words (from its words.json) on the grid its pixels would get.
    for (const PageRef& page : ex.pages) {
      // A page's words and size never change: decode and lay it out once per run.
      auto it = text_pages_.find(page.path);
      if (it == text_pages_.end()) {
        const std::vector<train::PlacedWord>* words = page_words_->find(page.path);
        if (!words) {
          throw InputError(ex.origin + ": --text-candidates needs the words.json sidecar beside '" +
                           page.path + "'");
        }
        const Image img = page_preresize(load_page(page));
        const ResizedSize rs =
            smart_resize(img.height, img.width, patch * merge, folder_.preprocessor.min_pixels,
                         folder_.preprocessor.max_pixels);
        const std::array<int64_t, 3> thw{1, rs.height / patch, rs.width / patch};
        TextPage laid{ImageGrid{thw[0], thw[1], thw[2]},
                      train::words_on_grid(*words, img.width, img.height, thw, patch, merge,
                                           *tokenizer_, c.pad_token_id)};
        it = text_pages_.emplace(page.path, std::move(laid)).first;
      }
      const TextPage& laid = it->second;
      in.text_grid_ids.insert(in.text_grid_ids.end(), laid.ids.begin(), laid.ids.end());
      in.grids.push_back(laid.grid);
      in.tokens_per_image.push_back(static_cast<int64_t>(laid.ids.size()));
    }
    return;
  }
  const ResizedSize rs =
      smart_resize(options_.render.size, options_.render.size, patch * merge,
                   folder_.preprocessor.min_pixels, folder_.preprocessor.max_pixels);
  const ImageGrid grid{1, rs.height / patch, rs.width / patch};
  const int64_t cells = grid.num_tokens(merge);
  for (const std::string& passage : ex.passages) {
    std::vector<int64_t> ids = tokenizer_->encode(" " + passage);
    ids.resize(static_cast<size_t>(cells), c.pad_token_id);
    in.text_grid_ids.insert(in.text_grid_ids.end(), ids.begin(), ids.end());
    in.grids.push_back(grid);
    in.tokens_per_image.push_back(cells);
  }
}

void Trainer::gather_cached_page(const train::TrainExample& ex, size_t i, SampleInputs& in) {
  // A frozen tower gives a page the same features every time: encode it once.
  const std::string key =
      options_.stage == 1 ? "passage\n" + ex.passages[i] : "page\n" + ex.pages[i].path;
  std::shared_ptr<const EncodedPage> page = vision_cache_->get(key);
  if (!page) {
    const Image img =
        options_.stage == 1 ? render_cache_->get(ex.passages[i]) : load_page(ex.pages[i]);
    const PreprocessedImage pre = preprocess_image(img, folder_.preprocessor, options_.stage == 2);
    auto encoded = std::make_shared<EncodedPage>();
    encoded->grid = ImageGrid{pre.grid_thw[0], pre.grid_thw[1], pre.grid_thw[2]};
    at::NoGradGuard no_grad;
    encoded->features = model_->encode_images(pre.pixel_values, {encoded->grid});
    page = encoded;
    vision_cache_->put(key, page);
  }
  in.cached_pages.push_back(page);
  in.grids.push_back(page->grid);
  in.tokens_per_image.push_back(page->features.embeds.size(0));
}

void Trainer::gather_images(const train::TrainExample& ex, bool backward, SampleInputs& in) {
  const bool align = options_.align_weight > 0;
  int64_t token_offset = 0;
  for (size_t i = 0; i < ex.size(); ++i) {
    if (vision_cache_) {
      gather_cached_page(ex, i, in);
      continue;
    }
    // Stage-1 passages are drawn at 280x280, below the 1024 pre-resize bound anyway.
    Image img = options_.stage == 1 ? render_cache_->get(ex.passages[i]) : load_page(ex.pages[i]);
    std::vector<train::PlacedWord> cropped_words;
    bool cropped = false;
    if (options_.align_crop > 0) {
      // Drawn from (seed, step, page): a resumed run cuts the same windows; a held-out
      // measurement (no backward pass) cuts the same ones at every step.
      const uint64_t page_hash = std::hash<std::string>{}(ex.pages[i].path);
      const uint64_t round = backward ? static_cast<uint64_t>(step_ + 1) : 0;
      SplitMix64 rng{options_.seed ^ (0xA24BAED4963EE407ull * round) ^ page_hash};
      img = crop_near_word(img, page_words_->find(ex.pages[i].path), rng, options_.align_crop,
                           &cropped_words);
      cropped = true;
    }
    const PreprocessedImage pre = preprocess_image(img, folder_.preprocessor, options_.stage == 2);
    in.pixels.push_back(pre.pixel_values);
    in.grids.push_back(ImageGrid{pre.grid_thw[0], pre.grid_thw[1], pre.grid_thw[2]});
    in.tokens_per_image.push_back(pre.num_tokens());
    if (align) {
      std::vector<train::PlacedWord> passage;
      const std::vector<train::PlacedWord>* words = nullptr;
      if (options_.stage == 1) {
        passage = train::passage_words(ex.passages[i], options_.render);
        words = &passage;
      } else {
        words = cropped ? &cropped_words : page_words_->find(ex.pages[i].path);
        if (!words && !warned_no_words_) {
          spdlog::warn("{}: no words.json beside '{}': its pages get no grounding loss", ex.origin,
                       ex.pages[i].path);
          warned_no_words_ = true;
        }
      }
      if (words) {
        train::add_grounding_targets(*words, img.width, img.height, pre.grid_thw,
                                     folder_.preprocessor.patch_size, pre.merge_size, token_offset,
                                     *word_pieces_, &in.grounding);
      }
    }
    token_offset += pre.num_tokens();
  }
}

VisionFeatures Trainer::vision_features(const SampleInputs& in, bool backward) {
  VisionFeatures vision;
  if (options_.text_candidates) {
    // Word embedding plus the <|image_pad|> embedding: what the token shows, and that it sits on
    // a page (visual tokens differ from the query's text tokens, as real visual tokens do).
    const ModelConfig& c = model_->config();
    vision.embeds = model_->embed(at::tensor(in.text_grid_ids, at::kLong)) +
                    model_->embed(at::tensor(std::vector<int64_t>{c.image_token_id}, at::kLong));
    vision.tokens_per_image = in.tokens_per_image;
  } else if (vision_cache_) {
    std::vector<const VisionFeatures*> pages;
    for (const auto& page : in.cached_pages) pages.push_back(&page->features);
    vision = concat_vision_features(pages);
  } else {
    // A frozen tower needs no graph: its activations would only cost memory.
    c10::AutoGradMode grad_mode(!options_.freeze_vision && backward);
    vision = model_->encode_images(at::cat(in.pixels, 0), in.grids);
  }
  return vision;
}

at::Tensor Trainer::candidate_relevance_loss(const train::TrainExample& ex,
                                             const at::Tensor& hidden, const PromptTokens& prompt,
                                             const std::vector<int64_t>& ids,
                                             const AssembledSequence& seq,
                                             const std::vector<int64_t>& tokens_per_image,
                                             SampleResult& r) {
  // Each candidate's score pools (log-sum-exp) the relevance read at each of its kept visual
  // tokens and at its <|vision_end|>, with every token pruned from earlier images removed:
  // a token that shows a query word can carry the signal without the model first learning to
  // gather an image into one position.
  const ModelConfig& c = model_->config();
  const at::Tensor own = at::tensor(std::vector<int64_t>{c.vision_end_token_id}, at::kLong);
  const at::Tensor token_scores =
      model_->logits(hidden.select(0, 0), own.to(hidden.device())).to(at::kFloat).reshape({-1});
  std::vector<at::Tensor> pooled;
  int64_t removed = 0;
  for (size_t k = 0; k < tokens_per_image.size(); ++k) {
    if (ids[static_cast<size_t>(prompt.image_starts[k] + tokens_per_image[k])] !=
        c.vision_end_token_id) {
      throw InternalError("the prompt has no <|vision_end|> after image " + std::to_string(k));
    }
    const int64_t kept = seq.kept_per_image.empty() ? tokens_per_image[k] : seq.kept_per_image[k];
    const int64_t first = prompt.image_starts[k] - removed;
    pooled.push_back(at::logsumexp(token_scores.narrow(0, first, kept + 1), 0));
    removed += tokens_per_image[k] - kept;
  }
  const at::Tensor cand_scores = at::stack(pooled);
  const at::Tensor loss =
      options_.stage == 1 ? ranknet_loss(cand_scores, train::rank_positions(ex.ranking))
                          : soft_ranking_loss(cand_scores, ex.ranking, ex.gt, options_.soft_decay);
  r.candidate = loss.item<double>();
  r.candidate_top1 =
      top1_agreement(cand_scores, ex.ranking, options_.stage == 2 ? ex.gt : std::vector<int64_t>{});
  if (spdlog::should_log(spdlog::level::trace)) {
    const at::Tensor cs = cand_scores.detach().cpu();
    std::string text;
    for (int64_t k = 0; k < cs.numel(); ++k) text += fmt::format(" {:.4f}", cs[k].item<double>());
    spdlog::trace("{}: candidate scores{}, loss {:.4f}", ex.origin, text, r.candidate);
  }
  return loss;
}

Trainer::SampleResult Trainer::run_sample(const Prepared& p, int64_t batch_tokens,
                                          int64_t batch_samples, bool backward) {
  const train::TrainExample& ex = p.example;
  const ModelConfig& c = model_->config();
  SampleResult r;
  auto t0 = Clock::now();
  SampleInputs in;
  try {
    if (options_.text_candidates) {
      gather_text_candidates(ex, in);
    } else {
      gather_images(ex, backward, in);
    }
  } catch (const InputError& e) {
    // (--text-candidates' own errors already name the sample)
    if (options_.text_candidates) throw;
    throw InputError(ex.origin + ": " + e.what());
  }
  const PromptTokens prompt = build_ranking_prompt(*tokenizer_, c, ex.query, in.tokens_per_image);
  const int64_t source_len = static_cast<int64_t>(prompt.ids.size());
  std::vector<int64_t> ids = prompt.ids;
  ids.insert(ids.end(), p.target_ids.begin(), p.target_ids.end());

  r.data_s = seconds_since(t0);
  t0 = Clock::now();
  const VisionFeatures vision = vision_features(in, backward);
  const auto samples = static_cast<double>(batch_samples);
  at::Tensor align_loss;
  if (options_.align_weight > 0 && in.grounding.size() > 0) {
    // The embedding parameter itself: always current, read as constants by the loss.
    align_loss = train::grounding_loss(vision.embeds, embed_weight_, in.grounding);
    r.align = align_loss.item<double>();
  }
  if (options_.align_only) {
    r.forward_s = seconds_since(t0);
    t0 = Clock::now();
    if (backward && align_loss.defined()) {
      (align_loss * (options_.align_weight / samples / static_cast<double>(options_.grad_accum)))
          .backward();
    }
    r.backward_s = seconds_since(t0);
    return r;
  }
  const AssembledSequence seq = assemble_sequence(*model_, ids, in.grids, vision,
                                                  options_.keep_ratio, pruning_text(c, prompt));
  const at::Tensor hidden = model_->forward(seq.input);  // [1, S, D]
  // Pruning removes visual tokens, all of which sit before the "[": it moves back by as many.
  const int64_t bracket = source_len - 1 - (seq.visual_before - seq.visual_after);
  const int64_t T = static_cast<int64_t>(p.target_ids.size());
  const at::Tensor logits =
      model_->logits(hidden.select(0, 0).narrow(0, bracket, T)).to(at::kFloat);  // [T, V]
  const auto dev = logits.device();
  const at::Tensor gen = token_nll_sum(logits, at::tensor(p.target_ids, at::kLong).to(dev));
  const at::Tensor scores =
      logits.select(0, 0).index_select(0, at::tensor(prompt.identifier_ids, at::kLong).to(dev));
  const at::Tensor rank = options_.stage == 1
                              ? ranknet_loss(scores, train::rank_positions(ex.ranking))
                              : soft_ranking_loss(scores, ex.ranking, ex.gt, options_.soft_decay);
  at::Tensor candidate_loss;
  if (options_.candidate_weight > 0) {
    candidate_loss = candidate_relevance_loss(ex, hidden, prompt, ids, seq, in.tokens_per_image, r);
  }

  r.gen_sum = gen.item<double>();
  r.rank = rank.item<double>();
  r.rank_top1 =
      top1_agreement(scores, ex.ranking, options_.stage == 2 ? ex.gt : std::vector<int64_t>{});
  r.tokens = seq.input.embeds.size(1);
  r.forward_s = seconds_since(t0);
  if (!backward) return r;
  t0 = Clock::now();
  at::Tensor loss = gen / static_cast<double>(batch_tokens);
  if (!std::isnan(r.rank) && rank.requires_grad())
    loss = loss + rank * (options_.rank_weight / samples);
  if (candidate_loss.defined() && !std::isnan(r.candidate))
    loss = loss + candidate_loss * (options_.candidate_weight / samples);
  if (align_loss.defined()) loss = loss + align_loss * (options_.align_weight / samples);
  (loss / static_cast<double>(options_.grad_accum)).backward();
  r.backward_s = seconds_since(t0);
  return r;
}

}  // namespace ziprerank
