// test_safetensors.cpp: safetensors reading (every malformed-file rule, each built by hand),
// writer -> reader round trips for every dtype, sharded checkpoints and their index, and the
// atomicity of abandoned writes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "tests/fifo_guard.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Deterministic, non-zero bytes that differ per tensor (seed), so a swapped or shifted tensor
// cannot compare equal.
std::vector<std::byte> pattern(size_t n, unsigned seed) {
  std::vector<std::byte> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = std::byte(static_cast<uint8_t>(i * 31 + seed * 101 + 1));
  return out;
}

std::vector<std::byte> to_vector(std::span<const std::byte> s) { return {s.begin(), s.end()}; }

// Writes a file as <u64 LE length><header><data>; `length` overrides the stored header length.
void write_raw(const std::string& path, const std::string& header, const std::string& data,
               std::optional<uint64_t> length = std::nullopt) {
  const uint64_t n = length.value_or(header.size());
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(n >> (8 * i));
  bytes += header;
  bytes += data;
  write_file_atomic(path, bytes);
}

std::string entry(const std::string& dtype, const std::string& shape, const std::string& offs) {
  return R"({"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offs + "}";
}

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "dsv4_st_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  std::vector<std::string> entries(const std::string& sub = "") const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(fs::path(dir_) / sub))
      out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string dir_;
};

// ---------------------------------------------------------------------------------------------
// Malformed files: each test builds the bad bytes by hand and checks that the message names the
// file, the tensor where there is one, and the rule that was broken.

class SafetensorsMalformed : public TempDirTest {
 protected:
  // Writes the file and returns the error message of opening it ("" and a failure if it opens).
  std::string open_error(const std::string& header, const std::string& data = "",
                         std::optional<uint64_t> length = std::nullopt) {
    write_raw(file_, header, data, length);
    return open_error_of(file_);
  }
  static std::string open_error_of(const std::string& p) {
    try {
      SafetensorsFile::open(p);
    } catch (const Error& e) {
      // A damaged file is the user's to fix: named in their words, without a source location.
      EXPECT_TRUE(e.user()) << e.what();
      return e.what();
    }
    ADD_FAILURE() << "open of " << p << " succeeded but must fail";
    return "";
  }
  void SetUp() override {
    TempDirTest::SetUp();
    file_ = path("bad.safetensors");
  }
  std::string file_;
};

TEST_F(SafetensorsMalformed, FileShorterThan8Bytes) {
  write_file_atomic(file_, "abc");
  EXPECT_THAT(open_error_of(file_), AllOf(HasSubstr(file_), HasSubstr("3 bytes"),
                                          HasSubstr("shorter than the 8-byte header length")));
}

TEST_F(SafetensorsMalformed, EmptyFile) {
  write_file_atomic(file_, "");
  EXPECT_THAT(open_error_of(file_), AllOf(HasSubstr(file_), HasSubstr("shorter than")));
}

TEST_F(SafetensorsMalformed, MissingFile) {
  EXPECT_THAT(open_error_of(path("nope.safetensors")),
              AllOf(HasSubstr(path("nope.safetensors")), HasSubstr("No such file")));
}

TEST_F(SafetensorsMalformed, DirectoryInsteadOfFile) {
  EXPECT_THAT(open_error_of(dir_), AllOf(HasSubstr(dir_), HasSubstr("not a regular file")));
}

// A shard that is a FIFO used to hang `inspect` forever (opened before the regular-file check).
TEST_F(SafetensorsMalformed, FifoIsRefusedWithoutBlocking) {
  dsv4::testing::FifoGuard fifo(path("fifo.safetensors"));
  EXPECT_THAT(open_error_of(fifo.path()), AllOf(HasSubstr(fifo.path()), HasSubstr("not a regular file")));
  EXPECT_LT(fifo.elapsed(), std::chrono::seconds(2)) << "open blocked on the FIFO";
}

TEST_F(SafetensorsMalformed, HeaderLengthZero) {
  EXPECT_THAT(open_error("{}", "", 0), AllOf(HasSubstr(file_), HasSubstr("header length is 0")));
}

TEST_F(SafetensorsMalformed, HeaderLengthAboveLimit) {
  EXPECT_THAT(open_error("{}", "", kMaxHeaderBytes + 1),
              AllOf(HasSubstr(file_), HasSubstr("exceeds the limit of 100000000")));
}

TEST_F(SafetensorsMalformed, HeaderLengthBeyondFileEnd) {
  EXPECT_THAT(open_error("{}", "", 64),
              AllOf(HasSubstr(file_), HasSubstr("header length 64 runs past the end of the file")));
}

TEST_F(SafetensorsMalformed, JsonNotWellFormed) {
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32",)"),
              AllOf(HasSubstr(file_), HasSubstr("not well-formed JSON"),
                    HasSubstr("parse error at line 1")));  // nlohmann's message, less its tag
}

TEST_F(SafetensorsMalformed, JsonNotAnObject) {
  EXPECT_THAT(open_error("[1, 2]"),
              AllOf(HasSubstr(file_), HasSubstr("header must be a JSON object"),
                    HasSubstr("array")));
}

TEST_F(SafetensorsMalformed, EntryNotAnObject) {
  EXPECT_THAT(open_error(R"({"w": [0, 4]})", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"),
                    HasSubstr("header entry must be an object")));
}

TEST_F(SafetensorsMalformed, MissingDtype) {
  EXPECT_THAT(open_error(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"),
                    HasSubstr("dtype must be a string"), HasSubstr("missing")));
}

TEST_F(SafetensorsMalformed, DtypeNotString) {
  EXPECT_THAT(open_error(R"({"w": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}})", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"),
                    HasSubstr("dtype must be a string"), HasSubstr("number")));
}

TEST_F(SafetensorsMalformed, UnknownDtype) {
  EXPECT_THAT(open_error("{\"w\": " + entry("F4", "[8]", "[0,4]") + "}", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"), HasSubstr("unknown dtype 'F4'")));
}

TEST_F(SafetensorsMalformed, MissingShape) {
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"), HasSubstr("shape must be an array"),
                    HasSubstr("missing")));
}

TEST_F(SafetensorsMalformed, ShapeNotArray) {
  EXPECT_THAT(open_error("{\"w\": " + entry("F32", "1", "[0,4]") + "}", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"),
                    HasSubstr("shape must be an array")));
}

TEST_F(SafetensorsMalformed, ShapeEntryNegative) {
  EXPECT_THAT(open_error("{\"w\": " + entry("F32", "[2,-3]", "[0,4]") + "}", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"),
                    HasSubstr("shape entry 1 is negative (-3)")));
}

TEST_F(SafetensorsMalformed, ShapeEntryNotInteger) {
  EXPECT_THAT(open_error("{\"w\": " + entry("F32", "[1.5]", "[0,4]") + "}", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"), HasSubstr("shape entry 0"),
                    HasSubstr("not an integer")));
  EXPECT_THAT(open_error("{\"w\": " + entry("F32", "[\"1\"]", "[0,4]") + "}", "abcd"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("not an integer")));
}

TEST_F(SafetensorsMalformed, ShapeElementCountOverflow) {
  // 2^32 × 2^32 wraps to 0 in 64 bits, which would "match" data_offsets [0, 0].
  EXPECT_THAT(open_error("{\"w\": " + entry("F32", "[4294967296,4294967296]", "[0,0]") + "}"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"), HasSubstr("overflows")));
}

TEST_F(SafetensorsMalformed, ByteCountOverflow) {
  // 2^62 elements fit in int64, but × 4 bytes does not fit in uint64.
  EXPECT_THAT(open_error("{\"w\": " + entry("F32", "[4611686018427387904]", "[0,0]") + "}"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"), HasSubstr("byte count"),
                    HasSubstr("overflows")));
}

TEST_F(SafetensorsMalformed, MissingDataOffsets) {
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [1]}})", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"),
                    HasSubstr("data_offsets must be an array [begin, end]"), HasSubstr("missing")));
}

TEST_F(SafetensorsMalformed, DataOffsetsWrongLength) {
  EXPECT_THAT(open_error("{\"w\": " + entry("F32", "[1]", "[0,4,8]") + "}", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"),
                    HasSubstr("data_offsets must be an array [begin, end]")));
}

TEST_F(SafetensorsMalformed, DataOffsetsNegative) {
  EXPECT_THAT(open_error("{\"w\": " + entry("F32", "[1]", "[-4,0]") + "}", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"),
                    HasSubstr("two non-negative integers")));
}

TEST_F(SafetensorsMalformed, DataOffsetsNotIntegers) {
  EXPECT_THAT(open_error("{\"w\": " + entry("F32", "[1]", "[0.0,4]") + "}", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"),
                    HasSubstr("two non-negative integers")));
}

TEST_F(SafetensorsMalformed, DataOffsetsDecreasing) {
  EXPECT_THAT(open_error("{\"w\": " + entry("F32", "[1]", "[4,0]") + "}", "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"), HasSubstr("[4, 0] decrease")));
}

TEST_F(SafetensorsMalformed, ByteLengthMismatch) {
  // BF16 [3] needs 6 bytes; the offsets give 8.
  EXPECT_THAT(open_error("{\"w\": " + entry("BF16", "[3]", "[0,8]") + "}", "abcdefgh"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"), HasSubstr("span 8 bytes"),
                    HasSubstr("BF16 [3] needs 6")));
}

TEST_F(SafetensorsMalformed, EndBeyondDataArea) {
  // Truncated download: the header promises 16 bytes, the file holds 8.
  EXPECT_THAT(open_error("{\"w\": " + entry("F32", "[4]", "[0,16]") + "}", "abcdefgh"),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'w'"),
                    HasSubstr("end 16 is beyond the data area (8 bytes")));
}

TEST_F(SafetensorsMalformed, OverlappingTensors) {
  EXPECT_THAT(open_error("{\"a\": " + entry("F32", "[2]", "[0,8]") + ", \"b\": " +
                             entry("F32", "[2]", "[4,12]") + "}",
                         std::string(12, 'x')),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'b'"), HasSubstr("overlaps tensor 'a'")));
}

TEST_F(SafetensorsMalformed, ZeroSizeTensorInsideAnother) {
  EXPECT_THAT(open_error("{\"a\": " + entry("F32", "[2]", "[0,8]") + ", \"z\": " +
                             entry("F32", "[0]", "[4,4]") + "}",
                         std::string(8, 'x')),
              AllOf(HasSubstr(file_), HasSubstr("tensor 'z'"), HasSubstr("overlaps tensor 'a'")));
}

TEST_F(SafetensorsMalformed, HoleBetweenTensors) {
  EXPECT_THAT(open_error("{\"a\": " + entry("F32", "[1]", "[0,4]") + ", \"b\": " +
                             entry("F32", "[1]", "[8,12]") + "}",
                         std::string(12, 'x')),
              AllOf(HasSubstr(file_), HasSubstr("hole in the data area"),
                    HasSubstr("bytes [4, 8) before tensor 'b'")));
}

TEST_F(SafetensorsMalformed, HoleAtStartOfDataArea) {
  EXPECT_THAT(open_error("{\"a\": " + entry("F32", "[1]", "[4,8]") + "}", std::string(8, 'x')),
              AllOf(HasSubstr(file_), HasSubstr("bytes [0, 4) before tensor 'a'")));
}

TEST_F(SafetensorsMalformed, TrailingUnindexedBytes) {
  EXPECT_THAT(open_error("{\"a\": " + entry("F32", "[1]", "[0,4]") + "}", std::string(6, 'x')),
              AllOf(HasSubstr(file_), HasSubstr("trailing bytes [4, 6)"),
                    HasSubstr("after tensor 'a'")));
}

TEST_F(SafetensorsMalformed, DataWithoutAnyTensor) {
  EXPECT_THAT(open_error("{}", "xyz"),
              AllOf(HasSubstr(file_), HasSubstr("trailing bytes [0, 3)"),
                    HasSubstr("after the header")));
}

TEST_F(SafetensorsMalformed, MetadataNotAnObject) {
  EXPECT_THAT(open_error(R"({"__metadata__": ["pt"]})"),
              AllOf(HasSubstr(file_), HasSubstr("__metadata__ must be an object of strings")));
}

TEST_F(SafetensorsMalformed, MetadataValueNotString) {
  EXPECT_THAT(open_error(R"({"__metadata__": {"format": "pt", "step": 3}})"),
              AllOf(HasSubstr(file_), HasSubstr("__metadata__ value of 'step' must be a string")));
}

TEST_F(SafetensorsMalformed, DuplicateTensorName) {
  // The JSON DOM would silently keep the second entry; the reader must refuse.
  EXPECT_THAT(open_error("{\"w\": " + entry("F32", "[1]", "[0,4]") + ", \"w\": " +
                             entry("F32", "[1]", "[4,8]") + "}",
                         std::string(8, 'x')),
              AllOf(HasSubstr(file_), HasSubstr("duplicate tensor name 'w'")));
}

TEST_F(SafetensorsMalformed, DuplicateKeyInsideEntry) {
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "dtype": "I8", "shape": [4],)"
                         R"( "data_offsets": [0, 4]}})",
                         "abcd"),
              AllOf(HasSubstr(file_), HasSubstr("duplicate key 'dtype' inside '/w'")));
}

TEST(SafetensorsSpec, NegativeShapeThrowsNamingTensor) {
  const TensorSpec s{"layers.0.w", DType::kF32, {4, -1}};
  try {
    s.numel();
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("layers.0.w"), HasSubstr("negative")));
  }
  EXPECT_EQ((TensorSpec{"x", DType::kBF16, {3, 5}}.bytes()), 30u);
  EXPECT_EQ((TensorSpec{"x", DType::kF32, {}}.bytes()), 4u);  // scalar
}

// ---------------------------------------------------------------------------------------------
// Valid hand-made files: the reader accepts what the spec allows.

using SafetensorsRead = SafetensorsMalformed;

TEST_F(SafetensorsRead, EmptyHeaderNoTensors) {
  write_raw(file_, "{}", "");
  const auto f = SafetensorsFile::open(file_);
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_TRUE(f->metadata().empty());
  EXPECT_EQ(f->file_bytes(), 10u);
}

TEST_F(SafetensorsRead, HeaderOrderSpacePaddingAndZeroSizeTensors) {
  // Header keys out of offset order, trailing space padding, and two zero-size tensors, one
  // at offset 0 and one at the very end.
  const std::string header = "{\"z\": " + entry("I8", "[2]", "[4,6]") + ", \"a\": " +
                             entry("F32", "[1]", "[0,4]") + ", \"e0\": " +
                             entry("BF16", "[0,7]", "[0,0]") + ", \"e1\": " +
                             entry("I64", "[3,0]", "[6,6]") + "}     ";
  write_raw(file_, header, "ABCDxy");
  const auto f = SafetensorsFile::open(file_);
  ASSERT_EQ(f->tensors().size(), 4u);
  EXPECT_EQ(f->tensors()[0].name, "z");  // header order, not sorted
  EXPECT_EQ(f->tensors()[1].name, "a");
  const TensorInfo* z = f->find("z");
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->dtype, DType::kI8);
  const auto zb = f->bytes(*z);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(zb.data()), zb.size()), "xy");
  EXPECT_EQ(f->bytes(*f->find("e0")).size(), 0u);
  EXPECT_EQ(f->find("e1")->shape, (std::vector<int64_t>{3, 0}));
  EXPECT_EQ(f->find("missing"), nullptr);
}

// ---------------------------------------------------------------------------------------------
// Writer -> reader round trips.

using SafetensorsRoundTrip = TempDirTest;

// Writes specs (tensor i filled with pattern(bytes, i)) in chunks of `chunk` bytes.
void write_all(SafetensorsWriter& w, const std::vector<TensorSpec>& specs, size_t chunk) {
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto data = pattern(specs[i].bytes(), static_cast<unsigned>(i));
    for (size_t off = 0; off < data.size(); off += chunk) {
      w.write(specs[i].name, std::span(data).subspan(off, std::min(chunk, data.size() - off)));
    }
  }
}

void expect_file_matches(const SafetensorsFile& f, const std::vector<TensorSpec>& specs) {
  ASSERT_EQ(f.tensors().size(), specs.size()) << f.path();
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorInfo* t = f.find(specs[i].name);
    ASSERT_NE(t, nullptr) << specs[i].name;
    EXPECT_EQ(f.tensors()[i].name, specs[i].name) << "header order must follow spec order";
    EXPECT_EQ(t->dtype, specs[i].dtype) << specs[i].name;
    EXPECT_EQ(t->shape, specs[i].shape) << specs[i].name;
    EXPECT_EQ(to_vector(f.bytes(*t)), pattern(specs[i].bytes(), static_cast<unsigned>(i)))
        << specs[i].name << " " << dtype_name(specs[i].dtype);
  }
}

TEST_F(SafetensorsRoundTrip, EveryDtype) {
  std::vector<TensorSpec> specs;
  for (int d = 0; d <= static_cast<int>(DType::kF8E8M0); ++d) {
    const DType t = static_cast<DType>(d);
    specs.push_back({"t." + std::string(dtype_name(t)), t, {3, 5}});
  }
  // The dtypes of the DeepSeek release, by name, so a renumbered enum cannot skip one.
  for (const char* name : {"F8_E4M3", "F8_E8M0", "I8", "I64", "BF16", "F32"}) {
    ASSERT_TRUE(dtype_from_name(name).has_value()) << name;
    specs.push_back({std::string("release.") + name, *dtype_from_name(name), {2, 1, 3}});
  }
  const std::string p = path("all.safetensors");
  SafetensorsWriter w(p, specs, {{"format", "pt"}, {"producer", "dsv4"}});
  uint64_t total = 0;
  for (const auto& s : specs) total += s.bytes();
  EXPECT_EQ(w.data_bytes(), total);
  write_all(w, specs, 1 << 20);
  w.finish();

  const auto f = SafetensorsFile::open(p);
  expect_file_matches(*f, specs);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("producer"), "dsv4");
  EXPECT_GT(total, 0u);
}

TEST_F(SafetensorsRoundTrip, ChunkedWritesOfOddSizes) {
  const std::vector<TensorSpec> specs = {{"a", DType::kBF16, {37, 3}},
                                         {"b", DType::kF32, {5}},
                                         {"c", DType::kF8E4M3, {129}}};
  for (const size_t chunk : {1u, 7u, 64u}) {
    const std::string p = path("chunk" + std::to_string(chunk) + ".safetensors");
    SafetensorsWriter w(p, specs);
    write_all(w, specs, chunk);
    w.finish();
    expect_file_matches(*SafetensorsFile::open(p), specs);
  }
}

TEST_F(SafetensorsRoundTrip, HeaderIsEightByteAligned) {
  // Names of every length mod 8 move the unpadded JSON size through all residues.
  for (size_t n = 1; n <= 9; ++n) {
    const std::vector<TensorSpec> specs = {{std::string(n, 'w'), DType::kI8, {3}}};
    const std::string p = path("align" + std::to_string(n) + ".safetensors");
    SafetensorsWriter w(p, specs, {});
    write_all(w, specs, 64);
    w.finish();
    const std::string raw = read_file(p);
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | static_cast<uint8_t>(raw[i]);
    EXPECT_EQ(len % 8, 0u) << "name length " << n << " header " << raw.substr(8, len);
    EXPECT_EQ(raw.size(), 8 + len + 3);
    // Padding is spaces, and the header is plain JSON the reference parser accepts.
    const auto header = nlohmann::json::parse(raw.substr(8, len));
    EXPECT_EQ(header.at(std::string(n, 'w')).at("data_offsets"), nlohmann::json({0, 3}));
    EXPECT_FALSE(header.contains("__metadata__")) << "empty metadata must be omitted";
  }
}

TEST_F(SafetensorsRoundTrip, ZeroByteAndScalarTensors) {
  const std::vector<TensorSpec> specs = {{"empty0", DType::kF32, {0}},
                                         {"a", DType::kI64, {2}},
                                         {"empty1", DType::kBF16, {4, 0}},
                                         {"scalar", DType::kF32, {}},
                                         {"empty2", DType::kI8, {0}}};
  const std::string p = path("zero.safetensors");
  SafetensorsWriter w(p, specs);
  // empty0 is skipped without a call, empty1 gets an explicit empty write, empty2 trails.
  w.write("a", pattern(16, 1));
  w.write("empty1", {});
  w.write("scalar", pattern(4, 3));
  w.finish();
  const auto f = SafetensorsFile::open(p);
  expect_file_matches(*f, specs);
  EXPECT_EQ(f->find("scalar")->shape, std::vector<int64_t>{});
}

TEST_F(SafetensorsRoundTrip, OnlyZeroByteTensors) {
  const std::vector<TensorSpec> specs = {{"e", DType::kF32, {0, 3}}};
  const std::string p = path("e.safetensors");
  SafetensorsWriter w(p, specs);
  w.finish();
  expect_file_matches(*SafetensorsFile::open(p), specs);
}

// ---------------------------------------------------------------------------------------------
// Writer misuse and atomicity.

using SafetensorsWriterTest = TempDirTest;

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a dsv4::Error";
  return "";
}

TEST_F(SafetensorsWriterTest, WrongOrderThrowsNamingTensors) {
  const std::string p = path("w.safetensors");
  SafetensorsWriter w(p, {{"first", DType::kF32, {2}}, {"second", DType::kF32, {2}}});
  w.write("first", pattern(4, 0));
  EXPECT_THAT(error_of([&] { w.write("second", pattern(8, 1)); }),
              AllOf(HasSubstr(p), HasSubstr("'second' out of order"),
                    HasSubstr("tensor 'first' is current, with 4 of 8 bytes")));
  w.write("first", pattern(4, 0));
  w.write("second", pattern(8, 1));
  EXPECT_THAT(error_of([&] { w.write("first", pattern(1, 0)); }),
              AllOf(HasSubstr("tensor 'first'"), HasSubstr("already complete")));
}

TEST_F(SafetensorsWriterTest, UnknownTensorThrows) {
  const std::string p = path("w.safetensors");
  SafetensorsWriter w(p, {{"a", DType::kF32, {2}}});
  EXPECT_THAT(error_of([&] { w.write("zz", pattern(8, 0)); }),
              AllOf(HasSubstr(p), HasSubstr("tensor 'zz'")));
}

TEST_F(SafetensorsWriterTest, TooManyBytesThrowsNamingTensor) {
  const std::string p = path("w.safetensors");
  SafetensorsWriter w(p, {{"a", DType::kBF16, {3}}});
  w.write("a", pattern(4, 0));
  EXPECT_THAT(error_of([&] { w.write("a", pattern(3, 0)); }),
              AllOf(HasSubstr(p), HasSubstr("tensor 'a' (BF16 [3]) is 6 bytes"),
                    HasSubstr("4 were already written and this chunk adds 3")));
}

TEST_F(SafetensorsWriterTest, FinishWithIncompleteTensorThrows) {
  const std::string p = path("w.safetensors");
  {
    SafetensorsWriter w(p, {{"a", DType::kF32, {1}}, {"b", DType::kF32, {2}}});
    w.write("a", pattern(4, 0));
    w.write("b", pattern(5, 1));
    EXPECT_THAT(error_of([&] { w.finish(); }),
                AllOf(HasSubstr(p), HasSubstr("tensor 'b' is incomplete: 5 of 8 bytes")));
  }
  EXPECT_TRUE(entries().empty()) << ::testing::PrintToString(entries());
}

TEST_F(SafetensorsWriterTest, DuplicateSpecNamesThrowBeforeCreatingAFile) {
  const std::string p = path("w.safetensors");
  EXPECT_THAT(error_of([&] {
                SafetensorsWriter w(p, {{"a", DType::kF32, {1}}, {"a", DType::kI8, {1}}});
              }),
              AllOf(HasSubstr(p), HasSubstr("tensor 'a' appears twice")));
  EXPECT_TRUE(entries().empty());
}

TEST_F(SafetensorsWriterTest, DestroyedBeforeFinishLeavesNoFile) {
  const std::string p = path("w.safetensors");
  {
    SafetensorsWriter w(p, {{"a", DType::kF32, {4}}});
    w.write("a", pattern(16, 0));  // complete, but never finished
  }
  EXPECT_TRUE(entries().empty()) << ::testing::PrintToString(entries());
}

TEST_F(SafetensorsWriterTest, AbandonedWriteKeepsExistingValidFile) {
  const std::string p = path("w.safetensors");
  const std::vector<TensorSpec> old_specs = {{"old", DType::kI8, {5}}};
  {
    SafetensorsWriter w(p, old_specs);
    write_all(w, old_specs, 64);
    w.finish();
  }
  {
    SafetensorsWriter w(p, {{"new", DType::kF32, {8}}});
    w.write("new", pattern(12, 9));
  }
  expect_file_matches(*SafetensorsFile::open(p), old_specs);
  EXPECT_EQ(entries(), std::vector<std::string>{"w.safetensors"});
}

// ---------------------------------------------------------------------------------------------
// Checkpoints: CheckpointWriter sharding and Checkpoint::open of index / single-file layouts.

class CheckpointTest : public TempDirTest {
 protected:
  // Writes one finished shard at dir_/name holding specs (tensor i filled with pattern(i)).
  void write_shard(const std::string& name, const std::vector<TensorSpec>& specs) {
    const std::string p = path(name);
    fs::create_directories(fs::path(p).parent_path());
    SafetensorsWriter w(p, specs);
    write_all(w, specs, 1 << 20);
    w.finish();
  }
  void write_index(const nlohmann::json& weight_map) {
    write_file_atomic(path("model.safetensors.index.json"),
                      nlohmann::json{{"metadata", {{"total_size", 0}}},
                                     {"weight_map", weight_map}}.dump());
  }
  std::string open_error() {
    try {
      Checkpoint::open(dir_);
    } catch (const Error& e) {
      EXPECT_TRUE(e.user()) << e.what();
      return e.what();
    }
    ADD_FAILURE() << "Checkpoint::open(" << dir_ << ") succeeded but must fail";
    return "";
  }
  std::string index_path() const { return path("model.safetensors.index.json"); }
};

// Writes specs through CheckpointWriter (tensor i = pattern(i)), in chunks.
std::vector<std::string> write_checkpoint(const std::string& dir,
                                          const std::vector<TensorSpec>& specs,
                                          uint64_t max_shard_bytes) {
  CheckpointWriter w(dir, specs, max_shard_bytes);
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto data = pattern(specs[i].bytes(), static_cast<unsigned>(i));
    for (size_t off = 0; off < data.size(); off += 24) {
      w.write(specs[i].name, std::span(data).subspan(off, std::min<size_t>(24, data.size() - off)));
    }
  }
  w.finish();
  return w.shard_names();
}

using CheckpointWriterTest = CheckpointTest;

TEST_F(CheckpointWriterTest, ShardsByLimitAndBigTensorGetsItsOwnShard) {
  // Bytes: 40, 40, 40, 200 (over the 100-byte limit), 10, 0 -> [a b] [c] [big] [d e].
  const std::vector<TensorSpec> specs = {{"a", DType::kF32, {10}},  {"b", DType::kBF16, {20}},
                                         {"c", DType::kI8, {40}},   {"big", DType::kF32, {50}},
                                         {"d", DType::kI8, {10}},   {"e", DType::kF32, {0}}};
  const auto shards = write_checkpoint(dir_, specs, 100);
  ASSERT_EQ(shards, (std::vector<std::string>{
                        "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                        "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"}));

  const Checkpoint ckpt = Checkpoint::open(dir_);
  EXPECT_EQ(ckpt.shard_files(), shards);
  EXPECT_EQ(ckpt.file_of("a"), shards[0]);
  EXPECT_EQ(ckpt.file_of("b"), shards[0]);
  EXPECT_EQ(ckpt.file_of("c"), shards[1]);
  EXPECT_EQ(ckpt.file_of("big"), shards[2]);
  EXPECT_EQ(ckpt.file_of("d"), shards[3]);
  EXPECT_EQ(ckpt.num_tensors(), specs.size());
  EXPECT_EQ(ckpt.tensor_bytes(), 40u + 40 + 40 + 200 + 10);
  EXPECT_EQ(ckpt.index_total_size(), ckpt.tensor_bytes());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"a", "b", "big", "c", "d", "e"}));
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorInfo& t = ckpt.info(specs[i].name);
    EXPECT_EQ(t.dtype, specs[i].dtype) << specs[i].name;
    EXPECT_EQ(t.shape, specs[i].shape) << specs[i].name;
    EXPECT_EQ(to_vector(ckpt.bytes(specs[i].name)),
              pattern(specs[i].bytes(), static_cast<unsigned>(i)))
        << specs[i].name;
  }
  // Index: pretty-printed with indent 2, weight_map sorted, total_size = sum of tensor bytes.
  const std::string text = read_file(index_path());
  EXPECT_THAT(text, HasSubstr("{\n  \"metadata\": {\n    \"total_size\": 330\n  },"));
  const auto index = nlohmann::json::parse(text);
  EXPECT_EQ(index["weight_map"]["big"], shards[2]);
  std::vector<std::string> keys;
  for (size_t pos = text.find("\"weight_map\""); (pos = text.find("\n    \"", pos)) !=
                                                 std::string::npos;) {
    pos += 6;
    keys.push_back(text.substr(pos, text.find('"', pos) - pos));
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b", "big", "c", "d", "e"}));
}

// prefetch advises exactly the tensors under the prefix, across shards, and leaves the bytes as
// they were.
TEST_F(CheckpointWriterTest, PrefetchAdvisesTheTensorsUnderAPrefix) {
  const std::vector<TensorSpec> specs = {{"layers.0.a", DType::kF32, {10}}, {"layers.0.b", DType::kI8, {90}},
                                         {"layers.1.a", DType::kF32, {30}}, {"layers.10.a", DType::kI8, {7}}};
  write_checkpoint(dir_, specs, 64);
  const Checkpoint ckpt = Checkpoint::open(dir_);
  ASSERT_GT(ckpt.shard_files().size(), 1u);
  EXPECT_EQ(ckpt.prefetch("layers.0."), 40u + 90);
  EXPECT_EQ(ckpt.prefetch("layers.1."), 120u);
  EXPECT_EQ(ckpt.prefetch("layers.1"), 120u + 7);
  EXPECT_EQ(ckpt.prefetch("mtp.0."), 0u);
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(to_vector(ckpt.bytes(specs[i].name)), pattern(specs[i].bytes(), static_cast<unsigned>(i)));
  }
}

TEST(CheckpointWriterPlan, MatchesTheWrittenShards) {
  const std::vector<TensorSpec> specs = {
      {"z0", DType::kF32, {0}},  {"a", DType::kF32, {10}}, {"b", DType::kF32, {20}},
      {"z1", DType::kF32, {0}},  {"c", DType::kI8, {60}},  {"d", DType::kI8, {1}}};
  // 0, 40, 80 (40+80 > 64 -> new), 0 (never opens a shard: joins b), 60 (80+60 > 64 -> new),
  // 1 (61 fits).
  EXPECT_EQ(CheckpointWriter::plan_shards(specs, 64), (std::vector<size_t>{0, 0, 1, 1, 2, 2}));
  EXPECT_TRUE(CheckpointWriter::plan_shards({}, 64).empty());
}

TEST(CheckpointWriterPlan, MoreShardsThanNamesHoldIsAUserErrorNamingTheShardSize) {
  // A tiny shard size on the full model (a W4A16 DeepSeek-V4-Flash has over 99999 tensors) was an
  // internal error of the writer; the user's shard size is the cause, so it names that.
  std::vector<TensorSpec> specs;
  for (size_t i = 0; i < CheckpointWriter::kMaxShards; ++i) specs.push_back({"t" + std::to_string(i), DType::kI8, {2}});
  EXPECT_EQ(CheckpointWriter::plan_shards(specs, 1).back(), CheckpointWriter::kMaxShards - 1);  // the most that fit
  specs.push_back({"one_more", DType::kI8, {2}});
  try {
    (void)CheckpointWriter::plan_shards(specs, 1);
    FAIL() << "100000 shards were planned";
  } catch (const Error& e) {
    EXPECT_TRUE(e.user());
    EXPECT_NE(std::string(e.what()).find("a shard size of 1 bytes splits the checkpoint into 100000 shards"),
              std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("output.shard_size"), std::string::npos) << e.what();
  }
  EXPECT_EQ(CheckpointWriter::plan_shards(specs, 4).back(), 49999u);  // two per shard: 50000 shards
}

TEST_F(CheckpointWriterTest, BigFirstTensorAndSingleShard) {
  EXPECT_EQ(write_checkpoint(path("x"), {{"big", DType::kF32, {64}}, {"s", DType::kI8, {4}}}, 16),
            (std::vector<std::string>{"model-00001-of-00002.safetensors",
                                      "model-00002-of-00002.safetensors"}));
  EXPECT_EQ(write_checkpoint(path("y"), {{"a", DType::kF32, {4}}, {"b", DType::kI8, {4}}}, 1000),
            std::vector<std::string>{"model-00001-of-00001.safetensors"});
  EXPECT_EQ(Checkpoint::open(path("y")).num_tensors(), 2u);
}

TEST_F(CheckpointWriterTest, EmptyCheckpointIsIndexOnly) {
  EXPECT_TRUE(write_checkpoint(dir_, {}, 100).empty());
  EXPECT_EQ(entries(), std::vector<std::string>{"model.safetensors.index.json"});
  const Checkpoint ckpt = Checkpoint::open(dir_);
  EXPECT_EQ(ckpt.num_tensors(), 0u);
  EXPECT_TRUE(ckpt.shard_files().empty());
}

TEST_F(CheckpointWriterTest, FinishTwiceThrows) {
  CheckpointWriter w(dir_, {{"a", DType::kI8, {2}}}, 100);
  w.write("a", pattern(2, 0));
  w.finish();
  EXPECT_THAT(error_of([&] { w.finish(); }), HasSubstr("finish() called twice"));
  EXPECT_THAT(error_of([&] { w.write("a", {}); }), HasSubstr("after finish()"));
}

TEST_F(CheckpointWriterTest, DestroyedBeforeFinishLeavesNoShardNoIndexNoTemp) {
  const std::vector<TensorSpec> specs = {{"a", DType::kF32, {10}}, {"b", DType::kF32, {10}},
                                         {"c", DType::kF32, {10}}};
  {
    CheckpointWriter w(dir_, specs, 40);
    w.write("a", pattern(40, 0));
    w.write("b", pattern(40, 1));  // shard 1 is complete and sealed, shard 2 started
    EXPECT_EQ(w.shard_names().size(), 3u);
  }
  EXPECT_TRUE(entries().empty()) << ::testing::PrintToString(entries());
}

TEST_F(CheckpointWriterTest, IncompleteShardThrowsNamingTensor) {
  CheckpointWriter w(dir_, {{"a", DType::kF32, {10}}, {"b", DType::kF32, {10}}}, 40);
  w.write("a", pattern(20, 0));
  EXPECT_THAT(error_of([&] { w.write("b", pattern(40, 1)); }),
              AllOf(HasSubstr("model-00001-of-00002.safetensors"),
                    HasSubstr("tensor 'a' is incomplete: 20 of 40 bytes")));
  EXPECT_THAT(error_of([&] { w.write("nope", pattern(4, 1)); }),
              AllOf(HasSubstr(dir_), HasSubstr("tensor 'nope', which is not in the specs")));
}

TEST_F(CheckpointWriterTest, FinishWithMissingTensorThrows) {
  CheckpointWriter w(dir_, {{"a", DType::kF32, {1}}, {"b", DType::kF32, {1}}}, 4);
  w.write("a", pattern(4, 0));
  EXPECT_THAT(error_of([&] { w.finish(); }), HasSubstr("tensor 'b' is incomplete: 0 of 4"));
  EXPECT_FALSE(fs::exists(index_path()));
}

TEST_F(CheckpointWriterTest, DuplicateNamesAcrossShardsThrow) {
  EXPECT_THAT(error_of([&] {
                CheckpointWriter w(dir_, {{"a", DType::kF32, {4}}, {"a", DType::kF32, {4}}}, 4);
              }),
              AllOf(HasSubstr(dir_), HasSubstr("tensor 'a' appears twice")));
}

using CheckpointOpen = CheckpointTest;

TEST_F(CheckpointOpen, SingleFileWithoutIndex) {
  write_shard("model.safetensors", {{"w", DType::kBF16, {2, 2}}});
  const Checkpoint ckpt = Checkpoint::open(dir_);
  EXPECT_EQ(ckpt.file_of("w"), "model.safetensors");
  EXPECT_EQ(ckpt.index_total_size(), 0u);
  EXPECT_EQ(to_vector(ckpt.bytes("w")), pattern(8, 0));
}

TEST_F(CheckpointOpen, NeitherIndexNorSingleFile) {
  EXPECT_THAT(open_error(), AllOf(HasSubstr(dir_), HasSubstr("holds neither")));
}

TEST_F(CheckpointOpen, MissingDirectory) {
  EXPECT_THROW(Checkpoint::open(path("nope")), Error);
}

TEST_F(CheckpointOpen, UnknownTensorNamesTensorAndCheckpoint) {
  write_shard("model.safetensors", {{"w", DType::kBF16, {2}}});
  const Checkpoint ckpt = Checkpoint::open(dir_);
  EXPECT_FALSE(ckpt.contains("v"));
  EXPECT_THAT(error_of([&] { ckpt.info("v"); }),
              AllOf(HasSubstr("tensor 'v' is not in checkpoint"), HasSubstr(dir_)));
  EXPECT_THAT(error_of([&] { ckpt.bytes("v"); }), HasSubstr("tensor 'v'"));
  EXPECT_THAT(error_of([&] { ckpt.file_of("v"); }), HasSubstr("tensor 'v'"));
}

TEST_F(CheckpointOpen, ShardInSubdirectoryAndSymlinkedShardAreAllowed) {
  // Hugging Face cache snapshots link each shard to ../../blobs/<hash>; only the index's own
  // file names are checked lexically, so such links keep working.
  write_shard("sub/s1.safetensors", {{"a", DType::kF32, {1}}});
  write_shard("blobs/abc", {{"b", DType::kF32, {1}}});
  fs::create_symlink("blobs/abc", path("s2.safetensors"));
  write_index({{"a", "sub/s1.safetensors"}, {"b", "./s2.safetensors"}});
  const Checkpoint ckpt = Checkpoint::open(dir_);
  EXPECT_EQ(ckpt.file_of("a"), "sub/s1.safetensors");
  EXPECT_EQ(ckpt.file_of("b"), "s2.safetensors");
}

TEST_F(CheckpointOpen, IndexFileWithDotDotIsRejected) {
  write_shard("s.safetensors", {{"a", DType::kF32, {1}}});
  write_index({{"a", "../x.safetensors"}});
  EXPECT_THAT(open_error(),
              AllOf(HasSubstr(index_path()), HasSubstr("tensor 'a'"),
                    HasSubstr("'../x.safetensors'"), HasSubstr("outside the checkpoint")));
}

TEST_F(CheckpointOpen, IndexFileWithInnerDotDotIsRejected) {
  write_shard("s.safetensors", {{"a", DType::kF32, {1}}});
  write_index({{"a", "sub/../../s.safetensors"}});
  EXPECT_THAT(open_error(), AllOf(HasSubstr("tensor 'a'"), HasSubstr("outside the checkpoint")));
}

TEST_F(CheckpointOpen, IndexAbsolutePathIsRejected) {
  write_shard("s.safetensors", {{"a", DType::kF32, {1}}});
  write_index({{"a", path("s.safetensors")}});  // exists, but absolute
  EXPECT_THAT(open_error(), AllOf(HasSubstr(index_path()), HasSubstr("tensor 'a'"),
                                  HasSubstr("outside the checkpoint")));
}

TEST_F(CheckpointOpen, IndexNamesMissingFile) {
  write_shard("s.safetensors", {{"a", DType::kF32, {1}}});
  write_index({{"a", "s.safetensors"}, {"b", "gone.safetensors"}});
  EXPECT_THAT(open_error(), AllOf(HasSubstr("tensor 'b'"), HasSubstr("'gone.safetensors'"),
                                  HasSubstr("has no such file")));
}

TEST_F(CheckpointOpen, IndexTensorMissingFromShard) {
  write_shard("s.safetensors", {{"a", DType::kF32, {1}}});
  write_index({{"a", "s.safetensors"}, {"ghost", "s.safetensors"}});
  EXPECT_THAT(open_error(), AllOf(HasSubstr(index_path()), HasSubstr("tensor 'ghost'"),
                                  HasSubstr("'s.safetensors', but that file does not hold it")));
}

TEST_F(CheckpointOpen, ShardTensorMissingFromIndex) {
  write_shard("s.safetensors", {{"a", DType::kF32, {1}}, {"extra", DType::kF32, {1}}});
  write_index({{"a", "s.safetensors"}});
  EXPECT_THAT(open_error(), AllOf(HasSubstr("file 's.safetensors' holds tensor 'extra'"),
                                  HasSubstr("index does not list")));
}

TEST_F(CheckpointOpen, SameTensorInTwoShards) {
  write_shard("s1.safetensors", {{"a", DType::kF32, {1}}});
  write_shard("s2.safetensors", {{"a", DType::kF32, {1}}, {"b", DType::kF32, {1}}});
  write_index({{"a", "s1.safetensors"}, {"b", "s2.safetensors"}});
  EXPECT_THAT(open_error(), AllOf(HasSubstr("tensor 'a' is stored in two files"),
                                  HasSubstr("'s1.safetensors'"), HasSubstr("'s2.safetensors'")));
}

TEST_F(CheckpointOpen, IndexDuplicateTensor) {
  write_shard("s.safetensors", {{"a", DType::kF32, {1}}});
  write_file_atomic(index_path(),
                    R"({"weight_map": {"a": "s.safetensors", "a": "s.safetensors"}})");
  EXPECT_THAT(open_error(), AllOf(HasSubstr(index_path()),
                                  HasSubstr("tensor 'a' appears twice in weight_map")));
}

TEST_F(CheckpointOpen, IndexMalformed) {
  write_shard("s.safetensors", {{"a", DType::kF32, {1}}});
  write_file_atomic(index_path(), R"({"weight_map": {"a": )");
  EXPECT_THAT(open_error(), AllOf(HasSubstr(index_path()), HasSubstr("not well-formed JSON")));
  write_file_atomic(index_path(), R"({"metadata": {}})");
  EXPECT_THAT(open_error(), AllOf(HasSubstr(index_path()), HasSubstr("weight_map must be an object"),
                                  HasSubstr("missing")));
  write_file_atomic(index_path(), R"({"weight_map": {"a": 3}})");
  EXPECT_THAT(open_error(), AllOf(HasSubstr("tensor 'a'"), HasSubstr("must be a file name string")));
  write_file_atomic(index_path(),
                    R"({"metadata": {"total_size": "8x"}, "weight_map": {"a": "s.safetensors"}})");
  EXPECT_THAT(open_error(), HasSubstr("metadata.total_size must be a non-negative integer"));
  write_file_atomic(index_path(),
                    R"({"metadata": {"total_size": "-4"}, "weight_map": {"a": "s.safetensors"}})");
  EXPECT_THAT(open_error(), HasSubstr("metadata.total_size must be a non-negative integer"));
  write_file_atomic(index_path(),
                    R"({"metadata": {"total_size": "18446744073709551616"}, "weight_map": {"a": "s.safetensors"}})");
  EXPECT_THAT(open_error(), HasSubstr("metadata.total_size must be a non-negative integer"));
}

// AppMana's dsv4_int converter writes total_size as a decimal string (its seed artifact's index).
TEST_F(CheckpointOpen, IndexTotalSizeAsADecimalString) {
  write_shard("s.safetensors", {{"a", DType::kF32, {2}}});
  write_file_atomic(index_path(),
                    R"({"metadata": {"total_size": "8"}, "weight_map": {"a": "s.safetensors"}})");
  EXPECT_EQ(Checkpoint::open(dir_).index_total_size(), 8u);
}

TEST_F(CheckpointOpen, BadShardIsReportedByItsPath) {
  write_raw(path("s.safetensors"), "{\"a\": " + entry("F32", "[2]", "[0,8]") + "}", "1234");
  write_index({{"a", "s.safetensors"}});
  EXPECT_THAT(open_error(), AllOf(HasSubstr(path("s.safetensors")), HasSubstr("tensor 'a'"),
                                  HasSubstr("beyond the data area")));
}

}  // namespace
}  // namespace dsv4

namespace dsv4 {
namespace {

TEST(SafetensorsShapeString, FormatsEveryRank) {
  EXPECT_EQ(shape_string({}), "[]");
  EXPECT_EQ(shape_string({7}), "[7]");
  EXPECT_EQ(shape_string({2048, 4096}), "[2048, 4096]");
}

}  // namespace
}  // namespace dsv4
