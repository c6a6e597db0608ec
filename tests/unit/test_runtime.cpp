#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/version.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ziprerank/errors.hpp"
#include "ziprerank/runtime.hpp"

using namespace ziprerank;

TEST(Runtime, OptimisedBlasIsActive) {
  // libtorch from Debian calls the system BLAS; scripts/install_deps.sh must leave OpenBLAS active.
  (void)at::mm(at::ones({8, 8}), at::ones({8, 8}));  // make sure the BLAS library is loaded
  const BlasInfo info = detect_blas();
  EXPECT_FALSE(info.reference) << "the reference BLAS is active (" << info.library
                               << "): run scripts/install_deps.sh";
  EXPECT_FALSE(info.library.empty());
}

TEST(Runtime, AsksForBetterOpenBlasKernelsOnlyForAFallbackCore) {
  // OpenBLAS's fallbacks for a CPU it does not know get the kernels the CPU runs.
  EXPECT_EQ(better_openblas_coretype("Prescott", true, true), "SkylakeX");
  EXPECT_EQ(better_openblas_coretype("Prescott", true, false), "Haswell");
  EXPECT_EQ(better_openblas_coretype("NEHALEM", true, false), "Haswell");
  EXPECT_EQ(better_openblas_coretype("Sandybridge", true, true), "SkylakeX");
  EXPECT_EQ(better_openblas_coretype("Core2", false, false), "");    // nothing better to ask for
  EXPECT_EQ(better_openblas_coretype("Prescott", false, true), "");  // AVX-512 implies AVX2
  // A core OpenBLAS recognised is left alone, also when the CPU has more.
  EXPECT_EQ(better_openblas_coretype("Haswell", true, true), "");
  EXPECT_EQ(better_openblas_coretype("Zen", true, true), "");
  EXPECT_EQ(better_openblas_coretype("SkylakeX", true, true), "");
  EXPECT_EQ(better_openblas_coretype("SapphireRapids", true, true), "");
  EXPECT_EQ(better_openblas_coretype("", true, true), "");  // not OpenBLAS
  // AVX-512 as SkylakeX's kernels use it needs AVX2 and FMA too.
  if (cpu_has_avx512_skylakex()) EXPECT_TRUE(cpu_has_avx2_fma());
}

TEST(Runtime, ThreadsSizeOpenBlasAndLeaveLibtorchAtOneThread) {
  (void)at::mm(at::ones({8, 8}), at::ones({8, 8}));
  const int before = openblas_threads();
  const int torch_before = at::get_num_threads();
  EXPECT_THROW(configure_threads(-1), UsageError);
  if (before == 0) {
    // Another BLAS (MKL): libtorch takes the threads, and pages are encoded as many at a time,
    // one thread each. (An OpenBLAS that OpenCV loads may still be there, doing no products.)
    EXPECT_EQ(configure_threads(2), 2);
    EXPECT_EQ(at::get_num_threads(), 2);
    at::set_num_threads(torch_before);
    return;
  }
  EXPECT_EQ(configure_threads(3), 3);
  EXPECT_EQ(openblas_threads(), 3);
  EXPECT_EQ(at::get_num_threads(), 1);
  EXPECT_EQ(configure_threads(0), 3);  // 0 keeps OpenBLAS's count
  EXPECT_TRUE(set_openblas_threads(1));
  EXPECT_EQ(openblas_threads(), 1);
  EXPECT_FALSE(set_openblas_threads(0));
  EXPECT_EQ(openblas_threads(), 1);
  set_openblas_threads(before);
  at::set_num_threads(torch_before);
}

TEST(Runtime, ParsesDevicesAndDtypes) {
  EXPECT_TRUE(parse_device("cpu").is_cpu());
  EXPECT_THROW(parse_device("tpu"), UsageError);
  if (!at::hasCUDA()) {
    EXPECT_THROW(parse_device("cuda"), UsageError);
  }
  EXPECT_EQ(parse_dtype("auto", c10::Device(c10::kCPU)), at::kFloat);
  EXPECT_EQ(parse_dtype("bf16", c10::Device(c10::kCPU)), at::kBFloat16);
  EXPECT_EQ(parse_dtype("float16", c10::Device(c10::kCPU)), at::kHalf);
  EXPECT_THROW(parse_dtype("int8", c10::Device(c10::kCPU)), UsageError);
}

TEST(Runtime, MatmulChoiceAppliesToFloat32ComputeOnCpuOnly) {
  const c10::Device cpu(c10::kCPU), cuda(c10::kCUDA, 0);
  EXPECT_TRUE(parse_matmul("bfloat16", cpu, at::kFloat));
  EXPECT_TRUE(parse_matmul("bf16", cpu, at::kFloat));
  EXPECT_FALSE(parse_matmul("float32", cpu, at::kFloat));
  EXPECT_FALSE(parse_matmul("fp32", cpu, at::kFloat));
  // Already bfloat16 compute, or a GPU: nothing to do.
  EXPECT_FALSE(parse_matmul("bfloat16", cpu, at::kBFloat16));
  EXPECT_FALSE(parse_matmul("bfloat16", cuda, at::kFloat));
  EXPECT_FALSE(parse_matmul("auto", cuda, at::kFloat));
  EXPECT_THROW(parse_matmul("int8", cpu, at::kFloat), UsageError);
}

TEST(Runtime, MatmulAutoFollowsOneMeasurementKeptPerHost) {
  // The first calibration in this process measures (or reads the host's earlier answer); the
  // answer is written down and auto follows it.
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("zr_cal_" + std::to_string(::getpid()));
  ::setenv("XDG_CACHE_HOME", dir.c_str(), 1);
  const MatmulCalibration c = calibrate_matmul();
  ::unsetenv("XDG_CACHE_HOME");
  EXPECT_GT(c.float32_gflops, 0);
  EXPECT_GT(c.bfloat16_gflops, 0);
  EXPECT_EQ(c.bf16_products, c.bfloat16_gflops >= 1.25 * c.float32_gflops);
  ASSERT_FALSE(c.cache_file.empty());
  const auto saved = nlohmann::json::parse(std::ifstream(c.cache_file));
  EXPECT_EQ(saved.at("bf16_products").get<bool>(), c.bf16_products);
  EXPECT_DOUBLE_EQ(saved.at("float32_gflops").get<double>(), c.float32_gflops);
  // The answer belongs to this libtorch: a build against another one measures again.
  EXPECT_NE(saved.at("key").get<std::string>().find(std::string("|libtorch ") + TORCH_VERSION),
            std::string::npos)
      << saved.at("key");
  EXPECT_EQ(parse_matmul("auto", c10::Device(c10::kCPU), at::kFloat), c.bf16_products);
  // Later calls in the process give the same answer without measuring again.
  EXPECT_EQ(calibrate_matmul().bfloat16_gflops, c.bfloat16_gflops);
  std::filesystem::remove_all(dir);
}

TEST(Runtime, FormatsBytesAndReportsPeakRss) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(3.0 * 1024 * 1024 * 1024), "3.00 GiB");
  EXPECT_GT(peak_rss_bytes(), size_t{1} << 20);
  EXPECT_THROW(configure_threads(-1), UsageError);
}

TEST(Runtime, LibtorchProductsTakeOpenBlasThreadCount) {
  const int torch_threads = at::get_num_threads();
  const int blas = openblas_threads();
  at::set_num_threads(1);
  give_threads_to_libtorch_products(false);  // float32 products: nothing changes
  EXPECT_EQ(at::get_num_threads(), 1);
  give_threads_to_libtorch_products(true);
  // With OpenBLAS on several threads libtorch's pool gets as many; OpenBLAS keeps its own.
  EXPECT_EQ(at::get_num_threads(), blas > 1 ? blas : 1);
  EXPECT_EQ(openblas_threads(), blas);
  at::set_num_threads(torch_threads);
}

TEST(Runtime, PassiveOpenMpFollowsTheVariable) {
  const char* saved = std::getenv("OMP_WAIT_POLICY");
  const std::string keep = saved ? saved : "";
  ::setenv("OMP_WAIT_POLICY", "Passive", 1);
  EXPECT_TRUE(passive_openmp());
  ::setenv("OMP_WAIT_POLICY", "active", 1);
  EXPECT_FALSE(passive_openmp());
  ::unsetenv("OMP_WAIT_POLICY");
  EXPECT_FALSE(passive_openmp());
  if (saved) ::setenv("OMP_WAIT_POLICY", keep.c_str(), 1);
}
