// synth_text.cpp: seeded chat records from a small word list (see synth_text.h).
#include "model/synth_text.h"

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "common/rng.h"

namespace dsv4::model {
namespace {

constexpr const char* kSubjects[] = {"the model", "a student", "the engineer", "our team", "the river", "a small robot",
                                     "the teacher", "this recipe", "the city", "a curious cat", "the market",
                                     "every layer"};
constexpr const char* kVerbs[] = {"explains", "measures", "builds", "follows", "compares", "remembers", "quantizes",
                                  "describes", "improves", "counts", "writes", "predicts"};
constexpr const char* kObjects[] = {"the weather", "a long proof", "seven apples", "the next token", "a bridge",
                                    "the old map", "its own errors", "a quiet song", "the gradient", "two numbers",
                                    "the history of tea", "a simple question"};
constexpr const char* kTails[] = {"before noon", "with care", "in three steps", "for the first time", "again",
                                  "without a calculator", "near the station", "every morning", "by hand",
                                  "in plain words"};
constexpr const char* kQuestions[] = {"Can you explain why", "Please describe how", "Tell me whether",
                                      "Write a short note on how", "Summarize why"};

template <size_t N>
const char* pick(Rng& rng, const char* const (&words)[N]) {
  return words[rng.below(N)];
}

std::string sentence(Rng& rng) {
  std::string s = pick(rng, kSubjects);
  s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  s += std::string(" ") + pick(rng, kVerbs) + " " + pick(rng, kObjects);
  if (rng.below(2)) s += std::string(" ") + pick(rng, kTails);
  return s + (rng.below(5) ? "." : "!");
}

}  // namespace

std::string synth_calibration_jsonl(int records, uint64_t seed, int sentences) {
  DSV4_CHECK_IN("make-model", records >= 0 && sentences >= 0, "negative record (%d) or sentence (%d) count", records,
                sentences);
  std::string out;
  for (int i = 0; i < records; ++i) {
    Rng rng(rng_seed_for(seed, "calib." + std::to_string(i)));
    std::string q = std::string(pick(rng, kQuestions)) + " " + pick(rng, kSubjects) + " " + pick(rng, kVerbs) + " " +
                    pick(rng, kObjects) + "?";
    std::string a;
    const uint64_t n = sentences > 0 ? static_cast<uint64_t>(sentences) : 3 + rng.below(6);
    for (uint64_t k = 0; k < n; ++k) a += (k ? " " : "") + sentence(rng);
    const nlohmann::json rec = {{"messages", {{{"role", "user"}, {"content", q}}, {{"role", "assistant"}, {"content", a}}}}};
    out += rec.dump() + "\n";
  }
  return out;
}

}  // namespace dsv4::model
