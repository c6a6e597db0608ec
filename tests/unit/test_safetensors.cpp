#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "ziprerank/errors.hpp"
#include "ziprerank/safetensors.hpp"

using namespace ziprerank;
namespace fs = std::filesystem;

namespace {
const std::string kFixtures = ZIPRERANK_TEST_FIXTURES;

std::vector<uint8_t> make_file(const std::string& header, size_t data_bytes,
                               int64_t len_override = -1) {
  std::vector<uint8_t> out(8);
  const uint64_t n = len_override >= 0 ? static_cast<uint64_t>(len_override) : header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0xAB);
  return out;
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
  try {
    parse_safetensors_header(bytes.data(), bytes.size(), "test.safetensors");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::vector<uint8_t>& bytes, const std::string& needle) {
  const std::string msg = parse_error(bytes);
  ASSERT_FALSE(msg.empty()) << "expected an error containing '" << needle << "'";
  EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  EXPECT_NE(msg.find("test.safetensors"), std::string::npos) << msg;
}

fs::path temp_path(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("zr_st_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}
}  // namespace

TEST(Safetensors, WriterReaderRoundTrip) {
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-8f, -7.0f};
  const std::vector<uint16_t> b = {0x3F80, 0xC000, 0x0000};  // bf16 1, -2, 0
  const std::vector<uint16_t> h = {0x3C00};                  // fp16 1
  SafetensorsWriter w;
  w.add("layer.weight", DType::kF32, {2, 3}, a.data(), a.size() * 4);
  w.add("layer.bias", DType::kBF16, {3}, b.data(), b.size() * 2);
  w.add("scalar", DType::kF16, {}, h.data(), 2);
  w.add("empty", DType::kF32, {0, 4}, nullptr, 0);
  w.set_metadata("format", "pt");
  const fs::path p = temp_path("roundtrip.safetensors");
  w.write(p.string());
  EXPECT_FALSE(fs::exists(p.string() + ".tmp"));

  SafetensorsFile f(p.string());
  EXPECT_EQ(f.header().metadata.at("format"), "pt");
  EXPECT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ((8 + f.header().header_size) % 8, 0u) << "data section must start 8-byte aligned";
  const TensorInfo* wi = f.find("layer.weight");
  ASSERT_NE(wi, nullptr);
  EXPECT_EQ(wi->dtype, DType::kF32);
  EXPECT_EQ(wi->shape, (std::vector<int64_t>{2, 3}));
  std::vector<float> got(6);
  std::memcpy(got.data(), f.data(*wi), 24);
  EXPECT_EQ(got, a);
  const TensorInfo* bi = f.find("layer.bias");
  ASSERT_NE(bi, nullptr);
  EXPECT_EQ(bi->dtype, DType::kBF16);
  EXPECT_EQ(std::memcmp(f.data(*bi), b.data(), 6), 0);
  const TensorInfo* si = f.find("scalar");
  ASSERT_NE(si, nullptr);
  EXPECT_TRUE(si->shape.empty());
  EXPECT_EQ(si->numel(), 1u);
  ASSERT_NE(f.find("empty"), nullptr);
  EXPECT_EQ(f.find("empty")->numel(), 0u);
  EXPECT_EQ(f.find("nope"), nullptr);
  fs::remove_all(p.parent_path());
}

TEST(Safetensors, ReadsFileWrittenByIndependentImplementation) {
  // Written by tests/fixtures/safetensors/st_reference.py (Python standard library only).
  SafetensorsFile f(kFixtures + "/safetensors/reference.safetensors");
  EXPECT_EQ(f.header().metadata.at("source"), "st_reference.py");
  const TensorInfo* a = f.find("a.f32");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 4}));
  std::vector<float> va(12);
  std::memcpy(va.data(), f.data(*a), 48);
  for (int i = 0; i < 12; ++i) EXPECT_FLOAT_EQ(va[i], 0.5f * i - 1.0f);
  const TensorInfo* b = f.find("b.bf16");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::kBF16);
  std::vector<uint16_t> vb(5);
  std::memcpy(vb.data(), f.data(*b), 10);
  for (int i = 0; i < 5; ++i) {
    uint32_t bits = static_cast<uint32_t>(vb[i]) << 16;
    float x;
    std::memcpy(&x, &bits, 4);
    EXPECT_FLOAT_EQ(x, static_cast<float>(i) * 2.0f - 3.0f);
  }
  const TensorInfo* c = f.find("c.f16");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->dtype, DType::kF16);
  EXPECT_EQ(c->shape, (std::vector<int64_t>{2}));
}

TEST(Safetensors, RejectsFileShorterThanLengthPrefix) {
  expect_error({1, 2, 3}, "shorter than the 8-byte header length");
}

TEST(Safetensors, RejectsHeaderLengthPastEndOfFile) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expect_error(make_file(h, 4, 4096), "runs past the end of the file");
}

TEST(Safetensors, RejectsHugeHeaderLengthWithoutAllocating) {
  expect_error(make_file("{}", 0, int64_t{1} << 40), "exceeds the");
}

TEST(Safetensors, RejectsTruncatedDataSection) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  auto bytes = make_file(h, 16);
  bytes.resize(bytes.size() - 5);
  expect_error(bytes, "truncated");
}

TEST(Safetensors, RejectsOverlappingOffsets) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  expect_error(make_file(h, 12), "overlap");
}

TEST(Safetensors, RejectsGapBetweenTensors) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                        R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  expect_error(make_file(h, 12), "gap");
}

TEST(Safetensors, RejectsUncoveredTrailingBytes) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expect_error(make_file(h, 8), "tensors cover 4");
}

TEST(Safetensors, RejectsWrongByteLength) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})";
  expect_error(make_file(h, 12), "needs 16");
}

TEST(Safetensors, RejectsUnknownAndUnsupportedDtypesByName) {
  expect_error(make_file(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", 1),
               "unknown dtype 'Q4'");
  expect_error(make_file(R"({"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8),
               "dtype I64");
}

TEST(Safetensors, RejectsBadJson) {
  expect_error(make_file(R"({"a":{"dtype":"F32",)", 0), "not valid JSON");
  expect_error(make_file("[1,2]", 0), "does not start with a JSON object");
  expect_error(make_file(R"({"a": 3})", 0), "not an object");
  // A number too large to represent (found by fuzzing: must be an error, not a crash).
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1E999],"data_offsets":[0,4]}})", 4),
               "not valid JSON");
}

TEST(Safetensors, RejectsDuplicateNames) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                        R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_error(make_file(h, 8), "appears twice");
}

TEST(Safetensors, RejectsBadOffsetsAndShapes) {
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8),
               "begin after end");
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
               "non-negative integer");
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4),
               "data_offsets");
  expect_error(
      make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4),
      "overflows");
  expect_error(make_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), "no string 'dtype'");
  expect_error(make_file(R"({"__metadata__":{"k":1}})", 0), "not a string");
}

TEST(Safetensors, MissingAndEmptyFilesAreInputErrors) {
  EXPECT_THROW(SafetensorsFile("/nonexistent/model.safetensors"), InputError);
  const fs::path p = temp_path("empty.safetensors");
  { std::ofstream(p.string()); }
  try {
    SafetensorsFile f(p.string());
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("shorter than"), std::string::npos) << e.what();
  }
  EXPECT_THROW(SafetensorsFile(p.parent_path().string()), InputError);  // a directory
  fs::remove_all(p.parent_path());
}

TEST(Safetensors, WriterRejectsInconsistentInput) {
  SafetensorsWriter w;
  const float x[2] = {1, 2};
  EXPECT_THROW(w.add("a", DType::kF32, {3}, x, 8), InternalError);
  w.add("a", DType::kF32, {2}, x, 8);
  EXPECT_THROW(w.add("a", DType::kF32, {2}, x, 8), InternalError);
  EXPECT_THROW(w.add("__metadata__", DType::kF32, {2}, x, 8), InternalError);
}

TEST(Safetensors, StreamWriterWritesTheSameBytesInAnyOrderAndOnlyWhenComplete) {
  const fs::path dir = fs::temp_directory_path() / ("zr_st_stream_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -1.0f};
  const std::vector<uint16_t> b = {0x3f80, 0xbf80, 0x4000};
  SafetensorsWriter whole;
  whole.add("z.weight", DType::kF32, {2, 3}, a.data(), a.size() * sizeof(float));
  whole.add("a.bias", DType::kBF16, {3}, b.data(), b.size() * sizeof(uint16_t));
  whole.set_metadata("format", "pt");
  whole.write((dir / "whole.safetensors").string());
  {
    SafetensorsStreamWriter stream(
        (dir / "stream.safetensors").string(),
        {{"z.weight", DType::kF32, {2, 3}}, {"a.bias", DType::kBF16, {3}}}, {{"format", "pt"}});
    stream.put("z.weight", a.data(), a.size() * sizeof(float));      // out of file order
    EXPECT_THROW(stream.put("a.bias", b.data(), 2), InternalError);  // wrong size
    EXPECT_THROW(stream.put("nope", b.data(), 6), InternalError);
    EXPECT_THROW(stream.finish(), InternalError);  // a.bias missing
    EXPECT_FALSE(fs::exists(dir / "stream.safetensors"));
    stream.put("a.bias", b.data(), b.size() * sizeof(uint16_t));
    stream.finish();
  }
  std::ifstream x(dir / "whole.safetensors", std::ios::binary),
      y(dir / "stream.safetensors", std::ios::binary);
  const std::string bx((std::istreambuf_iterator<char>(x)), {}),
      by((std::istreambuf_iterator<char>(y)), {});
  EXPECT_EQ(bx, by);
  EXPECT_FALSE(fs::exists(dir / "stream.safetensors.tmp"));
  {
    // Abandoned before finish(): nothing is left behind.
    SafetensorsStreamWriter stream((dir / "gone.safetensors").string(), {{"w", DType::kF32, {1}}});
  }
  EXPECT_FALSE(fs::exists(dir / "gone.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "gone.safetensors.tmp"));
  fs::remove_all(dir);
}
