// cmd_tokenize.cpp: `dsv4-calib tokenize`: token ids of a string or of each line of a JSONL file,
// with the tokenizer and chat encoding the calibration set uses. For checking a tokenizer and a
// dataset before a run, and for comparing against Hugging Face `tokenizers`.
//
//   dsv4-calib tokenize --tokenizer DIR --text "Hello world"            -> 19923 2058
//   dsv4-calib tokenize --tokenizer DIR --text "Hello world" --json     -> [19923,2058]
//   dsv4-calib tokenize --tokenizer DIR --text "Hi" --chat              -> BOS <｜User｜> Hi <｜Assistant｜> </think>
//   dsv4-calib tokenize --tokenizer DIR --jsonl in.jsonl                -> one {"ids":[...]} per line
//   some_command | dsv4-calib tokenize --tokenizer DIR --jsonl -        -> the same from standard input
//   dsv4-calib tokenize --tokenizer DIR --jsonl chats.jsonl --chat      -> {"messages": [...]} lines
//
// Without --chat the text is encoded as is: no BOS/EOS added, special-token strings in the text
// matched (Hugging Face's add_special_tokens=False); JSONL lines must be {"text": ...}. With
// --chat (or --thinking) the DSV4 chat encoding is used (data/chat_encoding.h): --text becomes
// one user message followed by the assistant transition, and JSONL lines must be
// {"messages": [...]}. Blank JSONL lines produce no output; a malformed line stops with its
// file and line number.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/fs.h"
#include "data/chat_encoding.h"
#include "data/dataset_reader.h"
#include "data/tokenizer.h"
#include "launch/commands.h"

namespace dsv4::launch {
namespace {

struct TokenizeArgs {
  std::string tokenizer;
  std::optional<std::string> text, jsonl;  // exactly one; --text "" is a valid (empty) string
  bool chat = false, thinking = false, json = false;
};

std::string ids_json(const std::vector<int32_t>& ids) { return nlohmann::json(ids).dump(); }

std::string ids_plain(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out.push_back(' ');
    out += std::to_string(ids[i]);
  }
  return out;
}

int run(const TokenizeArgs& a) {
  DSV4_USER_CHECK("tokenize", a.text.has_value() != a.jsonl.has_value(), "give exactly one of --text and --jsonl");
  const data::Tokenizer tok = data::Tokenizer::load(a.tokenizer, "--tokenizer");
  const bool chat = a.chat || a.thinking;
  const data::ChatMode mode = a.thinking ? data::ChatMode::kThinking : data::ChatMode::kChat;

  if (a.text) {
    const std::vector<data::ChatMessage> messages = {{data::ChatRole::kUser, *a.text, ""}};
    const std::vector<int32_t> ids = chat ? data::chat_encode(tok, messages, mode) : tok.encode(*a.text);
    std::printf("%s\n", a.json ? ids_json(ids).c_str() : ids_plain(ids).c_str());
    return 0;
  }

  // `-` reads standard input, a stream read once (a pipe is welcome there); any other path must be a
  // regular file, so a FIFO named by mistake is refused rather than blocking the open.
  const bool from_stdin = *a.jsonl == "-";
  const std::string path = from_stdin ? std::string("<stdin>") : *a.jsonl;
  if (!from_stdin) regular_file_require(path, "--jsonl", "pass - to read standard input");
  std::ifstream file;
  if (!from_stdin) file.open(path, std::ios::binary);
  std::istream& in = from_stdin ? std::cin : file;
  DSV4_USER_CHECK("tokenize", in.good(), "cannot open --jsonl file '%s'", path.c_str());
  const data::ReadOptions options{.accept_text = !chat, .accept_messages = chat};
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const data::RawRecord r = data::dataset_parse_jsonl_line(line, path, line_no, options);
    const std::vector<int32_t> ids = chat ? data::chat_encode(tok, r.messages, mode) : tok.encode(r.text);
    std::printf("{\"ids\":%s}\n", ids_json(ids).c_str());
  }
  DSV4_CHECK_IN("tokenize", in.eof(), "read error in '%s' after line %lld", path.c_str(),
                static_cast<long long>(line_no));
  return 0;
}

}  // namespace

Command cmd_tokenize_register(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* sub = app.add_subcommand("tokenize", "token ids of a string or of each JSONL line (plain or DSV4 chat encoding)");
  sub->add_option("--tokenizer", a->tokenizer, "directory holding tokenizer.json, or the file")->required();
  CLI::Option* text = sub->add_option("--text", a->text, "the string to encode");
  CLI::Option* jsonl = sub->add_option("--jsonl", a->jsonl, "JSONL file (- for standard input): {\"text\": ...} lines, or {\"messages\": [...]} with --chat");
  text->excludes(jsonl);
  sub->add_flag("--chat", a->chat, "DSV4 chat encoding, non-thinking (BOS, <｜User｜>, <｜Assistant｜></think>, EOS)");
  sub->add_flag("--thinking", a->thinking, "DSV4 chat encoding in thinking mode (implies --chat)");
  CLI::Option* json = sub->add_flag("--json", a->json, "with --text: print the ids as a JSON array");
  json->needs(text);
  return [a]() { return run(*a); };
}

}  // namespace dsv4::launch
