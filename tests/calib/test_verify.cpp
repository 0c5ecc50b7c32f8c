// test_verify.cpp (being written)
