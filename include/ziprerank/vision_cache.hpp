// Pages' vision features kept for reuse: a page's features do not depend on the query, so
// batch, serve and training with a frozen tower encode each page once.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "ziprerank/model.hpp"

namespace ziprerank {

/// A page after the vision tower: what every window it appears in needs.
struct EncodedPage {
  VisionFeatures features;
  ImageGrid grid;
  size_t bytes() const;
};

/// Vision features of pages by key (rerank uses the file's path, PDF page, size and
/// modification time), least recently used first out, up to `max_bytes`. Thread-safe. Reuse is
/// exact; batch runs over MMDocIR-style data see the same document pages for many questions.
class VisionCache {
 public:
  explicit VisionCache(size_t max_bytes);
  ~VisionCache();
  VisionCache(const VisionCache&) = delete;
  VisionCache& operator=(const VisionCache&) = delete;

  /// The page kept under `key`, or null (counted as a miss).
  std::shared_ptr<const EncodedPage> get(const std::string& key);
  /// Keeps `page` under `key` unless it is larger than the whole cache or the key is taken.
  void put(const std::string& key, std::shared_ptr<const EncodedPage> page);
  size_t hits() const;
  size_t misses() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ziprerank
