// Weights of a model folder addressed by their checkpoint names.
//
// WeightStore opens `model.safetensors` or the shards named by `model.safetensors.index.json`.
// StateDict is a prefix view onto it used by modules to fetch their weights: required and optional
// lookups with shape checks, converted one tensor at a time to the compute dtype and device. All
// problems are collected and reported together by finish(), with the list of tensors nobody used.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ziprerank/safetensors.hpp"

namespace ziprerank {

at::ScalarType to_scalar_type(DType dtype);
/// Safetensors dtype for a tensor's scalar type; throws for types safetensors output does not use.
DType from_scalar_type(at::ScalarType type);

class WeightStore {
 public:
  /// Opens the weights of a model folder (single file or sharded). Throws InputError naming the
  /// file.
  static std::shared_ptr<const WeightStore> open(const std::string& model_dir);
  /// Opens explicit safetensors files (tests, tools).
  static std::shared_ptr<const WeightStore> open_files(const std::vector<std::string>& paths);

  std::vector<std::string> names() const;  ///< sorted
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const;
  const SafetensorsFile& file_of(const std::string& name) const;
  const std::vector<SafetensorsFile>& files() const { return files_; }

  /// Zero-copy, READ-ONLY CPU tensor over the mapping in the stored dtype (copied only when the
  /// data is misaligned). Keeps the mapping alive.
  at::Tensor view(const std::string& name) const;
  /// A tensor in `dtype` on `device`; never aliases the mapping when `writable` is set.
  at::Tensor load(const std::string& name, at::ScalarType dtype, const at::Device& device,
                  bool writable) const;

 private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::pair<size_t, size_t>> where_;  // name -> (file, tensor index)
};

struct LoadOptions {
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  bool writable = false;  ///< set for training: parameters get their own memory
  /// Linear layers multiply float32 inputs in bfloat16 (see ModelOptions::bf16_products): for
  /// inference their weights are kept in bfloat16 only; with `writable` (training) they stay
  /// float32 master weights, cast to bfloat16 for each product.
  bool bf16_products = false;
};

class StateDict {
 public:
  StateDict(std::shared_ptr<const WeightStore> store, LoadOptions options);
  /// A StateDict over no weights that records every lookup instead: a module constructed over it
  /// gets undefined tensors, and requested() then lists the checkpoint tensors it reads. The
  /// checkpoint layout (expected_weights) is derived this way from the modules themselves.
  static StateDict recorder();
  /// A recorder's lookups, full names with their shapes, in the order they were made.
  const std::vector<std::pair<std::string, std::vector<int64_t>>>& requested() const;

  /// A view whose names are relative to `prefix` (e.g. "model.visual."). Shares the usage record.
  StateDict select(const std::string& prefix) const;
  const std::string& prefix() const { return prefix_; }
  const LoadOptions& options() const { return options_; }

  bool contains(const std::string& name) const;
  /// Required tensor. An absent name or wrong shape is recorded (not thrown) and an undefined
  /// tensor is returned; finish() then reports every problem at once.
  at::Tensor get(const std::string& name, const std::vector<int64_t>& shape);
  /// Optional tensor: undefined when absent; a present tensor of the wrong shape is still an error.
  at::Tensor get_optional(const std::string& name, const std::vector<int64_t>& shape);

  /// Throws InputError listing all missing and mis-shaped tensors (with `origin`, e.g. the folder).
  void finish(const std::string& origin) const;
  /// Full names never fetched through any view.
  std::vector<std::string> unused() const;

 private:
  struct Record {
    std::set<std::string> used;
    std::vector<std::string> problems;
    std::vector<std::pair<std::string, std::vector<int64_t>>> requested;  // recorder only
  };
  StateDict(std::shared_ptr<const WeightStore> store, LoadOptions options, std::string prefix,
            std::shared_ptr<Record> record);
  at::Tensor fetch(const std::string& name, const std::vector<int64_t>& shape, bool required);

  std::shared_ptr<const WeightStore> store_;  ///< null for a recorder
  LoadOptions options_;
  std::string prefix_;
  std::shared_ptr<Record> record_;
};

std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace ziprerank
