// The safetensors file format: a strict, memory-mapped reader and a writer.
//
// Layout: 8-byte little-endian header length N, then N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data section. Offsets are relative to the start of the data section.
//
// These files come from the internet, so the parser trusts nothing: header length within the file,
// valid JSON, no duplicate names, every offset pair inside the data section, tensors tiling the
// data section without overlap or gap, byte length == product(shape) x element size, and a size cap
// on the header so a hostile length cannot trigger a huge allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ziprerank {

/// Element types ziprerank loads. Other safetensors dtypes are rejected by name.
enum class DType { kF32, kF16, kBF16 };

const char* dtype_name(DType dtype);  ///< "F32", "F16", "BF16"
size_t dtype_size(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  ///< byte offset inside the data section
  uint64_t end = 0;

  uint64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  uint64_t header_size = 0;         ///< N, the JSON length
  uint64_t data_size = 0;           ///< bytes after the header
  std::vector<TensorInfo> tensors;  ///< in data-offset order
  std::map<std::string, std::string> metadata;
};

/// Largest JSON header accepted (the reference implementation uses the same 100 MB bound).
constexpr uint64_t kMaxSafetensorsHeader = 100ull * 1024 * 1024;

/// Parses and validates the header of a complete safetensors file held in memory.
/// `origin` names the file in error messages. Throws InputError on any violation.
SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size,
                                           const std::string& origin);

/// A read-only memory mapping of a whole file, shared by every tensor view into it.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

/// One memory-mapped, validated safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const SafetensorsHeader& header() const { return header_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const TensorInfo* find(const std::string& name) const;
  /// Pointer to a tensor's first byte inside the mapping (valid while any copy of mapping() lives).
  const uint8_t* data(const TensorInfo& info) const;
  std::shared_ptr<const MappedFile> mapping() const { return file_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
};

/// Collects tensors and writes one safetensors file. The header is padded with spaces to a multiple
/// of 8 bytes so every tensor starts 8-byte aligned; the file is written to a temporary name and
/// renamed, so a crash never leaves a half-written checkpoint under the final name.
class SafetensorsWriter {
 public:
  /// Copies `nbytes` from `data`; nbytes must equal product(shape) x dtype_size(dtype).
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
           const void* data, size_t nbytes);
  /// Like add() but keeps only the pointer: `data` must stay valid until write() returns.
  /// Saves a full copy of the weights when a large model is written.
  void add_borrowed(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                    const void* data, size_t nbytes);
  void set_metadata(const std::string& key, const std::string& value);
  void write(const std::string& path) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> owned;
    const uint8_t* data = nullptr;
    size_t nbytes = 0;
  };
  Entry& new_entry(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                   size_t nbytes);
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

/// Writes a .safetensors file one tensor at a time, for models too large to hold twice: the
/// layout (names, dtypes, shapes) is fixed first and the header written, then each tensor's
/// bytes go to their place as they are made, in any order. The file is byte for byte what
/// SafetensorsWriter writes for the same tensors. It appears under `path` only when finish()
/// has checked that every tensor was written; until then it is `path`.tmp, removed on failure.
class SafetensorsStreamWriter {
 public:
  struct Layout {
    std::string name;
    DType dtype = DType::kF32;
    std::vector<int64_t> shape;
  };
  SafetensorsStreamWriter(const std::string& path, const std::vector<Layout>& tensors,
                          const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsStreamWriter();
  SafetensorsStreamWriter(const SafetensorsStreamWriter&) = delete;
  SafetensorsStreamWriter& operator=(const SafetensorsStreamWriter&) = delete;
  /// Writes one tensor's bytes; nbytes must match its layout.
  void put(const std::string& name, const void* data, size_t nbytes);
  void finish();

 private:
  struct Slot {
    uint64_t offset = 0, nbytes = 0;
    bool written = false;
  };
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t data_start_ = 0;
  std::map<std::string, Slot> slots_;
};

}  // namespace ziprerank
