// user_error.h: the one check that a call is refused as a user error whose message holds each of
// the given pieces (the key, file or value the user wrote). Shared by the calib tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/check.h"

namespace dsv4 {

template <typename F>
void expect_user_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(e.user()) << e.what();
    for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

}  // namespace dsv4
