#include "ziprerank/runtime.hpp"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/core/Device.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <torch/version.h>

#include <nlohmann/json.hpp>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "core/json_util.hpp"
#include "core/utf8.hpp"
#include "ziprerank/errors.hpp"

#ifndef ZIPRERANK_VERSION
#define ZIPRERANK_VERSION "0.0.0"
#endif

namespace ziprerank {

const char* version_string() { return ZIPRERANK_VERSION; }

BlasInfo detect_blas() {
  // The dynamic loader resolves libblas.so.3 through the alternatives symlinks; /proc/self/maps
  // shows the file actually mapped.
  BlasInfo info;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const auto base = path.substr(path.rfind('/') + 1);
    const bool blas_like = base.rfind("libblas.so", 0) == 0 || base.rfind("libopenblas", 0) == 0 ||
                           base.rfind("libmkl", 0) == 0 || base.rfind("libblis", 0) == 0;
    if (!blas_like) continue;
    info.library = path;
    info.reference =
        base.rfind("libblas.so", 0) == 0 && path.find("openblas") == std::string::npos &&
        path.find("blis") == std::string::npos && path.find("atlas") == std::string::npos;
    if (!info.reference) break;  // an optimised library wins if several are mapped
  }
  if (info.library.empty()) info.library = "built into libtorch (no system BLAS mapped)";
  return info;
}

void warn_if_reference_blas() {
  const BlasInfo info = detect_blas();
  const std::string core = openblas_core_name();
  spdlog::debug("BLAS: {}{}", info.library,
                core.empty() ? "" : " (OpenBLAS kernels: " + core + ")");
  if (const char* was = std::getenv("ZIPRERANK_BLAS_CHOSEN")) {
    spdlog::debug(
        "OpenBLAS had chosen its {} kernels for this CPU: switched to {} "
        "(OPENBLAS_CORETYPE; set it yourself to choose)",
        was, core);
    unsetenv("ZIPRERANK_BLAS_CHOSEN");
  }
  if (info.reference) {
    spdlog::warn("**************************************************************************");
    spdlog::warn("The reference (netlib) BLAS is active: {}", info.library);
    spdlog::warn("Matrix products will run about 60x slower than with OpenBLAS.");
    spdlog::warn("Fix: apt-get install libopenblas0-pthread  (or run scripts/install_deps.sh)");
    spdlog::warn("**************************************************************************");
  }
}

void tune_allocator() {
  // Inference allocates and frees many tensors of tens of MiB. glibc serves those with fresh
  // mmap'ed pages and returns them right away, so every layer pays page faults again (measured:
  // more system than user time). Keep such blocks on the heap and keep freed memory for reuse.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
}

namespace {
// OpenBLAS's thread controls, looked up in the libraries already loaded (libtorch's BLAS).
using GetThreads = int (*)();
using SetThreads = void (*)(int);
GetThreads openblas_get() {
  static const auto f =
      reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return f;
}
SetThreads openblas_set() {
  static const auto f =
      reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  return f;
}
}  // namespace

int openblas_threads() {
  // A libtorch built with MKL (the PyTorch wheel's) multiplies through MKL: an OpenBLAS that
  // another library loaded (OpenCV's) does none of its products, and its threads are no lever.
  if (at::hasMKL()) return 0;
  const GetThreads get = openblas_get();
  return get && openblas_set() ? std::max(0, get()) : 0;
}

bool set_openblas_threads(int threads) {
  const SetThreads set = openblas_set();
  if (!set || !openblas_get() || threads < 1) return false;
  set(threads);
  return true;
}

int configure_threads(int threads) {
  if (threads < 0) throw UsageError("--threads must be >= 0 (0 = OpenBLAS's own count)");
  const int blas = openblas_threads();
  if (blas > 0) {
    const int n = threads > 0 ? threads : blas;
    at::set_num_threads(1);
    set_openblas_threads(n);
    spdlog::debug("threads: {} (OpenBLAS {}, libtorch intra-op 1, pages encoded {} at a time)", n,
                  openblas_threads(), n);
    return n;
  }
  // No OpenBLAS doing the products (a libtorch built with MKL): libtorch's pool multiplies, and
  // pages are encoded as many at a time as it has threads, one thread each, as with OpenBLAS.
  if (threads > 0) at::set_num_threads(threads);
  const int n = std::max(1, at::get_num_threads());
  spdlog::debug("threads: libtorch intra-op {} (no OpenBLAS to size), pages encoded {} at a time",
                n, n);
  return n;
}

void give_threads_to_libtorch_products(bool libtorch_products) {
  const int blas = openblas_threads();
  if (!libtorch_products || blas <= 1 || at::get_num_threads() >= blas) return;
  // bfloat16 compute or bfloat16 products: libtorch (oneDNN) multiplies the linear layers, which
  // one libtorch thread would leave half the cores idle for; attention's float32 products keep
  // OpenBLAS's threads. Each pool's threads sleep while the other computes when OpenMP's wait
  // policy is passive (rerun_with_passive_openmp).
  at::set_num_threads(blas);
  spdlog::debug("threads: libtorch intra-op {} for the bfloat16 products, OpenBLAS {}{}",
                at::get_num_threads(), blas,
                passive_openmp() ? "" : " (OMP_WAIT_POLICY is not passive: the pools may spin)");
}

namespace {
char** g_program_arguments = nullptr;
}

void remember_program_arguments(char** argv) { g_program_arguments = argv; }

bool passive_openmp() {
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  return policy && detail::ascii_lower(policy) == "passive";
}

void rerun_with_passive_openmp() {
  if (std::getenv("OMP_WAIT_POLICY") || !g_program_arguments || !g_program_arguments[0]) return;
  // libgomp reads the policy once, when it loads: this process keeps the one it started with.
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  spdlog::debug(
      "running again with OMP_WAIT_POLICY=PASSIVE (libtorch's and OpenBLAS's threads "
      "both compute)");
  std::fflush(nullptr);
  execv("/proc/self/exe", g_program_arguments);
  unsetenv("OMP_WAIT_POLICY");  // still here: go on as started
}

c10::Device parse_device(const std::string& name) {
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(name);
  } catch (const std::exception&) {
    throw UsageError("unknown device '" + name + "' (use cpu or cuda[:N])");
  }
  if (device.is_cuda() && !at::hasCUDA()) {
    throw UsageError("--device " + name +
                     " requested but this libtorch has no CUDA support or no GPU is visible; "
                     "use --device cpu or build against a CUDA libtorch (-DTorch_DIR=...)");
  }
  if (!device.is_cpu() && !device.is_cuda()) {
    throw UsageError("unsupported device '" + name + "' (use cpu or cuda[:N])");
  }
  return device;
}

c10::ScalarType parse_dtype(const std::string& name, const c10::Device& device) {
  if (name == "auto") return device.is_cuda() ? c10::kBFloat16 : c10::kFloat;
  if (name == "float32" || name == "fp32") return c10::kFloat;
  if (name == "bfloat16" || name == "bf16") return c10::kBFloat16;
  if (name == "float16" || name == "fp16") return c10::kHalf;
  throw UsageError("unknown dtype '" + name + "' (use auto, float32, bfloat16 or float16)");
}

namespace {
// XCR0: the register state the OS saves (bit 1 SSE, 2 AVX, 5-7 AVX-512, 17-18 AMX tiles); 0
// without OSXSAVE.
uint64_t os_saved_state() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
#else
  return 0;
#endif
}

}  // namespace

bool cpu_has_fast_bf16_products() {
#if defined(__x86_64__) || defined(__i386__)
  // The OS must save the tile state (XCR0 bits 17 and 18).
  if ((os_saved_state() & (3u << 17)) != (3u << 17)) return false;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  unsigned a = 0, b = 0, c = 0, d = 0;
  __cpuid_count(7, 0, a, b, c, d);
  const bool amx_bf16 = (d & (1u << 22)) != 0, amx_tile = (d & (1u << 24)) != 0;
  return amx_bf16 && amx_tile;
#else
  return false;
#endif
}

bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  if ((os_saved_state() & 0x6) != 0x6) return false;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 12))) return false;  // FMA
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  return (b & (1u << 5)) != 0;  // AVX2
#else
  return false;
#endif
}

bool cpu_has_avx512_skylakex() {
#if defined(__x86_64__) || defined(__i386__)
  if ((os_saved_state() & 0xE6) != 0xE6 || !cpu_has_avx2_fma()) return false;
  unsigned a = 0, b = 0, c = 0, d = 0;
  __cpuid_count(7, 0, a, b, c, d);
  const unsigned need = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
  return (b & need) == need;  // F, DQ, CD, BW, VL
#else
  return false;
#endif
}

std::string openblas_core_name() {
  using GetCore = char* (*)();
  const auto get = reinterpret_cast<GetCore>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* name = get ? get() : nullptr;
  return name ? std::string(name) : std::string();
}

std::string better_openblas_coretype(const std::string& current, bool avx2_fma, bool avx512) {
  // OpenBLAS's x86-64 cores without AVX2 kernels: what it falls back to on a CPU it does not
  // know. A core it recognised (Haswell, Zen, SkylakeX...) is left as chosen.
  static const char* const fallbacks[] = {"prescott",   "core2",     "penryn",      "dunnington",
                                          "nehalem",    "atom",      "opteron",     "opteron_sse3",
                                          "barcelona",  "nano",      "sandybridge", "katmai",
                                          "coppermine", "northwood", "banias",      "unknown"};
  const std::string name = detail::ascii_lower(current);
  if (name.empty()) return "";
  bool fallback = false;
  for (const char* f : fallbacks) fallback = fallback || name == f;
  if (!fallback) return "";
  if (avx512 && avx2_fma) return "SkylakeX";
  if (avx2_fma) return "Haswell";
  return "";
}

void use_native_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;
  const std::string current = openblas_core_name();
  const std::string better =
      better_openblas_coretype(current, cpu_has_avx2_fma(), cpu_has_avx512_skylakex());
  if (better.empty()) return;
  setenv("OPENBLAS_CORETYPE", better.c_str(), 1);  // child processes start with it too
  setenv("ZIPRERANK_BLAS_CHOSEN", current.c_str(), 1);
  // OpenBLAS built for several CPUs (Debian's is) picks its kernel table in
  // gotoblas_dynamic_init(), which reads OPENBLAS_CORETYPE; dropping the table and picking again
  // switches kernels in this process. Safe here, before the first BLAS call.
  using Step = void (*)();
  const auto quit = reinterpret_cast<Step>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
  const auto init = reinterpret_cast<Step>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
  if (quit && init) {
    quit();
    init();
    if (detail::ascii_lower(openblas_core_name()) == detail::ascii_lower(better)) return;
  }
  // Otherwise run this program again: OpenBLAS reads the variable when it loads.
  if (argv && argv[0]) execv("/proc/self/exe", argv);
  // Still here: go on with the kernels OpenBLAS has.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("ZIPRERANK_BLAS_CHOSEN");
}

namespace {

std::string cpu_brand() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

// GFLOP/s of the best of a few [m, k] x [k, n] products, `threads` libtorch threads for them.
double product_rate(at::ScalarType dtype, int threads) {
  const int64_t m = 384, k = 1024, n = 2816;  // a window's rows against an MLP-sized matrix
  const int saved = at::get_num_threads();
  at::set_num_threads(threads);
  // As the linear layers multiply: activations by a [out, in] weight, transposed.
  const at::Tensor a = at::randn({m, k}).to(dtype), w = at::randn({n, k}).to(dtype);
  double best = 0;
  for (int rep = 0; rep < 8; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    const at::Tensor c = at::linear(a, w);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0 && s > 0) best = std::max(best, 2.0 * m * k * n / s / 1e9);
  }
  at::set_num_threads(saved);
  return best;
}

}  // namespace

MatmulCalibration calibrate_matmul() {
  static MatmulCalibration cached = [] {
    MatmulCalibration c;
    c.threads = std::max(1, openblas_threads() > 0 ? openblas_threads() : at::get_num_threads());
    // A measurement holds for one CPU, BLAS (library and kernels), thread count, libtorch and
    // ziprerank: a build against another libtorch measures again.
    const std::string key = cpu_brand() + "|" + detect_blas().library + "|" + openblas_core_name() +
                            "|threads " + std::to_string(c.threads) + "|libtorch " + TORCH_VERSION +
                            "|" + version_string();
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    const std::filesystem::path dir =
        xdg && *xdg ? std::filesystem::path(xdg) / "ziprerank"
                    : std::filesystem::path(home && *home ? home : "/tmp") / ".cache" / "ziprerank";
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    c.cache_file =
        (dir / ("matmul-" + std::to_string(std::hash<std::string>{}(key)) + ".json")).string();
    // One process measures; others started meanwhile wait for its answer, so that every run on
    // a host takes the same product path.
    const int fd = ::open(c.cache_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) ::flock(fd, LOCK_EX);
    try {
      const nlohmann::json j = nlohmann::json::parse(detail::read_text_file(c.cache_file));
      if (j.at("key").get<std::string>() == key) {
        c.float32_gflops = j.at("float32_gflops").get<double>();
        c.bfloat16_gflops = j.at("bfloat16_gflops").get<double>();
        c.bf16_products = j.at("bf16_products").get<bool>();
        c.from_cache = true;
      }
    } catch (const std::exception&) {
    }
    if (!c.from_cache) {
      c.float32_gflops = product_rate(at::kFloat, 1);  // float32: OpenBLAS's own threads
      // bfloat16 on one libtorch thread: what the embedded model's products get beside
      // OpenBLAS's threads (wider models give libtorch more: give_threads_to_libtorch_products),
      // and a fair measure while OpenBLAS's threads, just used, may still be spinning.
      c.bfloat16_gflops = product_rate(at::kBFloat16, 1);
      // bfloat16 products round their inputs: worth it only for a clear gain.
      c.bf16_products = c.bfloat16_gflops >= 1.25 * c.float32_gflops;
      const nlohmann::json j = {{"key", key},
                                {"float32_gflops", c.float32_gflops},
                                {"bfloat16_gflops", c.bfloat16_gflops},
                                {"bf16_products", c.bf16_products}};
      const std::string text = j.dump(2) + "\n";
      if (fd >= 0 && ::ftruncate(fd, 0) == 0) {
        ssize_t off = 0;
        while (off < static_cast<ssize_t>(text.size())) {
          const ssize_t w = ::pwrite(fd, text.data() + off, text.size() - off, off);
          if (w <= 0) break;
          off += w;
        }
      }
    }
    if (fd >= 0) ::close(fd);  // releases the lock
    return c;
  }();
  return cached;
}

bool parse_matmul(const std::string& name, const c10::Device& device, c10::ScalarType dtype) {
  const bool applies = device.is_cpu() && dtype == c10::kFloat;
  if (name == "auto") {
    if (!applies) return false;
    const MatmulCalibration c = calibrate_matmul();
    spdlog::debug(
        "--matmul auto: {} products ({:.0f} GFLOP/s in bfloat16 on one libtorch thread against "
        "{:.0f} in float32 on {} OpenBLAS thread(s), measured {}{})",
        c.bf16_products ? "bfloat16" : "float32", c.bfloat16_gflops, c.float32_gflops, c.threads,
        c.from_cache ? "earlier, " : "now, ", c.cache_file);
    return c.bf16_products;
  }
  if (name == "float32" || name == "fp32") return false;
  if (name == "bfloat16" || name == "bf16") return applies;
  throw UsageError("unknown --matmul '" + name + "' (use auto, float32 or bfloat16)");
}

namespace {
// A "Key:   123 kB" field of a /proc file, in bytes; 0 when absent.
size_t proc_kib_field(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      std::istringstream ss(line.substr(key.size()));
      size_t kb = 0;
      ss >> kb;
      return kb * 1024;
    }
  }
  return 0;
}
}  // namespace

size_t available_memory_bytes() { return proc_kib_field("/proc/meminfo", "MemAvailable:"); }

size_t peak_rss_bytes() { return proc_kib_field("/proc/self/status", "VmHWM:"); }

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return buf;
}

}  // namespace ziprerank
