// test_check.cpp: the check macros throw dsv4::Error with component, location, the failing
// condition and the formatted message; status checks evaluate their expression once.
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <string>

#include "common/check.h"
#include "common/log.h"

namespace dsv4 {
namespace {

using ::testing::HasSubstr;

TEST(Check, PassingCheckDoesNothingFailingCheckThrowsWithMessage) {
  EXPECT_NO_THROW(DSV4_CHECK(1 + 1 == 2, "never shown"));
  try {
    const int n = 100;
    DSV4_CHECK(n % 128 == 0, "hidden size %d is not a multiple of %d", n, 128);
    FAIL() << "DSV4_CHECK did not throw";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_THAT(what, HasSubstr("[dsv4]"));
    EXPECT_THAT(what, HasSubstr("test_check.cpp:"));
    EXPECT_THAT(what, HasSubstr("n % 128 == 0"));
    EXPECT_THAT(what, HasSubstr("hidden size 100 is not a multiple of 128"));
    EXPECT_EQ(e.component(), "dsv4");
  }
}

TEST(Check, ComponentVariantAndFail) {
  try {
    DSV4_CHECK_IN("safetensors", false, "file %s", "x.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "safetensors");
    EXPECT_THAT(e.what(), HasSubstr("file x.safetensors"));
  }
  EXPECT_THROW(DSV4_FAIL("config", "bad key %s", "x"), Error);
}

// A fake library with its own status codes, standing in for cudaError_t / ncclResult_t.
enum FakeStatus { kFakeOk = 0, kFakeBroken = 3 };
const char* fake_status_string(FakeStatus s) { return s == kFakeOk ? "ok" : "broken"; }
int g_calls = 0;
FakeStatus fake_call(FakeStatus s) {
  ++g_calls;
  return s;
}

TEST(Check, StatusCheckEvaluatesOnceAndQuotesStatement) {
  g_calls = 0;
  EXPECT_NO_THROW(DSV4_CHECK_STATUS("fake", fake_call(kFakeOk), kFakeOk, fake_status_string));
  EXPECT_EQ(g_calls, 1);
  try {
    DSV4_CHECK_STATUS("fake", fake_call(kFakeBroken), kFakeOk, fake_status_string);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(g_calls, 2);
    EXPECT_THAT(e.what(), HasSubstr("fake_call(kFakeBroken) failed: broken"));
  }
}

TEST(Check, MacroIsASingleStatementInsideIfElse) {
  // A bare-if macro would capture this else (GGML_ASSERT's bug); do/while(0) must not.
  bool else_taken = false;
  if (false)
    DSV4_CHECK(false, "unreachable");
  else
    else_taken = true;
  EXPECT_TRUE(else_taken);
}

TEST(Check, ErrorCarriesRankContextInMultiRankRuns) {
  const LogContext saved = log_context();
  set_log_context({.rank = 3, .world = 8, .host = "node07", .device = 3});
  try {
    DSV4_CHECK(false, "boom");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("(rank 3/8 node07 gpu3)"));
  }
  EXPECT_EQ(log_context().prefix(), "[r3/8 node07 gpu3] ");
  set_log_context(saved);
}

TEST(Check, UserErrorSpeaksTheUsersWordsAndKeepsTheLocationForDetail) {
  EXPECT_NO_THROW(DSV4_USER_CHECK("cli", true, "never shown"));
  try {
    const int64_t want = 768, records = 64;
    DSV4_USER_CHECK("data", want <= records, "asked for %lld samples (--num-samples) but the data has %lld records",
                    static_cast<long long>(want), static_cast<long long>(records));
    FAIL() << "DSV4_USER_CHECK did not throw";
  } catch (const Error& e) {
    EXPECT_TRUE(e.user());
    EXPECT_EQ(e.kind(), ErrorKind::kUser);
    EXPECT_EQ(e.component(), "data");
    // what(): the message alone, exactly; no component, file:line or expression.
    EXPECT_EQ(std::string(e.what()), "asked for 768 samples (--num-samples) but the data has 64 records");
    // detail(): where it was raised and the condition, for -v 2.
    EXPECT_THAT(e.detail(), HasSubstr("[data] test_check.cpp:"));
    EXPECT_THAT(e.detail(), HasSubstr("want <= records: asked for 768 samples"));
  }
  try {
    DSV4_USER_FAIL("cli", "--out %s is the source checkpoint", "runs/tiny");
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(e.user());
    EXPECT_EQ(std::string(e.what()), "--out runs/tiny is the source checkpoint");
  }
  // Internal errors keep the location in what(); a user error in a multi-rank run names the rank.
  try {
    DSV4_CHECK(false, "boom");
    FAIL();
  } catch (const Error& e) {
    EXPECT_FALSE(e.user());
    EXPECT_EQ(e.kind(), ErrorKind::kInternal);
    EXPECT_EQ(std::string(e.what()).rfind(e.detail(), 0), 0u) << e.what();
  }
  const LogContext saved = log_context();
  set_log_context({.rank = 1, .world = 2, .host = "node07"});
  try {
    DSV4_USER_FAIL("cli", "bad flag");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "bad flag (rank 1/2 node07)");
  }
  set_log_context(saved);
}

TEST(Check, StrfmtHandlesLongAndEmptyOutput) {
  EXPECT_EQ(strfmt("%s", ""), "");
  const std::string long_text(5000, 'x');
  EXPECT_EQ(strfmt("<%s>", long_text.c_str()).size(), 5002u);
}

}  // namespace
}  // namespace dsv4
