// fuzz_journal_line.cpp: the bytes as a run journal (OUT/.calib_run/journal.jsonl): first through
// journal_parse, the reader a resume starts with (complete lines, a torn tail, depth guard); then,
// when it accepts them, through RunCheckpoint::open_or_create on a run directory holding them as
// its journal, which reads every record's fields (header identity, segment order, report, shards,
// staged, snapshot, dropped_staged) and checks the files they list. The identity is the seeds'
// (a tiny run's), so mutated records get past the header to the field reads.
// Seeds: tests/fuzz/corpus/journal_line/ (journals of a tiny run, one cut mid-line).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "calib/run_checkpoint.h"
#include "calib/run_journal.h"
#include "dist/communicator.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsv4;
  static const std::unique_ptr<dist::Communicator> comm = [] {
    fuzz::quiet_logs();
    return dist::communicator_self();
  }();
  // The header of tests/fuzz/corpus/journal_line/killed_run.jsonl (make_seed_corpus.py).
  static const calib::RunIdentity seed_identity{"5d9ff8e099b68ed3", "c1584aac8a1f3192", "79d74ccb3f8fbb24", 6,
                                                {"model-00001-of-00001.safetensors"}};
  bool parsed = false;
  fuzz::expect_errors([&] {
    const calib::JournalRead r = calib::journal_parse(fuzz::text(data, size), "journal.jsonl");
    // What journal_repair relies on: the valid prefix lies inside the file.
    if (r.valid_bytes > r.file_bytes || r.file_bytes != size) std::abort();
    parsed = true;
  });
  if (!parsed) return 0;
  const std::string out = fuzz::scratch_dir() + "/out";
  std::error_code ec;
  std::filesystem::remove_all(out, ec);  // what a previous input's resume left (a repaired journal, a lock)
  std::filesystem::create_directories(out + "/.calib_run");
  fuzz::write_bytes(out + "/.calib_run/journal.jsonl", fuzz::text(data, size));
  fuzz::expect_errors([&] { (void)calib::RunCheckpoint::open_or_create(out, seed_identity, *comm, false); });
  return 0;
}
