#include "ziprerank/vision_cache.hpp"

#include <list>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace ziprerank {

size_t EncodedPage::bytes() const {
  size_t n = features.embeds.numel() * features.embeds.element_size();
  for (const auto& d : features.deepstack) n += d.numel() * d.element_size();
  return n;
}

struct VisionCache::Impl {
  size_t max_bytes = 0, bytes = 0, hits = 0, misses = 0;
  std::list<std::pair<std::string, std::shared_ptr<const EncodedPage>>> lru;  // front: newest
  std::unordered_map<std::string, decltype(lru)::iterator> index;
  mutable std::mutex mutex;
};

VisionCache::VisionCache(size_t max_bytes) : impl_(std::make_unique<Impl>()) {
  impl_->max_bytes = max_bytes;
}

VisionCache::~VisionCache() = default;

std::shared_ptr<const EncodedPage> VisionCache::get(const std::string& key) {
  Impl& c = *impl_;
  std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.index.find(key);
  if (it == c.index.end()) {
    ++c.misses;
    return nullptr;
  }
  ++c.hits;
  c.lru.splice(c.lru.begin(), c.lru, it->second);
  return it->second->second;
}

void VisionCache::put(const std::string& key, std::shared_ptr<const EncodedPage> page) {
  Impl& c = *impl_;
  std::lock_guard<std::mutex> lock(c.mutex);
  const size_t size = page->bytes();
  if (size > c.max_bytes || c.index.count(key)) return;
  c.lru.emplace_front(key, std::move(page));
  c.index[key] = c.lru.begin();
  c.bytes += size;
  while (c.bytes > c.max_bytes && !c.lru.empty()) {
    c.bytes -= c.lru.back().second->bytes();
    c.index.erase(c.lru.back().first);
    c.lru.pop_back();
  }
}

size_t VisionCache::hits() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->hits;
}

size_t VisionCache::misses() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->misses;
}

}  // namespace ziprerank
