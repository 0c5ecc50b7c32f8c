// artifact_writer.cpp: segment-ordered streaming of the artifact (see artifact_writer.h).
#include "calib/artifact_writer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

#include "common/check.h"
#include "common/finite_scan.h"
#include "common/codec.h"
#include "common/fs.h"
#include "common/parallel.h"
#include "model/weight_decode.h"

namespace dsv4::calib {
namespace fs = std::filesystem;

std::vector<std::string> tokenizer_file_names() {
  return {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
          "chat_template.jinja"};
}

void artifact_out_dir_check(const std::string& dir, const std::string& source_dir) {
  DSV4_CHECK_IN("writer", !dir.empty(), "no output directory (output.dir in the recipe, or --out)");
  std::error_code ec;
  DSV4_CHECK_IN("writer", !fs::exists(dir, ec) || (fs::is_directory(dir, ec) && fs::is_empty(dir, ec)),
                "output directory %s exists and is not empty; refusing to overwrite it (choose another --out "
                "or remove it)",
                dir.c_str());
  DSV4_CHECK_IN("writer", fs::weakly_canonical(dir, ec) != fs::weakly_canonical(source_dir, ec),
                "output directory %s is the source checkpoint", dir.c_str());
}

void output_space_check(const std::string& dir, uint64_t artifact_bytes, uint64_t snapshot_bytes, int64_t available) {
  if (available < 0) available = filesystem_available_bytes(dir);
  if (available < 0) return;  // cannot tell: the writes themselves will report a full disk with the path
  const uint64_t need = artifact_bytes + snapshot_bytes;
  DSV4_CHECK_IN("writer", static_cast<uint64_t>(available) >= need,
                "output directory %s: the run needs %llu more bytes (%.3f GB: artifact %.3f GB, activation snapshots "
                "and staged weights %.3f GB) but its filesystem has %llu bytes (%.3f GB) available; free space or choose another --out "
                "(an interrupted run resumes where it stopped once space exists)",
                dir.c_str(), static_cast<unsigned long long>(need), static_cast<double>(need) / 1e9,
                static_cast<double>(artifact_bytes) / 1e9, static_cast<double>(snapshot_bytes) / 1e9,
                static_cast<unsigned long long>(available), static_cast<double>(available) / 1e9);
}

ArtifactWriter::ArtifactWriter(const OutputSection& output, const ArtifactLayout& layout, const Checkpoint& source,
                               const model::ModelConfig& config)
    : dir_(output.dir), copy_tokenizer_(output.copy_tokenizer), layout_(layout), source_(source),
      fp8_block_(config.fp8_block) {
  std::error_code ec;
  DSV4_CHECK_IN("writer", !dir_.empty(), "no output directory (output.dir in the recipe, or --out)");
  DSV4_CHECK_IN("writer", fs::weakly_canonical(dir_, ec) != fs::weakly_canonical(source.dir(), ec),
                "output directory %s is the source checkpoint", dir_.c_str());
  make_directories(dir_);
  if (layout.shard_names.empty()) {
    writer_ = std::make_unique<CheckpointWriter>(dir_, layout.specs(), output.shard_bytes);
  } else {
    std::vector<size_t> shard;
    for (const OutputTensor& t : layout.tensors) shard.push_back(static_cast<size_t>(t.shard));
    writer_ = std::make_unique<CheckpointWriter>(dir_, layout.specs(), shard, layout.shard_names, layout.index_metadata);
  }
}

ArtifactWriter::~ArtifactWriter() = default;

const std::vector<std::string>& ArtifactWriter::shard_names() const { return writer_->shard_names(); }

void ArtifactWriter::commit_shards_as_written(std::function<void(const std::string&)> on_commit) {
  writer_->commit_when_sealed(std::move(on_commit));
}

std::vector<std::string> ArtifactWriter::planned_shard_names(const ArtifactLayout& layout, uint64_t shard_bytes) {
  if (!layout.shard_names.empty()) return layout.shard_names;
  const std::vector<size_t> plan = CheckpointWriter::plan_shards(layout.specs(), shard_bytes);
  const size_t n = plan.empty() ? 0 : plan.back() + 1;
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) names.push_back(CheckpointWriter::shard_name(i, n));
  return names;
}

int ArtifactWriter::open_from_segment() const {
  const size_t open = writer_->current_shard();
  for (size_t i = 0; i < layout_.tensors.size(); ++i) {
    if (writer_->shard_of(layout_.tensors[i].name) >= open) return std::min(layout_.tensors[i].segment, next_segment_);
  }
  return next_segment_;
}

std::set<std::string> ArtifactWriter::modules_in_open_shard(int segment) const {
  std::set<std::string> open;
  const size_t current = writer_->current_shard();
  for (const OutputTensor& t : layout_.tensors) {
    if (t.segment == segment && t.origin == OutputOrigin::kQuantized && writer_->shard_of(t.name) >= current) {
      open.insert(t.source);
    }
  }
  return open;
}

void ArtifactWriter::resume_at(int segment, const std::function<std::vector<SolvedModule>(int)>& staged) {
  DSV4_CHECK_IN("writer", next_ == 0, "resume_at after writing");
  if (layout_.tensors.empty()) return;
  size_t first = 0;
  while (first < layout_.tensors.size() && layout_.tensors[first].segment < segment) ++first;
  // All segments committed: the last shard is committed only by finish(), so write it again.
  const size_t anchor = std::min(first, layout_.tensors.size() - 1);
  const size_t shard = writer_->shard_of(layout_.tensors[anchor].name);
  size_t start = first;
  while (start > 0 && writer_->shard_of(layout_.tensors[start - 1].name) == shard) --start;
  writer_->start_at_shard(shard);
  next_ = start;
  next_segment_ = start < layout_.tensors.size() ? layout_.tensors[start].segment : segment;
  for (int s = next_segment_; s < segment; ++s) {
    const std::vector<SolvedModule> mods = staged(s);
    std::map<std::string, const SolvedModule*> by_name;
    for (const SolvedModule& m : mods) by_name[m.module] = &m;
    write_segment(s, by_name);
  }
}

void ArtifactWriter::write_segment(int segment, const std::map<std::string, const SolvedModule*>& solved) {
  DSV4_CHECK_IN("writer", segment == next_segment_, "segment %d written out of order (expected %d)", segment,
                next_segment_);
  // On resume the first segment may be written from the middle (its shard's start).
  const bool partial = next_ > 0 && layout_.tensors[next_ - 1].segment == segment;
  size_t used = 0;
  const size_t decode_batch = static_cast<size_t>(std::max(1, parallel_threads(0)));
  for (; next_ < layout_.tensors.size() && layout_.tensors[next_].segment == segment; ++next_) {
    const OutputTensor& t = layout_.tensors[next_];
    const TensorSpec spec{t.name, t.dtype, t.shape};
    switch (t.origin) {
      case OutputOrigin::kCopy:
      case OutputOrigin::kAlias: {
        const std::span<const std::byte> bytes = source_.bytes(t.source);
        require_finite(non_finite_scan(bytes, source_.info(t.source).dtype), t.source, source_.dir());
        writer_->write(t.name, bytes);
        break;
      }
      case OutputOrigin::kDecodeBf16: {
        // A run of these (the MTP block's 768 MXFP4 experts at full width) decodes in parallel,
        // a batch per core count, and is written in order.
        size_t end = next_ + 1;
        while (end < layout_.tensors.size() && end - next_ < decode_batch && layout_.tensors[end].segment == segment &&
               layout_.tensors[end].origin == OutputOrigin::kDecodeBf16) {
          ++end;
        }
        std::vector<std::vector<uint16_t>> bf(end - next_);
        parallel_for(bf.size(), 0, [&](size_t k) {
          const std::vector<float> w = model::weight_decode_linear(source_, layout_.tensors[next_ + k].source, fp8_block_);
          bf[k].resize(w.size());
          for (size_t i = 0; i < w.size(); ++i) bf[k][i] = bf16_encode(w[i]);
        });
        for (size_t k = 0; k < bf.size(); ++k, ++next_) {
          const OutputTensor& d = layout_.tensors[next_];
          writer_->write(d.name, std::as_bytes(std::span(bf[k])));
          bytes_written_ += TensorSpec{d.name, d.dtype, d.shape}.bytes();
        }
        --next_;  // the loop's increment moves past the batch's last tensor
        continue;
      }
      case OutputOrigin::kQuantized: {
        const auto it = solved.find(t.source);
        DSV4_CHECK_IN("writer", it != solved.end(), "module %s of segment %d was not solved", t.source.c_str(),
                      segment);
        const quant::EncodedTensor* found = nullptr;
        for (const quant::EncodedTensor& e : it->second->tensors) {
          if (e.name == t.leaf) found = &e;
        }
        DSV4_CHECK_IN("writer", found != nullptr, "solved %s has no %s tensor", t.source.c_str(), t.leaf.c_str());
        DSV4_CHECK_IN("writer", found->dtype == t.dtype && found->shape == t.shape && found->bytes.size() == spec.bytes(),
                      "%s: solved as %s %s, the layout expects %s %s", t.name.c_str(),
                      std::string(dtype_name(found->dtype)).c_str(), shape_string(found->shape).c_str(),
                      std::string(dtype_name(t.dtype)).c_str(), shape_string(t.shape).c_str());
        writer_->write(t.name, std::span<const std::byte>(found->bytes));
        ++used;
        break;
      }
    }
    bytes_written_ += spec.bytes();
  }
  // Every solved tensor has a place in the layout (nothing solved is silently dropped).
  size_t produced = 0;
  for (const auto& [name, s] : solved) produced += s->tensors.size();
  DSV4_CHECK_IN("writer", partial || used == produced, "segment %d: %zu solved tensors, %zu placed by the layout",
                segment, produced, used);
  ++next_segment_;
}

namespace {

// CheckpointWriter writes the index's total_size as a number; the layout may want the decimal
// string AppMana's converter writes (ArtifactLayout::index_total_size_string). Same key order and
// indentation as CheckpointWriter's.
void index_total_size_to_string(const std::string& path) {
  nlohmann::json index = nlohmann::json::parse(read_file(path));
  index["metadata"]["total_size"] = std::to_string(index["metadata"]["total_size"].get<uint64_t>());
  write_file_atomic(path, index.dump(2) + "\n");
}

}  // namespace

void ArtifactWriter::finish(const std::vector<std::pair<std::string, std::string>>& files) {
  DSV4_CHECK_IN("writer", next_ == layout_.tensors.size(), "finish after %zu of %zu tensors", next_,
                layout_.tensors.size());
  writer_->finish();
  if (layout_.index_total_size_string) index_total_size_to_string(dir_ + "/model.safetensors.index.json");
  for (const auto& [name, content] : files) write_file_atomic(dir_ + "/" + name, content);
  if (copy_tokenizer_) {
    for (const std::string& f : tokenizer_file_names()) {
      const std::string from = source_.dir() + "/" + f;
      const bool claimed = std::any_of(files.begin(), files.end(), [&](const auto& x) { return x.first == f; });
      if (!claimed && fs::exists(from)) write_file_atomic(dir_ + "/" + f, read_file(from));
    }
  }
  fsync_directory(dir_);
}

}  // namespace dsv4::calib
