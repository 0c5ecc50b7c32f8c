// tokenizer.cpp: placeholder until issue 5's implementation lands (being written now).
#include "data/tokenizer.h"
