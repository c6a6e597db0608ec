// Process-wide runtime set-up: logging, threads, BLAS sanity, device and dtype selection.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace ziprerank {

/// Log level names accepted by --log-level: trace, debug, info, warn, error, off.
void setup_logging(const std::string& level);

struct BlasInfo {
  std::string library;     ///< path of the BLAS library mapped into this process, or a description
  bool reference = false;  ///< the unoptimised netlib reference BLAS
};

/// Which BLAS libtorch is calling. On Debian's libtorch this is whatever libblas.so.3 points to.
BlasInfo detect_blas();
/// Logs a loud warning when the reference BLAS is active (matrix products ~60x slower), and at
/// debug level the BLAS library and OpenBLAS's kernels.
void warn_if_reference_blas();

/// The kernels OpenBLAS chose at load ("SkylakeX", "Haswell", "Prescott"...); empty when OpenBLAS
/// is not this process's BLAS.
std::string openblas_core_name();
/// The OPENBLAS_CORETYPE to ask for when OpenBLAS chose `current` on a CPU that runs better ones:
/// OpenBLAS picks its kernels by the CPU's family and model, and on a CPU it does not know (a
/// virtual machine's generic "Intel(R) Xeon(R) Processor", say) it falls back to its SSE3 kernels
/// (Prescott), several times slower than the AVX2 or AVX-512 ones the CPU has. "SkylakeX" with
/// AVX-512 (F, CD, BW, DQ, VL), "Haswell" with AVX2 and FMA, when `current` is such a fallback
/// (a core without AVX2 kernels); empty otherwise, also when `current` is empty.
std::string better_openblas_coretype(const std::string& current, bool avx2_fma, bool avx512);
/// Whether this CPU and its OS run AVX2 with FMA / the AVX-512 subsets OpenBLAS's SkylakeX kernels
/// use (the OS saving the registers' state).
bool cpu_has_avx2_fma();
bool cpu_has_avx512_skylakex();
/// Call first in main, before any BLAS call: when OpenBLAS chose fallback kernels for this CPU
/// (better_openblas_coretype) and OPENBLAS_CORETYPE is not set, sets it (child processes inherit
/// it) and has OpenBLAS pick its kernels again in this process; where that is not possible, runs
/// this program again (execv of /proc/self/exe with the same arguments), since OpenBLAS reads the
/// variable when it loads. Setting OPENBLAS_CORETYPE yourself turns it off.
void use_native_blas_kernels(char** argv);

/// Tunes glibc's allocator for large, short-lived tensors (a 2x speed-up measured on CPU).
void tune_allocator();

/// OpenBLAS's thread count when OpenBLAS is the BLAS of libtorch's products and says it; 0
/// otherwise (no OpenBLAS, or a libtorch built with MKL, where an OpenBLAS in the process does none
/// of them).
int openblas_threads();
/// Sets OpenBLAS's thread count; false (nothing done) when OpenBLAS is not in this process.
bool set_openblas_threads(int threads);

/// Sets up `threads` compute threads (0 = OpenBLAS's own count, from OPENBLAS_NUM_THREADS or the
/// cores) without oversubscribing the cores: with OpenBLAS, libtorch's intra-op threads stay at 1
/// and OpenBLAS gets `threads` (both pools at N threads each run 2x slower on 2 cores); without
/// it, libtorch gets `threads` (0 keeps its default). Returns how many pages to encode at once,
/// one thread each (Reranker::set_encode_workers): OpenBLAS's threads, else libtorch's. Logs the
/// choice.
int configure_threads(int threads);
/// Once the model's products are known (after configure_threads): with `libtorch_products`
/// (bfloat16 compute, or bfloat16 products, on CPU) libtorch's pool gets as many threads as
/// OpenBLAS's; otherwise nothing changes. Pays where OpenMP's threads sleep between parallel
/// regions (passive_openmp): the 8B shape's language model in bfloat16 ran 1.5x faster, while
/// with spinning threads the two pools took each other's cores.
void give_threads_to_libtorch_products(bool libtorch_products);
/// Whether OMP_WAIT_POLICY is passive in this process.
bool passive_openmp();
/// Keeps the program's arguments for rerun_with_passive_openmp (main calls it once).
void remember_program_arguments(char** argv);
/// Runs this program again from the start with OMP_WAIT_POLICY=PASSIVE when the variable is unset
/// (libgomp reads it only when it loads); returns when it is set or running again fails. Call it
/// before any input is read or any file or socket is opened.
void rerun_with_passive_openmp();

/// Parses "cpu", "cuda", "cuda:1"; throws UsageError with what is available.
c10::Device parse_device(const std::string& name);
/// "auto" -> float32 on CPU, bfloat16 on CUDA; or "float32"/"fp32", "bfloat16"/"bf16",
/// "float16"/"fp16".
c10::ScalarType parse_dtype(const std::string& name, const c10::Device& device);

/// Whether this CPU multiplies bfloat16 matrices in hardware (AMX-BF16, enabled by the OS): there
/// bfloat16 products run 2-3x faster than float32 ones; elsewhere they are emulated and slower.
bool cpu_has_fast_bf16_products();
/// What a short measurement on this host says of bfloat16 against float32 matrix products.
struct MatmulCalibration {
  double float32_gflops = 0;   ///< through the BLAS libtorch calls (OpenBLAS's threads)
  double bfloat16_gflops = 0;  ///< through libtorch, on one thread
  int threads = 1;             ///< the cores ziprerank was given (OpenBLAS's thread count)
  bool bf16_products = false;  ///< bfloat16 at least 1.25x faster
  bool from_cache = false;
  std::string cache_file;
};
/// Measures both products once per host, CPU, OpenBLAS kernel, thread count and ziprerank
/// version, and keeps the answer in ~/.cache/ziprerank (XDG_CACHE_HOME), so every later run on
/// the host takes the same path; processes started together wait for one measurement.
MatmulCalibration calibrate_matmul();
/// --matmul: "auto" -> bfloat16 products when computing in float32 on a CPU where
/// calibrate_matmul() measured them clearly faster, else float32; "float32"/"fp32" -> never;
/// "bfloat16"/"bf16" -> always for float32 compute on CPU. Returns ModelOptions::bf16_products.
bool parse_matmul(const std::string& name, const c10::Device& device, c10::ScalarType dtype);

/// Memory the kernel reports as available (MemAvailable), 0 when unknown.
size_t available_memory_bytes();

/// Peak resident set size of this process in bytes (VmHWM), 0 when unknown.
size_t peak_rss_bytes();
/// "1.23 GiB" style.
std::string format_bytes(double bytes);

const char* version_string();

}  // namespace ziprerank
