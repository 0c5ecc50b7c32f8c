// suggest.cpp: edit distance and the nearest candidate (see suggest.h).
#include "common/suggest.h"

#include <algorithm>

namespace dsv4 {

size_t suggest_edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string suggest_nearest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const std::string& c : candidates) {
    const size_t d = suggest_edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  const size_t limit = std::min<size_t>(2, std::max<size_t>(1, word.size() / 3));
  return best_d <= limit ? best : "";
}

}  // namespace dsv4
