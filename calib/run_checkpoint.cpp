// run_checkpoint.cpp: the run journal, staged solved segments and activation snapshots (see
// run_checkpoint.h).
#include "calib/run_checkpoint.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <fcntl.h>
#include <unistd.h>

#include "calib/run_journal.h"
#include "calib/run_lock.h"
#include "calib/solved_share.h"
#include "common/check.h"
#include "common/codec.h"
#include "common/fs.h"
#include "common/json_guard.h"
#include "common/log.h"
#include "common/parallel.h"
#include "common/rng.h"
#include "data/sample_hash.h"
#include "dist/run_phase.h"

namespace dsv4::calib {
namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

constexpr const char* kRunDir = ".calib_run";
constexpr const char* kJournal = "journal.jsonl";

// Whether `out` holds nothing but the run state of a run killed before its journal's header was
// committed: `.calib_run` with at most its empty `solved/`, a journal temp file and the run lock.
// Nothing of such a run was written (the header is written before any shard or staged file), so
// the next run starts afresh there instead of refusing the directory.
bool run_state_unstarted(const std::string& out) {
  std::error_code ec;
  const fs::path run_dir = fs::path(out) / kRunDir;
  if (!fs::is_directory(run_dir, ec) || fs::exists(run_dir / kJournal, ec)) return false;
  for (const fs::directory_entry& e : fs::directory_iterator(out, ec)) {
    if (e.path().filename() != kRunDir) return false;
  }
  for (const fs::directory_entry& e : fs::directory_iterator(run_dir, ec)) {
    const std::string name = e.path().filename().string();
    const bool empty_solved = name == "solved" && fs::is_directory(e.path(), ec) && fs::is_empty(e.path(), ec);
    if (!empty_solved && name != RunLock::kName && !name.starts_with(std::string(kJournal) + ".tmp")) return false;
  }
  return !ec;
}

// Removes the run state but not the run lock in it, which this run holds (run_lock.h).
void run_state_remove(const fs::path& run_dir) {
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(run_dir, ec)) {
    if (e.path().filename() != RunLock::kName) fs::remove_all(e.path(), ec);
  }
}

std::string seg_name(int segment) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "seg-%05d", segment);
  return buf;
}

// Whether every state value is a bf16 value widened (its low 16 bits zero): what the GPU
// forward's bf16 states are. Such a snapshot is stored as bf16, half the bytes, and loads back
// to the same floats.
bool states_are_bf16(const std::vector<std::vector<float>>& states) {
  std::atomic<bool> exact{true};
  parallel_for(states.size(), 0, [&](size_t k) {
    uint32_t low = 0;
    for (const float v : states[k]) {
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      low |= bits & 0xFFFFu;
    }
    if (low != 0) exact = false;
  });
  return exact;
}

// The states' high halves, converted on all cores in chunks of samples (~256 MB of bf16 each).
void write_bf16(AtomicFile& f, const std::vector<std::vector<float>>& states) {
  std::vector<std::vector<uint16_t>> chunk;
  for (size_t k0 = 0; k0 < states.size();) {
    size_t k1 = k0, bytes = 0;
    while (k1 < states.size() && (k1 == k0 || bytes + states[k1].size() * 2 <= (256u << 20))) bytes += states[k1++].size() * 2;
    chunk.resize(k1 - k0);
    parallel_for(k1 - k0, 0, [&](size_t j) {
      const std::vector<float>& st = states[k0 + j];
      chunk[j].resize(st.size());
      for (size_t i = 0; i < st.size(); ++i) {
        uint32_t bits;
        std::memcpy(&bits, &st[i], 4);
        chunk[j][i] = static_cast<uint16_t>(bits >> 16);
      }
    });
    for (const auto& c : chunk) f.write(c.data(), c.size() * 2);
    k0 = k1;
  }
}

ordered_json file_record(const std::string& dir, const std::string& rel) {
  const std::string path = dir + "/" + rel;
  return {{"file", rel}, {"bytes", static_cast<uint64_t>(fs::file_size(path))}, {"sum64", file_checksum_hex(path)}};
}

// Throws unless dir/rel exists as a regular file with the recorded size and checksum. `rel` is the
// writer's own plain file name: one that leaves `dir` (absolute, "..") or names no regular file
// (a FIFO would block the checksum's read) is a damaged journal, refused before it is opened.
void check_record(const std::string& dir, const ordered_json& rec, const char* what) {
  const std::string rel = rec.at("file").get<std::string>();
  const fs::path rel_path(rel);
  const bool inside = !rel.empty() && rel_path.is_relative() &&
                      std::none_of(rel_path.begin(), rel_path.end(), [](const fs::path& p) { return p == ".."; });
  DSV4_USER_CHECK("resume", inside, "%s \"%s\" listed in the journal is not a file name inside %s; the run state is "
                  "damaged (pass --restart to start over)", what, rel.c_str(), dir.c_str());
  const std::string path = dir + "/" + rel;
  std::error_code ec;
  DSV4_USER_CHECK("resume", fs::exists(path, ec), "%s %s listed in the journal is missing; the run state is damaged "
                "(pass --restart to start over)", what, path.c_str());
  DSV4_USER_CHECK("resume", fs::is_regular_file(path, ec), "%s %s listed in the journal is not a regular file; the run "
                  "state is damaged (pass --restart to start over)", what, path.c_str());
  const uint64_t bytes = fs::file_size(path);
  // Journals written before the block checksum record "fnv" (byte-serial FNV-1a of the file).
  const bool old = rec.contains("fnv");
  const std::string want = rec.at(old ? "fnv" : "sum64").get<std::string>();
  DSV4_USER_CHECK("resume",
                bytes == rec.at("bytes").get<uint64_t>() && (old ? file_fnv_hex(path) : file_checksum_hex(path)) == want,
                "%s %s does not match the journal (%llu bytes, checksum %s expected); the run state is damaged "
                "(pass --restart to start over)",
                what, path.c_str(), static_cast<unsigned long long>(rec.at("bytes").get<uint64_t>()), want.c_str());
}

// Leftover temporary files of killed writers (AtomicFile names: <path>.tmp.<pid>).
void sweep_temp_files(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec) && e.path().filename().string().find(".tmp.") != std::string::npos) fs::remove(e.path(), ec);
  }
}

}  // namespace

std::string file_fnv_hex(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  DSV4_CHECK_IN("resume", f.good(), "cannot read %s", path.c_str());
  uint64_t h = kFnv1a64Offset;
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h = hash_fnv1a64(std::string_view(buf.data(), static_cast<size_t>(f.gcount())), h);
  }
  return data::sample_hash_hex(h);
}

namespace {

constexpr uint64_t kFnvPrime = 0x100000001b3ull;
constexpr size_t kChecksumBlock = 16u << 20;

// FNV-1a 64 over 8-byte little-endian words (a last partial word byte by byte).
uint64_t fnv_words(const unsigned char* p, size_t n, uint64_t h) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * kFnvPrime;
  }
  for (; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
  return h;
}

}  // namespace

std::string file_checksum_hex(const std::string& path) {
  const uint64_t size = fs::file_size(path);
  const size_t blocks = static_cast<size_t>((size + kChecksumBlock - 1) / kChecksumBlock);
  std::vector<uint64_t> digest(blocks);
  const int fd = ::open(path.c_str(), O_RDONLY);
  DSV4_CHECK_IN("resume", fd >= 0, "cannot read %s", path.c_str());
  std::atomic<bool> short_read{false};
  parallel_for(blocks, 0, [&](size_t b) {
    std::vector<unsigned char> buf(kChecksumBlock);
    const uint64_t at = b * static_cast<uint64_t>(kChecksumBlock);
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChecksumBlock, size - at));
    size_t got = 0;
    while (got < want) {
      const ssize_t r = ::pread(fd, buf.data() + got, want - got, static_cast<off_t>(at + got));
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    if (got != want) short_read = true;
    digest[b] = fnv_words(buf.data(), got, kFnv1a64Offset);
  });
  ::close(fd);
  DSV4_CHECK_IN("resume", !short_read, "reading %s failed (%llu bytes expected)", path.c_str(),
                static_cast<unsigned long long>(size));
  uint64_t h = fnv_words(reinterpret_cast<const unsigned char*>(digest.data()), digest.size() * 8, kFnv1a64Offset);
  h = (h ^ size) * kFnvPrime;
  return data::sample_hash_hex(h);
}

void RunCheckpoint::out_dir_check(const std::string& out) {
  std::error_code ec;
  if (fs::exists(out + "/" + kRunDir + "/" + kJournal, ec)) return;  // an interrupted run: open_or_create decides
  DSV4_USER_CHECK("writer", !fs::exists(out, ec) || fs::is_directory(out, ec),
                  "--out %s is a file, not a directory (output.dir in the recipe, or --out): choose a new directory",
                  out.c_str());
  // Empty first, then an unstarted run state: rank 0 may be creating OUT/.calib_run (its run lock)
  // while another rank checks; in this order that rank sees either the empty directory or the
  // run state (the other order could see neither and refuse the directory: issue 26's note).
  if (!fs::exists(out, ec) || fs::is_empty(out, ec)) return;
  if (run_state_unstarted(out)) return;  // killed before its first commit: open_or_create starts over
  DSV4_USER_CHECK("writer", !fs::exists(out + "/model.safetensors.index.json", ec),
                  "--out %s already holds a finished artifact; refusing to overwrite it: choose another --out, or "
                  "remove that directory", out.c_str());
  DSV4_USER_FAIL("writer",
                 "--out %s is not empty and holds no interrupted run (no .calib_run/journal.jsonl); refusing to "
                 "write into it: choose a new or empty directory for --out (or output.dir in the recipe)",
                 out.c_str());
}

RunCheckpoint RunCheckpoint::open_or_create(const std::string& out, const RunIdentity& id, dist::Communicator& comm,
                                            bool restart) {
  RunCheckpoint ck(out, comm);
  ck.run_dir_ = out + "/" + kRunDir;
  const std::string journal = ck.run_dir_ + "/" + kJournal;
  std::error_code ec;
  const bool has_journal = fs::exists(journal, ec);
  const bool rank0 = comm.rank() == 0;

  if (has_journal && restart) {
    log_info("--restart: discarding the run state in %s", ck.run_dir_.c_str());
    comm.barrier();  // every rank has seen the journal before rank 0 removes it
    if (rank0) {
      for (const std::string& s : id.shard_names) fs::remove(out + "/" + s, ec);
      run_state_remove(ck.run_dir_);
      sweep_temp_files(out);
    }
    comm.barrier();
  } else if (has_journal) {
    // The complete records; a torn tail (killed or out of space mid-append) is cut off below.
    const JournalRead read = journal_read(journal);
    std::map<int, bool> staged;  // segment -> needed for replay
    // A record with a field of the wrong type or none (damaged after it was written) made nlohmann
    // throw type_error/out_of_range, a raw library error naming no file (issue 26): `line` and
    // `key` follow the reading, so the message names the line and field it stopped at.
    size_t line = 1, snapshot_line = 0;
    std::string key;
    try {
      const std::vector<ordered_json>& lines = read.records;
      key = "kind";
      DSV4_USER_CHECK("resume", !lines.empty() && lines[0].value("kind", "") == "header",
                    "%s has no header line; the run state is damaged (pass --restart to start over)", journal.c_str());
      const ordered_json& h = lines[0];
      auto same = [&](const char* name, const std::string& now, const char* what) {
        key = name;
        DSV4_USER_CHECK("resume", h.value(name, "") == now,
                        "--out %s holds an interrupted run with another %s (journal %s, now %s); resuming would mix "
                        "two runs: pass --restart to discard it and start over, or choose another --out",
                        out.c_str(), what, h.value(name, "").c_str(), now.c_str());
      };
      same("recipe_fnv", id.recipe_fnv, "recipe");
      same("source_fnv", id.source_fnv, "source checkpoint");
      same("data_fnv", id.data_fnv, "calibration data");
      key = "shards";
      DSV4_USER_CHECK("resume", h.at("shards").get<std::vector<std::string>>() == id.shard_names,
                    "%s: the journal plans other shards than this run; pass --restart", out.c_str());
      for (size_t i = 1; i < lines.size(); ++i) {
        const ordered_json& e = lines[i];
        line = i + 1, key = "segment";
        const int seg = e.at("segment").get<int>();
        DSV4_USER_CHECK("resume", seg == static_cast<int>(i) - 1,
                        "%s line %zu: segment %d out of order; the run state is damaged (pass --restart to start over)",
                        journal.c_str(), i + 1, seg);
        key = "report";
        ck.reports_.push_back(e.at("report"));
        key = "shards";
        for (const auto& sh : e.at("shards")) check_record(out, sh, "committed shard");
        key = "staged";
        if (!e.at("staged").is_null()) staged[seg] = e.at("staged").value("replay", false);
        key = "snapshot";
        if (!e.at("snapshot").is_null()) {
          ck.snapshot_segment_ = e.at("snapshot").at("segment").get<int>();
          ck.snapshot_files_ = e.at("snapshot").at("files");
          snapshot_line = line;
        }
        key = "dropped_staged";
        for (const auto& d : e.at("dropped_staged")) staged.erase(d.get<int>());
        ck.first_segment_ = seg + 1;
      }
      ck.staged_segments_ = staged;
      for (const auto& [seg, replay] : staged) {
        line = static_cast<size_t>(seg) + 2, key = "staged";
        check_record(ck.run_dir_, lines[static_cast<size_t>(seg) + 1].at("staged"), "staged segment");
      }
      line = snapshot_line, key = "snapshot.files";
      for (const auto& f : ck.snapshot_files_) check_record(ck.snapshot_dir(ck.snapshot_segment_), f, "snapshot");
    } catch (const nlohmann::json::exception& e) {
      DSV4_USER_FAIL("resume", "%s line %zu, field \"%s\": the record is damaged (%s); the run state cannot be "
                     "trusted: pass --restart to start over", journal.c_str(), line, key.c_str(),
                     json_error_text(e).c_str());
    }
    comm.barrier();  // every rank has read the state before rank 0 sweeps
    if (rank0) {
      sweep_temp_files(out);
      journal_repair(journal, read);  // before the next append
      log_info("resuming %s at segment %d of %d (snapshot after segment %d, %zu staged segments)", out.c_str(),
               ck.first_segment_, id.num_segments, ck.snapshot_segment_, staged.size());
    }
    comm.barrier();
    return ck;
  } else {
    out_dir_check(out);
  }
  comm.barrier();  // every rank has checked the directory before rank 0 creates the run state
  if (rank0) {
    if (run_state_unstarted(out)) run_state_remove(ck.run_dir_);
    make_directories(ck.run_dir_ + "/solved");
    ordered_json h = {{"kind", "header"},           {"version", 1},
                      {"recipe_fnv", id.recipe_fnv}, {"source_fnv", id.source_fnv},
                      {"data_fnv", id.data_fnv},     {"num_segments", id.num_segments},
                      {"shards", id.shard_names},    {"world_size", comm.world()}};
    write_file_atomic(journal, h.dump() + "\n");
  }
  comm.barrier();
  return ck;
}

std::string RunCheckpoint::staged_path(int segment) const { return run_dir_ + "/solved/" + seg_name(segment) + ".bin"; }
std::string RunCheckpoint::snapshot_dir(int segment) const { return run_dir_ + "/snap/" + seg_name(segment); }

void RunCheckpoint::append(const ordered_json& line) {
  const std::string path = run_dir_ + "/" + kJournal;
  FILE* f = std::fopen(path.c_str(), "a");
  DSV4_CHECK_IN("resume", f != nullptr, "cannot append to %s", path.c_str());
  const std::string text = line.dump() + "\n";
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
                  ::fsync(fileno(f)) == 0;
  std::fclose(f);
  DSV4_CHECK_IN("resume", ok, "writing %s failed (%zu bytes; disk full or read-only?): the journal is still valid "
                "up to the previous segment, rerun the same command to resume once fixed", path.c_str(), text.size());
}

void RunCheckpoint::on_shard_committed(const std::string& shard_name) {
  pending_shards_.push_back(file_record(out_, shard_name));
}

std::vector<std::vector<float>> RunCheckpoint::load_snapshot(int64_t first, int64_t n, const std::vector<int64_t>& lengths,
                                                             int64_t per_token) const {
  DSV4_CHECK_IN("resume", snapshot_segment_ >= 0, "no snapshot to load");
  std::vector<std::vector<float>> states;
  for (int64_t i = first; i < first + n; ++i) {
    const ordered_json* rec = nullptr;
    for (const auto& f : snapshot_files_) {
      if (f.at("begin").get<int64_t>() <= i && i < f.at("end").get<int64_t>()) rec = &f;
    }
    DSV4_CHECK_IN("resume", rec != nullptr, "snapshot after segment %d has no file for sample %lld", snapshot_segment_,
                  static_cast<long long>(i));
    int64_t offset = 0;
    for (int64_t j = rec->at("begin").get<int64_t>(); j < i; ++j) offset += lengths[static_cast<size_t>(j)] * per_token;
    std::vector<float> s(static_cast<size_t>(lengths[static_cast<size_t>(i)] * per_token));
    const std::string path = snapshot_dir(snapshot_segment_) + "/" + rec->at("file").get<std::string>();
    const std::string dtype = rec->value("dtype", "f32");  // journals before bf16 snapshots: f32
    DSV4_CHECK_IN("resume", dtype == "f32" || dtype == "bf16", "%s: unknown snapshot dtype '%s'", path.c_str(),
                  dtype.c_str());
    const int64_t elem = dtype == "bf16" ? 2 : 4;
    std::ifstream f(path, std::ios::binary);
    f.seekg(offset * elem);
    if (elem == 4) {
      f.read(reinterpret_cast<char*>(s.data()), static_cast<std::streamsize>(s.size() * 4));
    } else {
      std::vector<uint16_t> bits(s.size());
      f.read(reinterpret_cast<char*>(bits.data()), static_cast<std::streamsize>(bits.size() * 2));
      bf16_decode_n(bits.data(), s.data(), bits.size());
    }
    DSV4_CHECK_IN("resume", f.good(), "%s is shorter than its samples need", path.c_str());
    states.push_back(std::move(s));
  }
  return states;
}

std::vector<SolvedModule> RunCheckpoint::staged(int segment) const {
  DSV4_CHECK_IN("resume", staged_segments_.count(segment) == 1,
                "segment %d has no staged solved modules", segment);
  const std::string blob = read_file(staged_path(segment));
  std::vector<SolvedModule> out;
  for (size_t pos = 0; pos < blob.size();) out.push_back(solved_module_deserialize(blob, pos));
  return out;
}

RunCheckpoint::SegmentFiles RunCheckpoint::write_segment_files(int segment, const std::vector<SolvedModule>& solved,
                                                               const std::vector<std::vector<float>>* states,
                                                               int64_t first_sample, bool snapshot_due,
                                                               bool replay_needs_it,
                                                               const std::set<std::string>& writer_needs) const {
  SegmentFiles files;
  files.segment = segment;
  const std::string seg_label = "segment " + std::to_string(segment);
  // 1. Snapshot: each rank its own samples.
  if (snapshot_due && states) {
    files.snapshot = true;
    dist::RunPhase::set_background(seg_label, "snapshot");
    const std::string dir = snapshot_dir(segment);
    make_directories(dir);
    if (!states->empty()) {
      const int64_t end = first_sample + static_cast<int64_t>(states->size());
      const bool bf16 = states_are_bf16(*states);
      char name[64];
      std::snprintf(name, sizeof name, "samples-%06lld-%06lld.%s", static_cast<long long>(first_sample),
                    static_cast<long long>(end), bf16 ? "bf16" : "f32");
      AtomicFile f(dir + "/" + name);
      if (bf16) {
        write_bf16(f, *states);
      } else {
        for (const auto& s : *states) f.write(s.data(), s.size() * sizeof(float));
      }
      f.commit();
      files.snapshot_mine = file_record(dir, name);
      files.snapshot_mine["begin"] = first_sample;
      files.snapshot_mine["end"] = end;
      files.snapshot_mine["dtype"] = bf16 ? "bf16" : "f32";
    }
  }
  if (comm_->rank() != 0) return files;

  // 2. Stage the solved modules: the writer may need them again (open shard), and replay does
  // (forward layers until a later snapshot exists).
  dist::RunPhase::set_background(seg_label, "stage");
  // Without replay the writer needs only the encoded tensors of its open shard: at full width a
  // layer's experts are GBs, and the part in shards already committed is on disk for good.
  std::string blob;
  for (const SolvedModule& m : solved) {
    // The encoded tensors only: a replay rebuilds the weights from them (encoded_linear_decode,
    // bit-identical to the solve's), at a fraction of the fp32 bytes.
    if (replay_needs_it || writer_needs.count(m.module)) blob += solved_module_serialize(m, false);
  }
  if (!blob.empty()) {
    write_file_atomic(staged_path(segment), blob);
    files.staged = file_record(run_dir_, "solved/" + seg_name(segment) + ".bin");
    files.staged["replay"] = replay_needs_it;
  }
  return files;
}

void RunCheckpoint::commit_segment(const ordered_json& report, const SegmentFiles& files, int open_from_segment) {
  const int segment = files.segment;
  const std::string seg_label = "segment " + std::to_string(segment);
  // 1. Rank 0 learns every rank's snapshot file record.
  ordered_json snapshot = nullptr;
  if (files.snapshot) {
    ordered_json records = ordered_json::array();
    for (const std::string& s : comm_->all_gather_strings(files.snapshot_mine.dump())) {
      const ordered_json r = ordered_json::parse(s);
      if (!r.is_null()) records.push_back(r);
    }
    snapshot = {{"segment", segment}, {"files", records}};
  }
  if (comm_->rank() != 0) return;
  if (!files.staged.is_null()) staged_segments_[segment] = files.staged.at("replay").get<bool>();
  int new_snapshot = snapshot_segment_;
  if (!snapshot.is_null()) new_snapshot = segment;

  // 2. What is no longer needed once this line is durable.
  ordered_json dropped = ordered_json::array();
  for (const auto& [s, replay] : staged_segments_) {
    const bool writer_done = s < open_from_segment;
    const bool replay_done = !replay || s <= new_snapshot;
    if (writer_done && replay_done) dropped.push_back(s);
  }
  const int old_snapshot = snapshot_segment_;
  dist::RunPhase::set(seg_label, "journal");
  append({{"kind", "segment"},
          {"segment", segment},
          {"report", report},
          {"shards", pending_shards_},
          {"staged", files.staged},
          {"snapshot", snapshot},
          {"dropped_staged", dropped}});
  pending_shards_ = ordered_json::array();
  if (!snapshot.is_null()) {
    snapshot_segment_ = segment;
    snapshot_files_ = snapshot.at("files");
  }
  std::error_code ec;
  for (const auto& s : dropped) {
    fs::remove(staged_path(s.get<int>()), ec);
    staged_segments_.erase(s.get<int>());
  }
  if (old_snapshot >= 0 && old_snapshot != snapshot_segment_) fs::remove_all(snapshot_dir(old_snapshot), ec);
}

void RunCheckpoint::finish() {
  if (comm_->rank() != 0) return;
  std::error_code ec;
  fs::remove_all(run_dir_, ec);
  fsync_directory(out_);
}

}  // namespace dsv4::calib
