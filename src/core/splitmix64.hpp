// SplitMix64: the project's one seeded generator. Its output is the same on every platform and
// standard library, so a seed names one data order, one crop or one document look everywhere
// (std::shuffle's and std::uniform_int_distribution's algorithms are unspecified).
#pragma once

#include <cstdint>

namespace ziprerank::detail {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  /// Uniform in [0, bound) without modulo bias (bound > 0).
  uint64_t below(uint64_t bound) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do {
      r = next();
    } while (r >= limit);
    return r % bound;
  }

  /// next() % bound: slightly biased for huge bounds, kept where a seed's output is part of a
  /// published look (rendered documents), so a seed keeps drawing the same pages.
  uint64_t modulo(uint64_t bound) { return next() % bound; }

  /// Uniform in [0, 1) with 53 random bits.
  double unit() { return static_cast<double>(next() >> 11) / 9007199254740992.0; }

 private:
  uint64_t state_;
};

}  // namespace ziprerank::detail
