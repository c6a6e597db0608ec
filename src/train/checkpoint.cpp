// Saving a trained model folder and training checkpoints (weights, optimizer state, position),
// and resuming from one exactly.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/json_util.hpp"
#include "train/optimizer.hpp"
#include "train/trainer_internal.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/model.hpp"
#include "ziprerank/safetensors.hpp"
#include "ziprerank/state_dict.hpp"
#include "ziprerank/train.hpp"

namespace ziprerank {

namespace fs = std::filesystem;
using nlohmann::json;
using train::kOptimizerFile;
using train::kStateFile;
using train::kStateFormat;

namespace {

std::string hex64(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

void write_text_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw InputError("cannot write '" + tmp.string() + "'");
  }
  fs::rename(tmp, path);
}

at::Tensor cpu_contiguous(const at::Tensor& t, at::ScalarType dtype) {
  return t.detach().to(at::kCPU, dtype).contiguous();
}

void add_tensor(SafetensorsWriter& writer, std::vector<at::Tensor>& keep, const std::string& name,
                const at::Tensor& t, DType dtype) {
  at::Tensor c = cpu_contiguous(t, to_scalar_type(dtype));
  writer.add_borrowed(name, dtype, c.sizes().vec(), c.data_ptr(), c.numel() * c.element_size());
  keep.push_back(std::move(c));
}

// Settings that shape the trajectory: a resumed run must use the same ones to continue exactly.
json trajectory_settings(const TrainOptions& o) {
  return {{"stage", o.stage},
          {"batch_size", o.batch_size},
          {"grad_accum", o.grad_accum},
          {"epochs", o.epochs},
          {"max_steps", o.max_steps},
          {"warmup_steps", o.warmup_steps},
          {"rank_weight", o.rank_weight},
          {"align_weight", o.align_weight},
          {"candidate_weight", o.candidate_weight},
          {"text_candidates", o.text_candidates},
          {"align_only", o.align_only},
          {"align_crop", o.align_crop},
          {"lr", o.lr},
          {"max_grad_norm", o.max_grad_norm},
          {"weight_decay", o.weight_decay},
          {"beta1", o.beta1},
          {"beta2", o.beta2},
          {"eps", o.eps},
          {"seed", o.seed},
          {"shuffle", o.shuffle},
          {"freeze_vision", o.freeze_vision},
          {"freeze_embeddings", o.freeze_embeddings},
          {"keep_ratio", o.keep_ratio},
          {"max_candidates", o.max_candidates},
          {"force_gt_top1", o.force_gt_top1},
          {"soft_decay", o.soft_decay},
          {"bf16_products", o.bf16_products}};
}

std::string flag_name(const std::string& key) {
  std::string flag = "--" + key;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

}  // namespace

void Trainer::save_model(const std::string& dir) const {
  const fs::path out(dir);
  fs::create_directories(out);
  // Weights of another layout left in the folder would shadow or confuse the new ones.
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string f = entry.path().filename().string();
    if (f == "model.safetensors.index.json" ||
        (f.rfind("model-", 0) == 0 && entry.path().extension() == ".safetensors")) {
      fs::remove(entry.path());
    }
  }
  for (const auto& [f, bytes] : side_files_) write_text_atomic(out / f, bytes);

  SafetensorsWriter writer;
  std::vector<at::Tensor> keep;
  const auto& params = model_->named_parameters();
  for (size_t i = 0; i < params.size(); ++i)
    add_tensor(writer, keep, params[i].first, params[i].second, stored_dtypes_[i].second);
  writer.set_metadata("format", "pt");
  writer.write((out / "model.safetensors").string());
  keep.clear();

  json cfg = detail::parse_json(source_config_, source_dir_ + "/config.json");
  if (options_.save_dtype != "auto") cfg["torch_dtype"] = options_.save_dtype;
  const TrainOptions& o = options_;
  json note =
      cfg.contains("ziprerank") && cfg["ziprerank"].is_object() ? cfg["ziprerank"] : json::object();
  note["name"] = o.name;
  note["random_init"] = false;
  // Every setting that shapes the trajectory, plus what the run was and how it ended.
  json training = trajectory_settings(o);
  training.update({{"init", init_name_},
                   {"data", fs::path(o.data).filename().string()},
                   {"samples", data_->size()},
                   {"steps", step_},
                   {"total_steps", total_steps_},
                   {"schedule", "cosine with linear warm-up"},
                   {"optimizer", "AdamW, float32 state"},
                   {"rank_loss", o.stage == 1 ? "weighted RankNet" : "soft ranking"},
                   {"final_loss", last_loss_}});
  note["training"] = training;
  note.erase("seed");  // the init's random seed does not describe trained weights
  // Training the language model (any ranking loss) makes the init's list of the scorings it was
  // trained for out of date; training the tower alone leaves it as it was.
  if (!o.align_only) note.erase("trained_scorings");
  cfg["ziprerank"] = note;
  write_text_atomic(out / "config.json", cfg.dump(2) + "\n");
}

std::string Trainer::save_checkpoint() {
  char leaf[32];
  std::snprintf(leaf, sizeof(leaf), "step-%08" PRId64, step_);
  const fs::path root(options_.checkpoint_dir);
  const fs::path final_dir = root / leaf;
  const fs::path tmp = root / (std::string(leaf) + ".partial");
  fs::remove_all(tmp);
  save_model(tmp.string());

  SafetensorsWriter writer;
  std::vector<at::Tensor> keep;
  json steps = json::object();
  const std::map<std::string, DType> stored(stored_dtypes_.begin(), stored_dtypes_.end());
  for (const train::AdamW::Param& p : optimizer_->params()) {
    // model.safetensors holds the weights in the save dtype; exact resumption needs the float32
    // masters.
    if (stored.at(p.name) != DType::kF32)
      add_tensor(writer, keep, "master/" + p.name, p.value, DType::kF32);
    if (!p.exp_avg.defined()) continue;
    add_tensor(writer, keep, "exp_avg/" + p.name, p.exp_avg, DType::kF32);
    add_tensor(writer, keep, "exp_avg_sq/" + p.name, p.exp_avg_sq, DType::kF32);
    steps[p.name] = p.steps;
  }
  writer.write((tmp / kOptimizerFile).string());
  keep.clear();

  const json state = {
      {"format", kStateFormat},
      {"version", 1},
      {"step", step_},
      {"total_steps", total_steps_},
      {"steps_per_epoch", steps_per_epoch_},
      {"init", init_name_},
      {"settings", trajectory_settings(options_)},
      {"data", {{"samples", data_->size()}, {"fnv1a64", hex64(data_->content_hash())}}},
      {"last_loss", last_loss_},
      {"adam_steps", steps}};
  write_text_atomic(tmp / kStateFile, state.dump(2) + "\n");
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  spdlog::info("checkpoint written to {}", final_dir.string());

  if (options_.keep_checkpoints > 0) {
    std::vector<fs::path> all;
    for (const auto& e : fs::directory_iterator(root)) {
      const std::string f = e.path().filename().string();
      if (e.is_directory() && f.rfind("step-", 0) == 0 && e.path().extension() != ".partial")
        all.push_back(e.path());
    }
    std::sort(all.begin(), all.end());  // zero-padded step numbers sort by step
    for (size_t i = 0; i + options_.keep_checkpoints < all.size(); ++i) fs::remove_all(all[i]);
  }
  return final_dir.string();
}

void Trainer::load_resume_state() {
  const fs::path dir(options_.resume);
  const std::string origin = (dir / kStateFile).string();
  const json state = detail::parse_json(detail::read_text_file(origin), origin);
  const json want = trajectory_settings(options_);
  const json have = state.value("settings", json::object());
  // A setting newer than the checkpoint is absent from it; at its default it changes nothing.
  const json defaults = trajectory_settings(TrainOptions{});
  std::string mismatches;
  for (const auto& [key, value] : want.items()) {
    if (!have.contains(key) && defaults.contains(key) && defaults[key] == value) continue;
    if (!have.contains(key) || have[key] != value) {
      mismatches += "\n  " + flag_name(key) + ": checkpoint " +
                    (have.contains(key) ? have[key].dump() : "absent") + ", now " + value.dump();
    }
  }
  if (!mismatches.empty()) {
    throw UsageError(
        "--resume continues a run exactly, so its settings must not change; these differ:" +
        mismatches);
  }
  const json data = state.value("data", json::object());
  if (data.value("fnv1a64", "") != hex64(data_->content_hash()) ||
      data.value("samples", size_t{0}) != data_->size()) {
    throw UsageError("the training data '" + options_.data +
                     "' is not the file this checkpoint was trained on");
  }
  step_ = state.at("step").get<int64_t>();
  last_loss_ = state.value("last_loss", 0.0);
  if (state.value("total_steps", int64_t{-1}) != total_steps_) {
    throw UsageError("the checkpoint's run had " + state.value("total_steps", json()).dump() +
                     " steps, this one " + std::to_string(total_steps_));
  }

  const auto store = WeightStore::open_files({(dir / kOptimizerFile).string()});
  const json steps = state.value("adam_steps", json::object());
  const auto dev = model_->options().device;
  at::NoGradGuard no_grad;
  for (train::AdamW::Param& p : optimizer_->params()) {
    const std::string master = "master/" + p.name;
    if (store->contains(master)) p.value.copy_(store->load(master, at::kFloat, dev, true));
    if (!store->contains("exp_avg/" + p.name)) continue;
    p.exp_avg = store->load("exp_avg/" + p.name, at::kFloat, dev, true);
    p.exp_avg_sq = store->load("exp_avg_sq/" + p.name, at::kFloat, dev, true);
    p.steps = steps.value(p.name, int64_t{0});
  }

  // Metric lines after the checkpoint belong to the interrupted run: drop them, so the file
  // reads as one uninterrupted run.
  if (!options_.metrics_file.empty() && fs::exists(options_.metrics_file)) {
    std::ifstream in(options_.metrics_file);
    std::string line, kept;
    while (std::getline(in, line)) {
      try {
        if (json::parse(line).value("step", int64_t{0}) > step_) continue;
      } catch (const json::exception&) {
        continue;  // a line torn by the interruption
      }
      kept += line + "\n";
    }
    in.close();
    write_text_atomic(options_.metrics_file, kept);
  }
  spdlog::info("resuming from {} at step {} of {}", options_.resume, step_, total_steps_);
}

}  // namespace ziprerank
