// calib_data.h: the calibration set, from dataset files to token-id samples with provenance and
// hashes. Ties together the reader, the chat encoding, the tokenizer, sampling and hashing.
//
//   DatasetOptions o;
//   o.files = {"ultrachat_train_sft.jsonl"};
//   o.num_samples = 768; o.seq_len = 512; o.seed = 42;            // chat mode "chat" by default
//   CalibData d = calib_data_build(tok, o);                        // same on every rank
//   SampleRange mine = calib_data_rank_range(d, rank, world);      // this rank's samples
//   manifest["dataset"] = calib_data_manifest(d);                  // for calib_manifest.json
//
// Every rank builds the same full list (reading and tokenizing ~1k samples takes seconds) and
// then takes its contiguous block (rank_split.h), so the set used is independent of the world
// size and no collective is needed. Record encoding:
//   - "messages" records: chat_encode (BOS + turns, see chat_encoding.h) in options.chat mode;
//     with options.chat unset they are an error (or skipped with skip_malformed).
//   - "text" records and plain-text files: BOS (if add_bos, as DeepSeek's tokenizer_config.json
//     add_bos_token = true does for raw text) + tok.encode(text), special tokens in the text
//     matched as Hugging Face does.
// Tests: tests/data/test_dataset.cpp (build, manifest) and tests/data/test_sampling.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/chat_encoding.h"
#include "data/dataset_reader.h"
#include "data/rank_split.h"
#include "data/sampling.h"
#include "data/tokenizer.h"

namespace dsv4::data {

struct DatasetOptions {
  std::vector<std::string> files;  // read in this order; the order is part of the seed's meaning
  DatasetFormat format = DatasetFormat::kAuto;
  TextUnit text_unit = TextUnit::kParagraph;
  int64_t num_samples = 0;  // 0: all records (all full packs)
  int64_t seq_len = 512;    // truncation length, or the exact length when packing; 0: no limit
  int64_t min_len = 1;      // records with fewer tokens (after encoding, before cutting) dropped
  uint64_t seed = 42;
  std::optional<ChatMode> chat = ChatMode::kChat;  // nullopt: plain text only
  bool add_bos = true;       // plain-text records start with BOS
  bool packing = false;
  bool skip_malformed = false;
  void check() const;  // throws naming the bad field
  SamplingOptions sampling() const;
  ReadOptions reading() const;
};

// Where part of a sample came from: tokens [token_begin, token_begin + num_tokens) of the
// encoding of record `record` (index in the dataset), which starts at files[file]:line.
struct CalibSource {
  int32_t file = 0;
  int64_t line = 0;
  int64_t record = 0;
  int64_t token_begin = 0;
  int64_t num_tokens = 0;
};

struct CalibSample {
  std::vector<int32_t> ids;
  std::vector<CalibSource> sources;  // one without packing
};

struct CalibData {
  DatasetOptions options;
  std::vector<DatasetFile> files;
  std::vector<CalibSample> samples;  // canonical order: the order every rank splits
  int64_t num_records = 0;           // valid records in the files
  int64_t malformed_skipped = 0;
  SelectionStats stats;
  int64_t num_tokens() const;
};

CalibData calib_data_build(const Tokenizer& tok, const DatasetOptions& options);
// Encodes one record as calib_data_build does (for the tokenize command and tests).
std::vector<int32_t> calib_record_encode(const Tokenizer& tok, const RawRecord& record, const DatasetOptions& options);
SampleRange calib_data_rank_range(const CalibData& data, int rank, int world, int64_t block = 1);
uint64_t calib_data_hash(const CalibData& data);  // sample_list_hash of all samples' ids
// The manifest fragment: options, file sizes and record counts, selection counts, the hash
// algorithm, the list hash and, per sample, its hash, length and sources. Hashes are computed
// from the ids now, so the fragment always describes the samples as they are.
nlohmann::ordered_json calib_data_manifest(const CalibData& data);

}  // namespace dsv4::data
