#!/usr/bin/env bash
# cli_tokenize.sh: end-to-end checks of `dsv4-calib tokenize` through the real binary on the
# real DeepSeek tokenizer: --text (plain, --json, --chat) and --jsonl (text records, chat records
# with --chat) against ids Hugging Face `tokenizers` produced (tests/data/make_chat_fixture.py
# wrote tests/data/chat_fixture/), plus named errors for bad input.
# Run by ctest (cli_tokenize) as:
#   DSV4_BIN=path/to/dsv4-calib DSV4_SHARED=path/to/shared bash this.sh WORKDIR
set -uo pipefail
bin="${DSV4_BIN:?set DSV4_BIN to the dsv4-calib binary}"
shared="${DSV4_SHARED:?set DSV4_SHARED to the shared folder holding data/deepseek_v3_tokenizer}"
work="${1:?usage: $0 WORKDIR}"
fx="$(cd "$(dirname "$0")/../data/chat_fixture" && pwd)"
# The fixture was made from this tokenizer; another one (e.g. DSV4_TOKENIZER_DIR) gives other ids.
tok="$shared/data/deepseek_v3_tokenizer"
rm -rf "$work" && mkdir -p "$work"
source "$(dirname "$0")/e2e_lib.sh"
[ -f "$tok/tokenizer.json" ] || { echo "FAIL no tokenizer.json in $tok"; exit 1; }

# expect_stdout NAME EXPECTED CMD...: CMD exits 0 and prints exactly EXPECTED.
expect_stdout() {
  local name="$1" want="$2"; shift 2
  local out rc
  out=$("$@" 2>"$work/stderr"); rc=$?
  if [ "$rc" -ne 0 ]; then fail "$name: exit $rc: $(cat "$work/stderr")"; return; fi
  if [ "$out" != "$want" ]; then fail "$name: got '$out', expected '$want'"; return; fi
  pass "$name"
}
# expect_file NAME EXPECTED_FILE CMD...: CMD exits 0 and its stdout equals the file.
expect_file() {
  local name="$1" want="$2"; shift 2
  if ! "$@" >"$work/out" 2>"$work/stderr"; then fail "$name: exit non-zero: $(cat "$work/stderr")"; return; fi
  if ! diff -u "$want" "$work/out" >"$work/diff"; then fail "$name: differs from $want:"; cat "$work/diff"; return; fi
  [ -s "$work/out" ] && pass "$name" || fail "$name: empty output"
}

# 1. --text: plain ids, a JSON array, and the chat encoding of one user message.
arg="$(cat "$fx/cli_arg.txt")"
expect_stdout "--text" "$(sed -n 1p "$fx/cli_arg.expected")" "$bin" tokenize --tokenizer "$tok" --text "$arg"
expect_stdout "--text --json" "$(sed -n 2p "$fx/cli_arg.expected")" "$bin" tokenize --tokenizer "$tok" --text "$arg" --json
expect_stdout "--text --chat" "$(sed -n 3p "$fx/cli_arg.expected")" "$bin" tokenize --tokenizer "$tok/tokenizer.json" --text "$arg" --chat
expect_stdout "--text empty" "" "$bin" tokenize --tokenizer "$tok" --text ""

# 2. --jsonl: one {"ids":[...]} line per input line; blank lines produce nothing.
expect_file "--jsonl text records" "$fx/cli_text.expected" "$bin" tokenize --tokenizer "$tok" --jsonl "$fx/cli_text.jsonl"
expect_file "--jsonl --chat" "$fx/cli_chat.expected" "$bin" tokenize --tokenizer "$tok" --jsonl "$fx/cli_chat.jsonl" --chat
{ echo; cat "$fx/cli_text.jsonl"; echo "   "; } >"$work/blank.jsonl"
expect_file "--jsonl skips blank lines" "$fx/cli_text.expected" "$bin" tokenize --tokenizer "$tok" --jsonl "$work/blank.jsonl"

# 3. Errors name the file, the line and what was expected.
printf '{"text": "fine"}\n{"text": "unterminated}\n' >"$work/bad.jsonl"
expect_error "malformed line named" "bad.jsonl:2: invalid JSON" "$bin" tokenize --tokenizer "$tok" --jsonl "$work/bad.jsonl"
expect_error "messages need --chat" "cli_chat.jsonl:1:" "$bin" tokenize --tokenizer "$tok" --jsonl "$fx/cli_chat.jsonl"
expect_error "--chat needs messages" "cli_text.jsonl:1:" "$bin" tokenize --tokenizer "$tok" --jsonl "$fx/cli_text.jsonl" --chat
expect_error "--text and --jsonl exclude" "excludes" "$bin" tokenize --tokenizer "$tok" --text x --jsonl "$fx/cli_text.jsonl"
expect_error "one input required" "exactly one of --text and --jsonl" "$bin" tokenize --tokenizer "$tok"
expect_error "missing tokenizer named" "$work/nowhere" "$bin" tokenize --tokenizer "$work/nowhere" --text x
expect_error "missing --jsonl named" "$work/none.jsonl" "$bin" tokenize --tokenizer "$tok" --jsonl "$work/none.jsonl"

e2e_finish
