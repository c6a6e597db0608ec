#include "ziprerank/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "ziprerank/errors.hpp"

namespace ziprerank {

using nlohmann::json;

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  return "?";
}

size_t dtype_size(DType dtype) { return dtype == DType::kF32 ? 4 : 2; }

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

namespace {

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
  throw InputError(origin + ": invalid safetensors file: " + what);
}

DType parse_dtype(const std::string& s, const std::string& origin, const std::string& tensor) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  static const std::set<std::string> kKnown = {"BOOL", "U8",  "I8",  "I16", "U16",     "I32",
                                               "U32",  "I64", "U64", "F64", "F8_E4M3", "F8_E5M2"};
  if (kKnown.count(s)) {
    fail(origin, "tensor '" + tensor + "' has dtype " + s +
                     ", which ziprerank does not load (supported: F32, F16, BF16)");
  }
  fail(origin, "tensor '" + tensor + "' has unknown dtype '" + s + "'");
}

uint64_t read_u64(const json& v, const std::string& origin, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0)
    return static_cast<uint64_t>(v.get<int64_t>());
  fail(origin, what + " must be a non-negative integer");
}

// One tensor's entry: dtype, shape and data offsets, checked against each other and against the
// data section's size.
TensorInfo parse_tensor_entry(const std::string& name, const json& entry, uint64_t data_size,
                              const std::string& origin) {
  if (!entry.is_object()) fail(origin, "entry '" + name + "' is not an object");
  auto dt = entry.find("dtype");
  auto sh = entry.find("shape");
  auto off = entry.find("data_offsets");
  if (dt == entry.end() || !dt->is_string())
    fail(origin, "tensor '" + name + "' has no string 'dtype'");
  if (sh == entry.end() || !sh->is_array())
    fail(origin, "tensor '" + name + "' has no 'shape' array");
  if (off == entry.end() || !off->is_array() || off->size() != 2) {
    fail(origin, "tensor '" + name + "' needs 'data_offsets' = [begin, end]");
  }
  TensorInfo info;
  info.name = name;
  info.dtype = parse_dtype(dt->get<std::string>(), origin, name);
  uint64_t numel = 1;
  for (const json& d : *sh) {
    const uint64_t dim = read_u64(d, origin, "shape of '" + name + "'");
    if (dim > static_cast<uint64_t>(INT64_MAX))
      fail(origin, "shape of '" + name + "' is too large");
    if (__builtin_mul_overflow(numel, dim, &numel))
      fail(origin, "shape of '" + name + "' overflows");
    info.shape.push_back(static_cast<int64_t>(dim));
  }
  info.begin = read_u64((*off)[0], origin, "data_offsets of '" + name + "'");
  info.end = read_u64((*off)[1], origin, "data_offsets of '" + name + "'");
  if (info.begin > info.end) {
    fail(origin, "tensor '" + name + "' has data_offsets [" + std::to_string(info.begin) + ", " +
                     std::to_string(info.end) + "] with begin after end");
  }
  if (info.end > data_size) {
    fail(origin, "tensor '" + name + "' ends at byte " + std::to_string(info.end) +
                     " but the data section holds " + std::to_string(data_size) +
                     " bytes (truncated file?)");
  }
  uint64_t expected = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(info.dtype)), &expected) ||
      expected != info.nbytes()) {
    fail(origin, "tensor '" + name + "' occupies " + std::to_string(info.nbytes()) +
                     " bytes but shape x " + dtype_name(info.dtype) + " needs " +
                     std::to_string(expected));
  }
  return info;
}

// Tensors must tile the data section: sorted by offset, each starting where the last ended.
void check_tiling(SafetensorsHeader& h, const std::string& origin) {
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  const TensorInfo* prev = nullptr;
  for (const auto& t : h.tensors) {
    if (t.begin < cursor) {
      fail(origin, "tensors '" + prev->name + "' and '" + t.name + "' overlap (bytes " +
                       std::to_string(t.begin) + ".." + std::to_string(cursor) + ")");
    }
    if (t.begin > cursor) {
      fail(origin, "gap of " + std::to_string(t.begin - cursor) + " unused bytes before tensor '" +
                       t.name + "'");
    }
    cursor = t.end;
    prev = &t;
  }
  if (cursor != h.data_size) {
    fail(origin, "data section has " + std::to_string(h.data_size) + " bytes but tensors cover " +
                     std::to_string(cursor));
  }
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size,
                                           const std::string& origin) {
  if (size < 8)
    fail(origin,
         "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > kMaxSafetensorsHeader) {
    fail(origin, "header length " + std::to_string(n) + " exceeds the " +
                     std::to_string(kMaxSafetensorsHeader) + "-byte limit");
  }
  if (n > size - 8) {
    fail(origin, "header length " + std::to_string(n) + " runs past the end of the file (" +
                     std::to_string(size) + " bytes; truncated download?)");
  }
  if (n < 2 || data[8] != '{') fail(origin, "header does not start with a JSON object");

  SafetensorsHeader h;
  h.header_size = n;
  h.data_size = size - 8 - n;

  // Duplicate top-level names are an error; nlohmann would silently keep the last one.
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) {
      const std::string key = parsed.get<std::string>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json root;
  const char* begin = reinterpret_cast<const char*>(data + 8);
  try {
    root = json::parse(begin, begin + n, on_event);
  } catch (const json::exception& e) {
    // parse_error for bad syntax, out_of_range for numbers too large to represent
    fail(origin, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!duplicate.empty())
    fail(origin, "tensor name '" + duplicate + "' appears twice in the header");
  if (!root.is_object()) fail(origin, "header is not a JSON object");

  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(origin, "__metadata__ must be an object of strings");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string())
          fail(origin, "__metadata__ value '" + m.key() + "' is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    h.tensors.push_back(parse_tensor_entry(name, entry, h.data_size, origin));
  }

  check_tiling(h, origin);
  return h;
}

// ---------------------------------------------------------------------------------------------

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError("'" + path + "' is not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw InputError("cannot memory-map '" + path + "': " + std::strerror(err));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(std::make_shared<MappedFile>(path)) {
  header_ = parse_safetensors_header(file_->data(), file_->size(), path);
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

const uint8_t* SafetensorsFile::data(const TensorInfo& info) const {
  return file_->data() + 8 + header_.header_size + info.begin;
}

// ---------------------------------------------------------------------------------------------

SafetensorsWriter::Entry& SafetensorsWriter::new_entry(const std::string& name, DType dtype,
                                                       const std::vector<int64_t>& shape,
                                                       size_t nbytes) {
  if (name.empty() || name == "__metadata__") {
    throw InternalError("safetensors writer: invalid tensor name '" + name + "'");
  }
  for (const auto& e : entries_) {
    if (e.name == name)
      throw InternalError("safetensors writer: tensor '" + name + "' added twice");
  }
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) throw InternalError("safetensors writer: negative dimension in '" + name + "'");
    numel *= static_cast<uint64_t>(d);
  }
  if (numel * dtype_size(dtype) != nbytes) {
    throw InternalError("safetensors writer: tensor '" + name + "' has " + std::to_string(nbytes) +
                        " bytes, shape needs " + std::to_string(numel * dtype_size(dtype)));
  }
  entries_.push_back(Entry{name, dtype, shape, {}, nullptr, nbytes});
  return entries_.back();
}

void SafetensorsWriter::add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                            const void* data, size_t nbytes) {
  Entry& e = new_entry(name, dtype, shape, nbytes);
  const auto* p = static_cast<const uint8_t*>(data);
  e.owned.assign(p, p + nbytes);
}

void SafetensorsWriter::add_borrowed(const std::string& name, DType dtype,
                                     const std::vector<int64_t>& shape, const void* data,
                                     size_t nbytes) {
  new_entry(name, dtype, shape, nbytes).data = static_cast<const uint8_t*>(data);
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

void SafetensorsWriter::write(const std::string& path) const {
  // Entries are written in name order, like the reference implementation, so output is stable.
  std::vector<const Entry*> order;
  for (const auto& e : entries_) order.push_back(&e);
  std::sort(order.begin(), order.end(),
            [](const Entry* a, const Entry* b) { return a->name < b->name; });

  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Entry* e : order) {
    header[e->name] = {{"dtype", dtype_name(e->dtype)},
                       {"shape", e->shape},
                       {"data_offsets", {offset, offset + e->nbytes}}};
    offset += e->nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError("cannot write '" + tmp + "'");
    uint8_t len[8];
    uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const Entry* e : order) {
      const uint8_t* bytes = e->owned.empty() ? e->data : e->owned.data();
      out.write(reinterpret_cast<const char*>(bytes), static_cast<std::streamsize>(e->nbytes));
    }
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw InputError("error while writing '" + tmp + "' (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw InputError("cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(errno));
  }
}

SafetensorsStreamWriter::SafetensorsStreamWriter(const std::string& path,
                                                 const std::vector<Layout>& tensors,
                                                 const std::map<std::string, std::string>& metadata)
    : path_(path), tmp_(path + ".tmp") {
  // The same header SafetensorsWriter writes: tensors in name order, packed.
  std::vector<const Layout*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const Layout* a, const Layout* b) { return a->name < b->name; });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Layout* t : order) {
    uint64_t n = dtype_size(t->dtype);
    for (int64_t d : t->shape) n *= static_cast<uint64_t>(d);
    if (slots_.count(t->name)) throw InternalError("safetensors: tensor '" + t->name + "' twice");
    slots_[t->name] = Slot{offset, n, false};
    header[t->name] = {{"dtype", dtype_name(t->dtype)},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw InputError("cannot write '" + tmp_ + "': " + std::strerror(errno));
  std::string head(8, '\0');
  const uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) head[static_cast<size_t>(i)] = static_cast<char>(len >> (8 * i));
  head += text;
  data_start_ = head.size();
  for (size_t done = 0; done < head.size();) {
    const ssize_t w =
        ::pwrite(fd_, head.data() + done, head.size() - done, static_cast<off_t>(done));
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      const std::string why = std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
      std::remove(tmp_.c_str());
      throw InputError("error while writing '" + tmp_ + "': " + why);
    }
    done += static_cast<size_t>(w);
  }
}

SafetensorsStreamWriter::~SafetensorsStreamWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    std::remove(tmp_.c_str());
  }
}

void SafetensorsStreamWriter::put(const std::string& name, const void* data, size_t nbytes) {
  auto it = slots_.find(name);
  if (it == slots_.end()) throw InternalError("safetensors: no tensor '" + name + "' laid out");
  if (fd_ < 0) throw InternalError("safetensors: writer already finished");
  Slot& s = it->second;
  if (nbytes != s.nbytes) {
    throw InternalError("safetensors: '" + name + "' has " + std::to_string(nbytes) +
                        " bytes, its layout " + std::to_string(s.nbytes));
  }
  const auto* bytes = static_cast<const char*>(data);
  for (size_t done = 0; done < nbytes;) {
    const ssize_t w = ::pwrite(fd_, bytes + done, nbytes - done,
                               static_cast<off_t>(data_start_ + s.offset + done));
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      throw InputError("error while writing '" + tmp_ + "' (disk full?): " + std::strerror(errno));
    }
    done += static_cast<size_t>(w);
  }
  s.written = true;
}

void SafetensorsStreamWriter::finish() {
  for (const auto& [name, s] : slots_) {
    if (!s.written) throw InternalError("safetensors: tensor '" + name + "' was never written");
  }
  if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
    fd_ = -1;
    std::remove(tmp_.c_str());
    throw InputError("error while writing '" + tmp_ + "' (disk full?): " + std::strerror(errno));
  }
  fd_ = -1;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_.c_str());
    throw InputError("cannot rename '" + tmp_ + "' to '" + path_ + "': " + std::strerror(errno));
  }
}

}  // namespace ziprerank
