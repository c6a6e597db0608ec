// Image decoding and preprocessing against the Python reference: fixtures made by
// tests/fixtures/images/make_image_fixtures.py with Pillow, torch and torchvision.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <string>
#include <vector>

#include "ziprerank/config.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/image.hpp"

namespace ziprerank {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kImages = std::string(ZIPRERANK_TEST_FIXTURES) + "/images/";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

json load_index() {
  std::ifstream in(kImages + "index.json");
  return json::parse(in);
}

uint32_t crc32(const void* data, size_t size) {
  static uint32_t table[256];
  static bool ready = false;
  if (!ready) {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = true;
  }
  uint32_t crc = 0xFFFFFFFFu;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

std::string hex32(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// Largest absolute difference between two equally sized images; -1 when the sizes differ.
int max_abs_diff(const Image& a, const Image& b) {
  if (a.width != b.width || a.height != b.height || a.rgb.size() != b.rgb.size()) return -1;
  int worst = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) worst = std::max(worst, std::abs(a.rgb[i] - b.rgb[i]));
  return worst;
}

PreprocessorConfig config_from(const json& j) {
  PreprocessorConfig c;
  c.patch_size = j.at("patch_size");
  c.temporal_patch_size = j.at("temporal_patch_size");
  c.merge_size = j.at("merge_size");
  c.min_pixels = j.at("min_pixels");
  c.max_pixels = j.at("max_pixels");
  c.image_mean = j.at("image_mean").get<std::vector<double>>();
  c.image_std = j.at("image_std").get<std::vector<double>>();
  c.rescale_factor = j.at("rescale_factor");
  c.resample = j.at("resample");
  return c;
}

PreprocessorConfig qwen3_config() { return qwen3_vl_preprocessor_config(); }

Image synthetic_image(int width, int height, uint32_t seed) {
  std::mt19937 rng(seed);
  Image img;
  img.width = width;
  img.height = height;
  img.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* p = &img.rgb[(static_cast<size_t>(y) * width + x) * 3];
      const bool ink = (y / 6) % 3 == 0 && (rng() % 5) != 0;
      p[0] = ink ? 10 : static_cast<uint8_t>(x * 255 / std::max(1, width - 1));
      p[1] = ink ? 10 : static_cast<uint8_t>(y * 255 / std::max(1, height - 1));
      p[2] = static_cast<uint8_t>(rng() & 0xFF);
    }
  }
  return img;
}

// Checks pixel_values against a fixture entry: the CRC-32 of all bytes and the stored rows.
// Returns the largest absolute difference over the stored rows.
float check_pixel_values(const at::Tensor& pv, const json& expected, const std::string& what) {
  const int64_t rows = expected.at("rows");
  const int64_t cols = expected.at("cols");
  EXPECT_EQ(pv.size(0), rows) << what;
  EXPECT_EQ(pv.size(1), cols) << what;
  if (pv.size(0) != rows || pv.size(1) != cols) return INFINITY;
  const at::Tensor c = pv.contiguous();
  const float* data = c.data_ptr<float>();
  const std::vector<uint8_t> raw = read_bytes(kImages + expected.at("file").get<std::string>());
  const int64_t step = expected.at("row_step");
  float worst = 0.0f;
  size_t offset = 0;
  for (int64_t r = 0; r < rows; r += step) {
    for (int64_t k = 0; k < cols; ++k, offset += 4) {
      float ref;
      std::memcpy(&ref, raw.data() + offset, 4);
      worst = std::max(worst, std::abs(ref - data[r * cols + k]));
    }
  }
  EXPECT_EQ(offset, raw.size()) << what;
  EXPECT_EQ(hex32(crc32(data, static_cast<size_t>(rows * cols) * 4)),
            expected.at("crc32").get<std::string>())
      << what << ": pixel_values are not bit-identical";
  return worst;
}

Image apply_delta(const Image& base, const Image& delta) {
  Image out = base;
  for (size_t i = 0; i < out.rgb.size(); ++i)
    out.rgb[i] = static_cast<uint8_t>(base.rgb[i] + delta.rgb[i] - 128);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

TEST(ImageDecode, MatchesPilConvertRgb) {
  const json index = load_index();
  ASSERT_FALSE(index.at("decode").empty());
  for (const json& e : index.at("decode")) {
    const std::string name = e.at("input");
    const Image got = load_image(kImages + name);
    const Image want = load_image(kImages + e.at("expected").get<std::string>());
    EXPECT_EQ(got.width, e.at("width").get<int>()) << name;
    EXPECT_EQ(got.height, e.at("height").get<int>()) << name;
    const int diff = max_abs_diff(got, want);
    std::printf("  decode %-18s %dx%d max abs diff vs PIL: %d\n", name.c_str(), got.width,
                got.height, diff);
    EXPECT_EQ(diff, 0) << name;
  }
}

TEST(ImageDecode, RgbaDropsAlphaWithoutCompositing) {
  cv::Mat bgra(2, 3, CV_8UC4);
  for (int i = 0; i < 6; ++i) bgra.at<cv::Vec4b>(i / 3, i % 3) = cv::Vec4b(30, 120, 200, i * 50);
  std::vector<uint8_t> png;
  ASSERT_TRUE(cv::imencode(".png", bgra, png));
  const Image img = decode_image(png, "rgba.png");
  ASSERT_EQ(img.width, 3);
  ASSERT_EQ(img.height, 2);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(img.rgb[i * 3 + 0], 200);
    EXPECT_EQ(img.rgb[i * 3 + 1], 120);
    EXPECT_EQ(img.rgb[i * 3 + 2], 30);
  }
}

TEST(ImageDecode, SixteenBitFollowsPil) {
  // Gray 16-bit saturates (PIL mode "I"); colour 16-bit keeps the high byte.
  cv::Mat gray(1, 4, CV_16UC1);
  const uint16_t gv[4] = {0, 200, 256, 65535};
  for (int i = 0; i < 4; ++i) gray.at<uint16_t>(0, i) = gv[i];
  std::vector<uint8_t> png;
  ASSERT_TRUE(cv::imencode(".png", gray, png));
  const Image g = decode_image(png, "gray16.png");
  EXPECT_EQ(g.rgb[0], 0);
  EXPECT_EQ(g.rgb[3], 200);
  EXPECT_EQ(g.rgb[6], 255);
  EXPECT_EQ(g.rgb[9], 255);

  cv::Mat bgr(1, 1, CV_16UC3, cv::Scalar(0x12FF, 0x3400, 0xFF80));
  ASSERT_TRUE(cv::imencode(".png", bgr, png));
  const Image c = decode_image(png, "rgb16.png");
  EXPECT_EQ(c.rgb[0], 0xFF);
  EXPECT_EQ(c.rgb[1], 0x34);
  EXPECT_EQ(c.rgb[2], 0x12);
}

class BadImageFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ziprerank_bad_images_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string put(const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string path = (dir_ / name).string();
    write_bytes(path, bytes);
    return path;
  }

  // load_image must throw InputError naming the file and containing `fragment`.
  void expect_rejected(const std::string& path, const std::string& fragment) {
    try {
      load_image(path);
      ADD_FAILURE() << path << " was accepted";
    } catch (const InputError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(fragment), std::string::npos)
          << "expected '" << fragment << "' in: " << msg;
    }
  }

  fs::path dir_;
};

TEST_F(BadImageFiles, MissingEmptyDirectoryAndText) {
  expect_rejected((dir_ / "nope.png").string(), "not found");
  expect_rejected(put("empty.png", {}), "empty file");
  expect_rejected(dir_.string(), "directory");
  const std::string text = "Search Query: this is a text file, not an image\n";
  expect_rejected(put("notes.png", std::vector<uint8_t>(text.begin(), text.end())),
                  "not a supported image");
}

TEST_F(BadImageFiles, TruncatedFiles) {
  for (const char* name : {"page_1300x517.png", "photo_420.jpg", "progressive.jpg", "lossy.webp",
                           "lossless.webp", "rgb24.bmp"}) {
    std::vector<uint8_t> bytes = read_bytes(kImages + name);
    ASSERT_GT(bytes.size(), 100u) << name;
    bytes.resize(bytes.size() * 6 / 10);
    expect_rejected(put(std::string("cut_") + name, bytes), "");
  }
  // Cut inside the header itself.
  std::vector<uint8_t> head = read_bytes(kImages + "photo_420.jpg");
  head.resize(40);
  expect_rejected(put("head.jpg", head), "truncated");
  head = read_bytes(kImages + "odd_97x61.png");
  head.resize(20);
  expect_rejected(put("head.png", head), "truncated");
}

TEST_F(BadImageFiles, CorruptData) {
  std::vector<uint8_t> png = read_bytes(kImages + "page_1300x517.png");
  for (size_t i = png.size() / 2; i < png.size() / 2 + 64; ++i) png[i] ^= 0x5A;
  expect_rejected(put("corrupt.png", png), "");
  std::vector<uint8_t> webp = read_bytes(kImages + "lossless.webp");
  for (size_t i = 40; i < webp.size() - 8; i += 3) webp[i] ^= 0xA5;
  expect_rejected(put("corrupt.webp", webp), "");
}

TEST_F(BadImageFiles, DecompressionBombHeadersAreRefusedBeforeDecoding) {
  // A 45-byte PNG whose IHDR claims 100000 x 100000 pixels (30 GB of RGB).
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n',
                              0,    0,   0,   13,  'I',  'H',  'D',  'R'};
  for (uint32_t v : {100000u, 100000u}) {
    for (int s = 24; s >= 0; s -= 8) png.push_back(static_cast<uint8_t>(v >> s));
  }
  for (uint8_t b : {8, 2, 0, 0, 0, 0, 0, 0, 0}) png.push_back(b);
  const std::string zeros_idat = "\0\0\0\0IDAT\0\0\0\0";
  png.insert(png.end(), zeros_idat.begin(), zeros_idat.end());
  expect_rejected(put("bomb.png", png), "exceeds the limit");

  // A JPEG frame header claiming 60000 x 60000.
  std::vector<uint8_t> jpg = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0xEA, 0x60, 0xEA,
                              0x60, 0x03, 1,    0x22, 0,    2,    0x11, 1,    3,    0x11,
                              1,    0xFF, 0xDA, 0x00, 0x0C, 0x03, 1,    0x00, 2,    0x11,
                              3,    0x11, 0,    0x3F, 0,    0x12, 0x34, 0x56, 0xFF, 0xD9};
  expect_rejected(put("bomb.jpg", jpg), "exceeds the limit");

  // The cap is a parameter: a real fixture is refused under a tiny cap.
  EXPECT_THROW(load_image(kImages + "odd_97x61.png", 1000), InputError);
  EXPECT_NO_THROW(load_image(kImages + "odd_97x61.png", 97 * 61));
}

// ---------------------------------------------------------------------------------------------
// smart_resize

TEST(Crop, CopiesTheWindowAndRejectsOnesOutside) {
  Image img;
  img.width = 4;
  img.height = 3;
  for (int i = 0; i < 4 * 3 * 3; ++i) img.rgb.push_back(static_cast<uint8_t>(i));
  const Image c = crop_image(img, 1, 1, 2, 2);
  ASSERT_EQ(c.width, 2);
  ASSERT_EQ(c.height, 2);
  // Pixel (x, y) of the crop is pixel (x + 1, y + 1) of the image: byte 3 * (4 * y + x).
  const std::vector<uint8_t> want = {15, 16, 17, 18, 19, 20, 27, 28, 29, 30, 31, 32};
  EXPECT_EQ(c.rgb, want);
  EXPECT_EQ(crop_image(img, 0, 0, 4, 3).rgb, img.rgb);
  EXPECT_THROW(crop_image(img, 3, 0, 2, 1), InputError);
  EXPECT_THROW(crop_image(img, 0, 0, 0, 1), InputError);
  EXPECT_THROW(crop_image(img, -1, 0, 1, 1), InputError);
}

TEST(SmartResize, Qwen3Examples) {
  const PreprocessorConfig cfg = qwen3_config();
  const int64_t factor = 32;
  ResizedSize s = smart_resize(280, 280, factor, cfg.min_pixels, cfg.max_pixels);
  EXPECT_EQ(s.height, 288);
  EXPECT_EQ(s.width, 288);
  s = smart_resize(791, 1024, factor, cfg.min_pixels, cfg.max_pixels);
  EXPECT_EQ(s.height, 800);
  EXPECT_EQ(s.width, 1024);

  const PreprocessedImage a = preprocess_image(synthetic_image(280, 280, 1), cfg, true);
  EXPECT_EQ(a.grid_thw, (std::array<int64_t, 3>{1, 18, 18}));
  EXPECT_EQ(a.num_tokens(), 81);
  const PreprocessedImage b = preprocess_image(synthetic_image(1024, 791, 2), cfg, true);
  EXPECT_EQ(b.grid_thw, (std::array<int64_t, 3>{1, 50, 64}));
  EXPECT_EQ(b.num_tokens(), 800);
  EXPECT_EQ(b.pixel_values.size(0), 50 * 64);
  EXPECT_EQ(b.pixel_values.size(1), 3 * 2 * 16 * 16);
  EXPECT_EQ(b.pixel_values.scalar_type(), at::kFloat);
}

TEST(SmartResize, MinMaxAndRoundingPaths) {
  // Values computed with transformers' smart_resize in Python.
  ResizedSize s = smart_resize(10000, 10000, 32, 65536, 16777216);  // max branch
  EXPECT_EQ(s.height, 4096);
  EXPECT_EQ(s.width, 4096);
  s = smart_resize(100, 50, 32, 65536, 16777216);  // min branch
  EXPECT_EQ(s.height, 384);
  EXPECT_EQ(s.width, 192);
  s = smart_resize(80, 48, 32, 1, 1 << 30);  // 2.5 and 1.5 round half to even
  EXPECT_EQ(s.height, 64);
  EXPECT_EQ(s.width, 64);
  s = smart_resize(4000, 20, 32, 65536, 16777216);  // ratio exactly 200 is allowed
  EXPECT_EQ(s.height, 4000);
  EXPECT_EQ(s.width, 32);
  s = smart_resize(300, 7000, 14 * 2, 3136, 28 * 28 * 1280);  // the max floor keeps >= factor
  EXPECT_EQ(s.height, 196);
  EXPECT_EQ(s.width, 4816);
}

TEST(SmartResize, RejectsExtremeAspectRatioAndEmpty) {
  EXPECT_THROW(smart_resize(1, 10000, 32, 65536, 16777216), InputError);
  EXPECT_THROW(smart_resize(10000, 1, 32, 65536, 16777216), InputError);
  EXPECT_THROW(smart_resize(4001, 20, 32, 65536, 16777216), InputError);
  EXPECT_THROW(smart_resize(0, 10, 32, 65536, 16777216), InputError);
  const PreprocessorConfig cfg = qwen3_config();
  try {
    preprocess_image(synthetic_image(10000, 1, 3), cfg, false);
    ADD_FAILURE() << "accepted a 10000x1 image";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("aspect ratio"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Parity of every stage with the fixtures

// The libtorch major version the fixtures' float path was recorded with (torch 1.13).
constexpr bool kFixtureLibtorch = TORCH_VERSION_MAJOR == 1;

TEST(ImagePreprocessParity, EveryStageMatchesTheReference) {
  const json index = load_index();
  const bool have_native = index.contains("native_generated_with");
  for (const json& e : index.at("preprocess")) {
    const std::string name = e.at("name");
    SCOPED_TRACE(name);
    const PreprocessorConfig cfg =
        config_from(index.at("configs").at(e.at("config").get<std::string>()));
    const bool pre = e.at("page_preresize");
    const Image input = load_image(kImages + e.at("input").get<std::string>());

    // 1. LANCZOS page pre-resize.
    Image current = input;
    int lanczos_diff = 0;
    if (pre) {
      current = page_preresize(input);
      const Image want = load_image(kImages + e.at("preresized").at("file").get<std::string>());
      lanczos_diff = max_abs_diff(current, want);
      EXPECT_EQ(lanczos_diff, 0) << "LANCZOS pre-resize";
    }

    // 2. smart_resize.
    const ResizedSize size =
        smart_resize(current.height, current.width, int64_t{cfg.patch_size} * cfg.merge_size,
                     cfg.min_pixels, cfg.max_pixels);
    EXPECT_EQ(size.height, e.at("smart_resize")[0].get<int64_t>());
    EXPECT_EQ(size.width, e.at("smart_resize")[1].get<int64_t>());

    // 3a. Float-path bicubic (torch 1.13 interpolate + clamp + round).
    const Image ref_float =
        load_image(kImages + e.at("float_path").at("resized").get<std::string>());
    const Image got_float = resize_antialiased(current, size.height, size.width, cfg.resample,
                                               ResizeArithmetic::kFloatRound);
    const int float_diff = max_abs_diff(got_float, ref_float);
    // The float path interpolates with the linked libtorch: bit for bit the fixture's torch 1.13,
    // within 1 level of it under libtorch 2 (the PyTorch wheel's), whose float kernel rounds a
    // few samples the other way.
    if (kFixtureLibtorch) {
      EXPECT_EQ(float_diff, 0) << "float-path bicubic";
    } else {
      EXPECT_LE(float_diff, 1) << "float-path bicubic";
    }

    // 4a. pixel_values from the reference's own uint8 image.
    const float pv_float_diff =
        check_pixel_values(patchify(normalize_image(ref_float, cfg), cfg),
                           e.at("float_path").at("pixel_values"), name + " float path");

    int native_diff = -2;
    float pv_native_diff = -1.0f;
    if (have_native) {
      // 3b. Native uint8 bicubic (torchvision v2 on torch >= 2.1).
      const Image ref_native = apply_delta(
          ref_float,
          load_image(kImages + e.at("native_path").at("resized_delta").get<std::string>()));
      const Image got_native = resize_antialiased(current, size.height, size.width, cfg.resample,
                                                  ResizeArithmetic::kUint8FixedPoint);
      native_diff = max_abs_diff(got_native, ref_native);
      EXPECT_EQ(native_diff, 0) << "native uint8 bicubic";
      pv_native_diff =
          check_pixel_values(patchify(normalize_image(ref_native, cfg), cfg),
                             e.at("native_path").at("pixel_values"), name + " native path");

      // 5. The whole stage in one call.
      const PreprocessedImage full = preprocess_image(input, cfg, pre);
      check_pixel_values(full.pixel_values, e.at("native_path").at("pixel_values"),
                         name + " preprocess_image");
      EXPECT_EQ(full.grid_thw[0], e.at("grid_thw")[0].get<int64_t>());
      EXPECT_EQ(full.grid_thw[1], e.at("grid_thw")[1].get<int64_t>());
      EXPECT_EQ(full.grid_thw[2], e.at("grid_thw")[2].get<int64_t>());
      EXPECT_EQ(full.num_tokens(), e.at("num_tokens").get<int64_t>());
    }
    const PreprocessedImage full_float =
        preprocess_image(input, cfg, pre, ResizeArithmetic::kFloatRound);
    if (kFixtureLibtorch) {
      check_pixel_values(full_float.pixel_values, e.at("float_path").at("pixel_values"),
                         name + " preprocess_image float");
    } else {
      // No fixture for this libtorch's float path: the whole stage must still be its resize
      // followed by normalisation and patching, bit for bit.
      EXPECT_TRUE(
          at::equal(full_float.pixel_values, patchify(normalize_image(got_float, cfg), cfg)))
          << name << " preprocess_image float";
    }

    std::printf(
        "  %-15s %4dx%-4d -> %4dx%-4d -> %4lldx%-4lld  max abs diff: lanczos %d, bicubic float "
        "%d, bicubic uint8 %d, pixel_values %g / %g\n",
        name.c_str(), input.width, input.height, current.width, current.height,
        static_cast<long long>(size.width), static_cast<long long>(size.height), lanczos_diff,
        float_diff, native_diff, pv_float_diff, pv_native_diff);
  }
}

TEST(ImagePreprocessParity, SameSizeResizeIsIdentity) {
  const Image img = synthetic_image(64, 32, 5);
  for (auto mode : {ResizeArithmetic::kUint8FixedPoint, ResizeArithmetic::kFloatRound}) {
    const Image out = resize_antialiased(img, 32, 64, 3, mode);
    EXPECT_EQ(max_abs_diff(out, img), 0);
  }
  EXPECT_EQ(max_abs_diff(page_preresize(img), img), 0);
}

// ---------------------------------------------------------------------------------------------
// Patch layout, checked with ATen view/permute as transformers writes it

TEST(Patchify, RowOrderMatchesTransformersPermute) {
  PreprocessorConfig cfg = qwen3_config();
  cfg.patch_size = 4;  // small patches keep the test quick but exercise every axis
  const int64_t p = 4, m = 2, t = 2, h = 24, w = 40;
  at::Tensor chw = at::rand({3, h, w}, at::kFloat);
  const at::Tensor got = patchify(chw, cfg);

  const int64_t gh = h / p, gw = w / p;
  at::Tensor frames = chw.unsqueeze(0).unsqueeze(0).repeat({1, t, 1, 1, 1});  // [B, T, C, H, W]
  at::Tensor want = frames.view({1, 1, t, 3, gh / m, m, p, gw / m, m, p})
                        .permute({0, 1, 4, 7, 5, 8, 3, 2, 6, 9})
                        .reshape({gh * gw, 3 * t * p * p});
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_TRUE(at::equal(got, want));

  // And one element by hand: row of block (1, 2), inner (1, 0); column (c=2, t=1, y=3, x=1).
  const int64_t row = ((1 * (gw / m) + 2) * m + 1) * m + 0;
  const int64_t col = ((2 * t + 1) * p + 3) * p + 1;
  const float expected = chw[2][(1 * m + 1) * p + 3][(2 * m + 0) * p + 1].item<float>();
  EXPECT_EQ(got[row][col].item<float>(), expected);
}

TEST(Patchify, OnePassFromPixelsEqualsNormalizeThenPatchify) {
  PreprocessorConfig cfg = qwen3_config();
  const Image img = synthetic_image(96, 64, 11);
  for (int variant = 0; variant < 4; ++variant) {
    PreprocessorConfig c = cfg;
    c.do_normalize = variant != 1 && variant != 3;
    c.do_rescale = variant != 2 && variant != 3;
    c.image_mean = {0.48, 0.46, 0.41};
    c.image_std = {0.27, 0.26, 0.28};
    if (variant == 0) c.temporal_patch_size = 3;
    const at::Tensor want = patchify(normalize_image(img, c), c);
    const at::Tensor got = normalize_patchify(img, c);
    ASSERT_EQ(got.sizes(), want.sizes()) << variant;
    EXPECT_TRUE(at::equal(got, want)) << variant;  // bit for bit
  }
  EXPECT_THROW(normalize_patchify(synthetic_image(48, 64, 1), cfg), InputError);
}

TEST(Patchify, RejectsSizesThatAreNotMultiples) {
  const PreprocessorConfig cfg = qwen3_config();
  EXPECT_THROW(patchify(at::zeros({3, 48, 64}), cfg), InputError);
  PreprocessorConfig no_resize = cfg;
  no_resize.do_resize = false;
  EXPECT_THROW(preprocess_image(synthetic_image(50, 64, 1), no_resize, false), InputError);
}

TEST(Normalize, FusedRescaleOrderIsSubtractThenDivide) {
  // With mean = std = 0.5 the reference computes (x - 127.5f) / 127.5f in float32; the algebraic
  // twin x / 127.5 - 1 rounds differently for some x, so it is only close.
  const Image img = synthetic_image(16, 16, 9);
  const at::Tensor x = normalize_image(img, qwen3_config());
  const float* d = x.data_ptr<float>();
  int differs_from_twin = 0;
  for (int c = 0; c < 3; ++c) {
    for (int i = 0; i < 256; ++i) {
      const float v = img.rgb[i * 3 + c];
      EXPECT_EQ(d[c * 256 + i], (v - 127.5f) / 127.5f);
      EXPECT_NEAR(d[c * 256 + i], v / 127.5f - 1.0f, 1e-7f);
      differs_from_twin += d[c * 256 + i] != v / 127.5f - 1.0f;
    }
  }
  EXPECT_GT(differs_from_twin, 0);
}

// ---------------------------------------------------------------------------------------------

TEST(ImagePreprocessTiming, OnePage1024x791) {
  const PreprocessorConfig cfg = qwen3_config();
  const Image page = synthetic_image(1024, 791, 7);
  preprocess_image(page, cfg, true);  // warm-up
  for (auto mode : {ResizeArithmetic::kUint8FixedPoint, ResizeArithmetic::kFloatRound}) {
    std::vector<double> ms;
    for (int i = 0; i < 5; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const PreprocessedImage out = preprocess_image(page, cfg, true, mode);
      const auto t1 = std::chrono::steady_clock::now();
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      EXPECT_EQ(out.num_tokens(), 800);
    }
    std::sort(ms.begin(), ms.end());
    std::printf("  preprocess 1024x791 page (%s resize): median %.1f ms (min %.1f, max %.1f)\n",
                mode == ResizeArithmetic::kUint8FixedPoint ? "uint8" : "float", ms[2], ms[0],
                ms[4]);
  }
}

}  // namespace
}  // namespace ziprerank
