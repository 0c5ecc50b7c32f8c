// chat_encoding.cpp: the DeepSeek-V4 chat format as pieces, rendered to text or encoded to ids
// with marker ids and injection-safe text encoding (format and rules in chat_encoding.h).
#include "data/chat_encoding.h"

#include <algorithm>
#include <utility>

#include "common/check.h"

namespace dsv4::data {
namespace {

constexpr std::string_view kFullwidthBar = "｜";  // U+FF5C, 3 bytes in UTF-8
constexpr std::string_view kDsml = "｜DSML｜";

// Text waiting to be encoded between two marker ids. `protected_` are byte ranges that hold a
// marker spelled as text (a tokenizer without a <think> token); the cut rule leaves them alone.
struct TextRun {
  std::string text;
  std::vector<std::pair<size_t, size_t>> protected_;  // [begin, end)

  bool is_protected(size_t pos) const {
    for (const auto& [b, e] : protected_) {
      if (pos >= b && pos < e) return true;
    }
    return false;
  }
};

// Byte offsets where the text must be cut so no added token can match across them (rule in
// chat_encoding.h): after a '<' that starts "<｜", "<|", "<think>" or "</think>", and after the
// first bar of "｜DSML｜".
std::vector<size_t> text_cuts(const TextRun& run) {
  const std::string_view t = run.text;
  std::vector<size_t> cuts;
  for (size_t p = 0; p < t.size(); ++p) {
    if (run.is_protected(p)) continue;
    const std::string_view rest = t.substr(p);
    if (rest.size() > 1 && rest[0] == '<' &&
        (rest.substr(1).starts_with(kFullwidthBar) || rest[1] == '|' || rest.starts_with(kChatThinkOpen) ||
         rest.starts_with(kChatThinkClose))) {
      cuts.push_back(p + 1);
    } else if (rest.starts_with(kDsml)) {
      cuts.push_back(p + kFullwidthBar.size());
    }
  }
  return cuts;
}

void append_encoded(const Tokenizer& tok, const TextRun& run, std::vector<int32_t>& out) {
  if (run.text.empty()) return;
  size_t begin = 0;
  std::vector<size_t> cuts = text_cuts(run);
  cuts.push_back(run.text.size());
  for (size_t end : cuts) {
    if (end > begin) {
      const std::vector<int32_t> ids = tok.encode(std::string_view(run.text).substr(begin, end - begin));
      out.insert(out.end(), ids.begin(), ids.end());
    }
    begin = end;
  }
}

constexpr ChatMarker kAllMarkers[] = {ChatMarker::kBos,       ChatMarker::kEos,       ChatMarker::kUser,
                                      ChatMarker::kAssistant, ChatMarker::kThinkOpen, ChatMarker::kThinkClose};

}  // namespace

std::optional<ChatRole> chat_role_parse(std::string_view role) {
  if (role == "system") return ChatRole::kSystem;
  if (role == "user") return ChatRole::kUser;
  if (role == "assistant") return ChatRole::kAssistant;
  return std::nullopt;
}

std::string_view chat_role_name(ChatRole role) {
  switch (role) {
    case ChatRole::kSystem: return "system";
    case ChatRole::kUser: return "user";
    case ChatRole::kAssistant: return "assistant";
  }
  return "?";
}

std::optional<ChatMode> chat_mode_parse(std::string_view mode) {
  if (mode == "chat") return ChatMode::kChat;
  if (mode == "thinking") return ChatMode::kThinking;
  return std::nullopt;
}

std::string_view chat_mode_name(ChatMode mode) { return mode == ChatMode::kChat ? "chat" : "thinking"; }

std::string_view chat_marker_text(ChatMarker marker) {
  switch (marker) {
    case ChatMarker::kNone: return "";
    case ChatMarker::kBos: return kChatBos;
    case ChatMarker::kEos: return kChatEos;
    case ChatMarker::kUser: return kChatUser;
    case ChatMarker::kAssistant: return kChatAssistant;
    case ChatMarker::kThinkOpen: return kChatThinkOpen;
    case ChatMarker::kThinkClose: return kChatThinkClose;
  }
  return "";
}

void chat_validate(std::span<const ChatMessage> messages) {
  DSV4_CHECK_IN("data", !messages.empty(), "empty conversation: expected at least one message");
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != ChatRole::kAssistant) continue;
    // NOTE: V4 emits <｜Assistant｜> as the transition after a user message, so an assistant
    // message anywhere else would render with no marker at all; reject instead of guessing.
    DSV4_CHECK_IN("data", i > 0 && messages[i - 1].role == ChatRole::kUser,
                  "message %zu is an assistant message that does not follow a user message (after %s)", i,
                  i == 0 ? "nothing" : std::string(chat_role_name(messages[i - 1].role)).c_str());
  }
}

std::vector<ChatPiece> chat_pieces(std::span<const ChatMessage> messages, ChatMode mode) {
  chat_validate(messages);
  const bool thinking = mode == ChatMode::kThinking;
  int64_t last_user = -1;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role == ChatRole::kUser) last_user = static_cast<int64_t>(i);
  }
  std::vector<ChatPiece> out;
  auto marker = [&](ChatMarker m) { out.push_back({m, {}}); };
  auto text = [&](std::string_view t) {
    if (!t.empty()) out.push_back({ChatMarker::kNone, t});
  };
  marker(ChatMarker::kBos);
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const int64_t index = static_cast<int64_t>(i);
    switch (m.role) {
      case ChatRole::kSystem:
        text(m.content);
        break;
      case ChatRole::kUser: {
        if (i > 0 && messages[i - 1].role == ChatRole::kUser) {
          text("\n\n");
        } else {
          marker(ChatMarker::kUser);
        }
        text(m.content);
        const bool last = i + 1 == messages.size();
        if (last || messages[i + 1].role == ChatRole::kAssistant) {
          marker(ChatMarker::kAssistant);
          marker(thinking && index == last_user ? ChatMarker::kThinkOpen : ChatMarker::kThinkClose);
        }
        break;
      }
      case ChatRole::kAssistant:
        if (thinking && index > last_user) {
          text(m.reasoning);
          marker(ChatMarker::kThinkClose);
        }
        text(m.content);
        marker(ChatMarker::kEos);
        break;
    }
  }
  return out;
}

std::string chat_render(std::span<const ChatMessage> messages, ChatMode mode) {
  std::string out;
  for (const ChatPiece& p : chat_pieces(messages, mode)) {
    out += p.marker == ChatMarker::kNone ? p.text : chat_marker_text(p.marker);
  }
  return out;
}

std::vector<int32_t> chat_encode_text(const Tokenizer& tok, std::string_view text) {
  std::vector<int32_t> out;
  append_encoded(tok, TextRun{std::string(text), {}}, out);
  return out;
}

std::vector<int32_t> chat_encode(const Tokenizer& tok, std::span<const ChatMessage> messages, ChatMode mode) {
  const std::vector<ChatPiece> pieces = chat_pieces(messages, mode);
  // Marker ids, resolved once; nullopt where the tokenizer has no such token.
  std::optional<int32_t> ids[std::size(kAllMarkers) + 1];
  for (ChatMarker m : kAllMarkers) ids[static_cast<int>(m)] = tok.find_token_id(chat_marker_text(m));

  std::vector<int32_t> out;
  TextRun run;
  auto flush = [&]() {
    const size_t start = out.size();
    append_encoded(tok, run, out);
    // Internal invariant of the cut rule: text never yields a marker id.
    for (size_t k = start; k < out.size(); ++k) {
      for (ChatMarker m : kAllMarkers) {
        DSV4_CHECK_IN("data", ids[static_cast<int>(m)] != out[k],
                      "text piece encoded to the marker %s (id %d): the special-token cut rule missed it",
                      std::string(chat_marker_text(m)).c_str(), out[k]);
      }
    }
    run = {};
  };
  for (const ChatPiece& p : pieces) {
    if (p.marker == ChatMarker::kNone) {
      run.text += p.text;
      continue;
    }
    const std::optional<int32_t> id = ids[static_cast<int>(p.marker)];
    if (id) {
      flush();
      out.push_back(*id);
      continue;
    }
    const std::string_view spelled = chat_marker_text(p.marker);
    DSV4_CHECK_IN("data", p.marker == ChatMarker::kThinkOpen || p.marker == ChatMarker::kThinkClose,
                  "the tokenizer has no token '%s', which the DSV4 chat format needs", std::string(spelled).c_str());
    // No <think>/</think> token (DeepSeek-V3's tokenizer): spell it as text, merged with the
    // text after it exactly as encoding the whole conversation string would.
    run.protected_.emplace_back(run.text.size(), run.text.size() + spelled.size());
    run.text += spelled;
  }
  flush();
  return out;
}

}  // namespace dsv4::data
