// run_journal.cpp: the run journal's complete records and the repair of a torn tail (see
// run_journal.h).
#include "calib/run_journal.h"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include "common/check.h"
#include "common/fs.h"
#include "common/json_guard.h"
#include "common/log.h"

namespace dsv4::calib {

JournalRead journal_read(const std::string& path) { return journal_parse(read_file(path), path); }

JournalRead journal_parse(std::string_view text, const std::string& path) {
  JournalRead r;
  r.file_bytes = text.size();
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = text.find('\n', pos);
    if (end == std::string::npos) break;  // no newline: the append that wrote it did not finish
    const std::string_view line(text.data() + pos, end - pos);
    ++line_no;
    if (!line.empty()) {
      const std::string where = path + " line " + std::to_string(line_no);
      try {
        r.records.push_back(json_parse<nlohmann::ordered_json>(line, where));  // nested too deep: a user error
      } catch (const nlohmann::json::parse_error& e) {
        // A complete line that does not parse was damaged after it was written (append writes
        // whole lines): the records after it cannot be trusted either.
        DSV4_USER_FAIL("resume", "%s is damaged (%s); the run state cannot be trusted: pass --restart to start over",
                       where.c_str(), json_error_text(e).c_str());
      }
    }
    pos = end + 1;
    r.valid_bytes = pos;
  }
  return r;
}

bool journal_repair(const std::string& path, const JournalRead& read) {
  if (read.file_bytes <= read.valid_bytes) return false;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  DSV4_CHECK_IN("resume", fd >= 0, "cannot open %s to repair it: %s", path.c_str(), std::strerror(errno));
  const bool ok = ::ftruncate(fd, static_cast<off_t>(read.valid_bytes)) == 0 && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  DSV4_CHECK_IN("resume", ok, "cannot truncate %s to its %llu valid bytes: %s", path.c_str(),
                static_cast<unsigned long long>(read.valid_bytes), std::strerror(err));
  log_warn("%s: dropped %llu bytes after its last complete record (an append cut short, e.g. by a kill or a full "
           "disk); %zu records remain, the run resumes after the last of them",
           path.c_str(), static_cast<unsigned long long>(read.file_bytes - read.valid_bytes), read.records.size());
  return true;
}

}  // namespace dsv4::calib
