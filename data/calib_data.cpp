// calib_data.cpp: reader + chat encoding + tokenizer + sampling + hashes -> CalibData and its
// manifest fragment (see calib_data.h).
#include "data/calib_data.h"

#include <utility>

#include "common/check.h"
#include "common/log.h"
#include "data/sample_hash.h"

namespace dsv4::data {

void DatasetOptions::check() const {
  DSV4_CHECK_IN("data", !files.empty(), "dataset.files is empty, expected at least one JSONL or text file");
  sampling().check();
}

SamplingOptions DatasetOptions::sampling() const {
  return {.num_samples = num_samples, .seq_len = seq_len, .min_len = min_len, .seed = seed, .packing = packing};
}

ReadOptions DatasetOptions::reading() const {
  return {.format = format, .text_unit = text_unit, .skip_malformed = skip_malformed, .accept_text = true,
          .accept_messages = chat.has_value()};
}

int64_t CalibData::num_tokens() const {
  int64_t n = 0;
  for (const CalibSample& s : samples) n += static_cast<int64_t>(s.ids.size());
  return n;
}

std::vector<int32_t> calib_record_encode(const Tokenizer& tok, const RawRecord& record, const DatasetOptions& options) {
  if (record.is_chat) {
    DSV4_CHECK_IN("data", options.chat.has_value(), "a chat record, but no chat mode is set");
    return chat_encode(tok, record.messages, *options.chat);
  }
  std::vector<int32_t> ids;
  if (options.add_bos) ids.push_back(tok.token_id(kChatBos));
  const std::vector<int32_t> text = tok.encode(record.text);
  ids.insert(ids.end(), text.begin(), text.end());
  return ids;
}

CalibData calib_data_build(const Tokenizer& tok, const DatasetOptions& options) {
  options.check();
  const DatasetIndex index = dataset_index(options.files, options.reading());
  const int64_t num_records = static_cast<int64_t>(index.records.size());
  const Selection sel = sampling_select(num_records, options.sampling(), [&](int64_t r) {
    const RawRecord record = dataset_record_read(index, r);
    try {
      return calib_record_encode(tok, record, options);
    } catch (const Error& e) {
      // Name the record: a tokenizer error alone would not say which line of which file.
      DSV4_FAIL("data", "%s:%lld: %s", index.files[static_cast<size_t>(record.file)].path.c_str(),
                static_cast<long long>(record.line), e.message().c_str());
    }
  });

  CalibData d;
  d.options = options;
  d.files = index.files;
  d.num_records = num_records;
  d.malformed_skipped = index.malformed_skipped;
  d.stats = sel.stats;
  d.samples.reserve(sel.samples.size());
  for (const SelectedSample& s : sel.samples) {
    CalibSample c{s.ids, {}};
    for (const SampleSpan& span : s.spans) {
      const RecordRef& ref = index.records[static_cast<size_t>(span.record)];
      c.sources.push_back({ref.file, ref.line, span.record, span.token_begin, span.num_tokens});
    }
    d.samples.push_back(std::move(c));
  }
  log_info("calibration data: %zu samples, %lld tokens from %lld records in %zu files (%lld too short, %lld "
           "truncated, %lld malformed skipped), hash %s",
           d.samples.size(), static_cast<long long>(d.num_tokens()), static_cast<long long>(num_records), d.files.size(),
           static_cast<long long>(d.stats.records_too_short), static_cast<long long>(d.stats.records_truncated),
           static_cast<long long>(d.malformed_skipped), sample_hash_hex(calib_data_hash(d)).c_str());
  return d;
}

SampleRange calib_data_rank_range(const CalibData& data, int rank, int world, int64_t block) {
  return rank_split_range(static_cast<int64_t>(data.samples.size()), rank, world, block);
}

uint64_t calib_data_hash(const CalibData& data) {
  SampleHasher h;  // the layout of sample_list_hash, without copying the ids into one list
  h.add_u64(data.samples.size());
  for (const CalibSample& s : data.samples) {
    h.add_u64(s.ids.size());
    h.add_ids(s.ids);
  }
  return h.digest();
}

nlohmann::ordered_json calib_data_manifest(const CalibData& data) {
  using nlohmann::ordered_json;
  const DatasetOptions& o = data.options;
  ordered_json files = ordered_json::array();
  for (const DatasetFile& f : data.files) {
    files.push_back({{"path", f.path}, {"format", dataset_format_name(f.format)}, {"bytes", f.num_bytes},
                     {"records", f.num_records}});
  }
  ordered_json samples = ordered_json::array();
  for (const CalibSample& s : data.samples) {
    ordered_json sources = ordered_json::array();
    for (const CalibSource& c : s.sources) {
      sources.push_back({{"file", c.file}, {"line", c.line}, {"record", c.record}, {"token_begin", c.token_begin},
                         {"num_tokens", c.num_tokens}});
    }
    samples.push_back({{"hash", sample_hash_hex(sample_hash(s.ids))}, {"num_tokens", s.ids.size()}, {"sources", sources}});
  }
  return {
      {"options",
       {{"format", dataset_format_name(o.format)}, {"text_unit", text_unit_name(o.text_unit)},
        {"num_samples", o.num_samples}, {"seq_len", o.seq_len}, {"min_len", o.min_len}, {"seed", o.seed},
        {"chat", o.chat ? ordered_json(chat_mode_name(*o.chat)) : ordered_json(nullptr)}, {"add_bos", o.add_bos},
        {"packing", o.packing}, {"skip_malformed", o.skip_malformed}}},
      {"files", files},
      {"records", data.num_records},
      {"malformed_skipped", data.malformed_skipped},
      {"records_encoded", data.stats.records_encoded},
      {"records_too_short", data.stats.records_too_short},
      {"records_truncated", data.stats.records_truncated},
      {"tokens_dropped", data.stats.tokens_dropped},
      {"num_samples", data.samples.size()},
      {"num_tokens", data.num_tokens()},
      {"hash_algorithm", kSampleHashAlgorithm},
      {"samples_hash", sample_hash_hex(calib_data_hash(data))},
      {"samples", samples},
  };
}

}  // namespace dsv4::data
