// Which copy of the fused kernels runs (kernels.hpp). Kept apart from kernels.cpp: including
// spdlog's headers there stops GCC 12 from vectorising the kernels' loops.
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <string>

#include "model/kernels.hpp"

namespace ziprerank::detail {

const char* kernel_isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kAvx512:
      return "avx512";
    case KernelIsa::kAvx2:
      return "avx2";
    case KernelIsa::kPortable:
      break;
  }
  return "portable";
}

KernelIsa kernel_isa() {
  static const KernelIsa isa = [] {
    KernelIsa best = KernelIsa::kPortable;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx512f")) {
      best = KernelIsa::kAvx512;
    } else if (__builtin_cpu_supports("avx2")) {
      best = KernelIsa::kAvx2;
    }
#endif
    const char* env = std::getenv("ZIPRERANK_CPU_ISA");
    if (!env || !*env || std::string(env) == "native") return best;
    if (std::string(env) == "portable") {
      spdlog::debug("vector kernels: the portable copy (ZIPRERANK_CPU_ISA=portable)");
      return KernelIsa::kPortable;
    }
    spdlog::warn("ZIPRERANK_CPU_ISA={} is not 'portable' or 'native': ignored", env);
    return best;
  }();
  return isa;
}

}  // namespace ziprerank::detail
