// test_tokenizer.cpp: placeholder until issue 5's implementation lands (being written now).
#include <gtest/gtest.h>

#include "data/tokenizer.h"

TEST(Tokenizer, HeaderCompiles) { SUCCEED(); }
