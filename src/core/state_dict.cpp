#include "ziprerank/state_dict.hpp"

#include <ATen/ATen.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "json_util.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank {

namespace fs = std::filesystem;

at::ScalarType to_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return at::kFloat;
    case DType::kF16:
      return at::kHalf;
    case DType::kBF16:
      return at::kBFloat16;
  }
  throw InternalError("unknown DType");
}

DType from_scalar_type(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return DType::kF32;
    case at::kHalf:
      return DType::kF16;
    case at::kBFloat16:
      return DType::kBF16;
    default:
      break;
  }
  throw InternalError(std::string("cannot store scalar type ") + at::toString(type) +
                      " in safetensors (use float32, float16 or bfloat16)");
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::shared_ptr<const WeightStore> WeightStore::open(const std::string& model_dir) {
  const fs::path dir(model_dir);
  const fs::path single = dir / "model.safetensors";
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(single)) return open_files({single.string()});
  if (!fs::exists(index)) {
    throw InputError("'" + model_dir +
                     "' has no model.safetensors or model.safetensors.index.json; is it a model "
                     "folder? (create one with `ziprerank init`)");
  }
  const std::string origin = index.string();
  const auto root = detail::parse_json(detail::read_text_file(origin), origin);
  auto wm = root.find("weight_map");
  if (!root.is_object() || wm == root.end() || !wm->is_object()) {
    throw InputError(origin + ": expected an object with a 'weight_map' object");
  }
  std::vector<std::string> shards;
  std::map<std::string, std::string> expected;  // tensor -> shard
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      throw InputError(origin + ": weight_map['" + it.key() + "'] is not a file name");
    const std::string shard = it.value().get<std::string>();
    if (shard.find('/') != std::string::npos || shard == "..") {
      throw InputError(origin + ": shard name '" + shard + "' must be a plain file name");
    }
    if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
    expected[it.key()] = shard;
  }
  std::vector<std::string> paths;
  for (const auto& s : shards) {
    const fs::path p = dir / s;
    if (!fs::exists(p))
      throw InputError(origin + " lists shard '" + s + "', which is missing from " + model_dir);
    paths.push_back(p.string());
  }
  auto store = open_files(paths);
  for (const auto& [name, shard] : expected) {
    if (!store->contains(name)) {
      throw InputError(origin + ": tensor '" + name + "' should be in shard '" + shard +
                       "' but is not");
    }
    const std::string actual = fs::path(store->file_of(name).path()).filename().string();
    if (actual != shard) {
      throw InputError(origin + ": tensor '" + name + "' is listed in '" + shard +
                       "' but stored in '" + actual + "'");
    }
  }
  return store;
}

std::shared_ptr<const WeightStore> WeightStore::open_files(const std::vector<std::string>& paths) {
  auto store = std::make_shared<WeightStore>();
  for (const auto& p : paths) store->files_.emplace_back(p);
  for (size_t f = 0; f < store->files_.size(); ++f) {
    const auto& tensors = store->files_[f].tensors();
    for (size_t t = 0; t < tensors.size(); ++t) {
      auto [it, inserted] = store->where_.emplace(tensors[t].name, std::make_pair(f, t));
      if (!inserted) {
        throw InputError("tensor '" + tensors[t].name + "' is stored twice: in '" +
                         store->files_[it->second.first].path() + "' and '" +
                         store->files_[f].path() + "'");
      }
    }
  }
  return store;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

const TensorInfo& WeightStore::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw InputError("no tensor named '" + name + "' in the model weights");
  return files_[it->second.first].tensors()[it->second.second];
}

const SafetensorsFile& WeightStore::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw InputError("no tensor named '" + name + "' in the model weights");
  return files_[it->second.first];
}

at::Tensor WeightStore::view(const std::string& name) const {
  const SafetensorsFile& file = file_of(name);
  const TensorInfo& ti = info(name);
  const uint8_t* ptr = file.data(ti);
  const auto options = at::TensorOptions().dtype(to_scalar_type(ti.dtype));
  if (ti.numel() == 0) return at::empty(ti.shape, options);
  if (reinterpret_cast<uintptr_t>(ptr) % dtype_size(ti.dtype) != 0) {
    // Misaligned element data: copy into fresh, aligned memory.
    at::Tensor out = at::empty(ti.shape, options);
    std::memcpy(out.data_ptr(), ptr, ti.nbytes());
    return out;
  }
  auto keep_alive = file.mapping();
  return at::from_blob(
      const_cast<uint8_t*>(ptr), ti.shape, [keep_alive](void*) {}, options);
}

at::Tensor WeightStore::load(const std::string& name, at::ScalarType dtype,
                             const at::Device& device, bool writable) const {
  at::Tensor v = view(name);
  const bool converts = v.scalar_type() != dtype || !device.is_cpu();
  at::Tensor out = v.to(device, dtype);
  if (writable && !converts) out = out.clone();
  return out;
}

// ---------------------------------------------------------------------------------------------

StateDict::StateDict(std::shared_ptr<const WeightStore> store, LoadOptions options)
    : StateDict(std::move(store), options, "", std::make_shared<Record>()) {}

StateDict::StateDict(std::shared_ptr<const WeightStore> store, LoadOptions options,
                     std::string prefix, std::shared_ptr<Record> record)
    : store_(std::move(store)),
      options_(options),
      prefix_(std::move(prefix)),
      record_(std::move(record)) {}

StateDict StateDict::recorder() { return StateDict(nullptr, LoadOptions{}); }

const std::vector<std::pair<std::string, std::vector<int64_t>>>& StateDict::requested() const {
  return record_->requested;
}

StateDict StateDict::select(const std::string& prefix) const {
  return StateDict(store_, options_, prefix_ + prefix, record_);
}

bool StateDict::contains(const std::string& name) const {
  return store_ && store_->contains(prefix_ + name);
}

at::Tensor StateDict::get(const std::string& name, const std::vector<int64_t>& shape) {
  return fetch(name, shape, true);
}

at::Tensor StateDict::get_optional(const std::string& name, const std::vector<int64_t>& shape) {
  return fetch(name, shape, false);
}

at::Tensor StateDict::fetch(const std::string& name, const std::vector<int64_t>& shape,
                            bool required) {
  const std::string full = prefix_ + name;
  if (!store_) {
    record_->requested.emplace_back(full, shape);
    return {};
  }
  if (!store_->contains(full)) {
    if (required)
      record_->problems.push_back("missing tensor '" + full + "' " + shape_to_string(shape));
    return {};
  }
  record_->used.insert(full);
  const TensorInfo& ti = store_->info(full);
  if (ti.shape != shape) {
    record_->problems.push_back("tensor '" + full + "' has shape " + shape_to_string(ti.shape) +
                                " but the config implies " + shape_to_string(shape));
    return {};
  }
  return store_->load(full, options_.dtype, options_.device, options_.writable);
}

void StateDict::finish(const std::string& origin) const {
  if (record_->problems.empty()) return;
  std::string msg = origin + ": the weights do not match config.json (" +
                    std::to_string(record_->problems.size()) + " problem" +
                    (record_->problems.size() == 1 ? "" : "s") + "):";
  const size_t shown = std::min<size_t>(record_->problems.size(), 20);
  for (size_t i = 0; i < shown; ++i) msg += "\n  " + record_->problems[i];
  if (shown < record_->problems.size()) {
    msg += "\n  ... and " + std::to_string(record_->problems.size() - shown) + " more";
  }
  throw InputError(msg);
}

std::vector<std::string> StateDict::unused() const {
  std::vector<std::string> out;
  if (!store_) return out;
  for (const auto& name : store_->names()) {
    if (!record_->used.count(name)) out.push_back(name);
  }
  return out;
}

}  // namespace ziprerank
