// chat_encoding.h: the DeepSeek-V4 chat format, written as code (no template engine), encoded
// to token ids as marker-token ids plus tok.encode() of the text between them.
//
//   std::vector<ChatMessage> m = {{ChatRole::kUser, "Hi", ""}, {ChatRole::kAssistant, "Hello!", ""}};
//   std::vector<int32_t> ids = chat_encode(tok, m, ChatMode::kChat);
//   std::string text = chat_render(m, ChatMode::kChat);
//   // "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></think>Hello!<｜end▁of▁sentence｜>"
//
// The format: seed_pipelines.md §1.1 step 3 fixes the non-thinking turns (BOS, system as plain
// text, <｜User｜>, <｜Assistant｜></think>, EOS). The rest (transitions, consecutive users,
// thinking mode) follows DeepSeek's encoding_dsv4.py for V4 with its defaults, drop_thinking =
// true and reasoning effort "low" (which adds no text), as read from a public reimplementation
// of it (DeepSeek-V4-Flash-0731); the V3 chat_template in tokenizer_config.json agrees on BOS,
// system, <｜User｜>, <｜Assistant｜> and EOS but has no think markers.
//   - BOS first.
//   - system: its content as plain text, where it stands (no marker).
//   - user: <｜User｜> + content. Consecutive user messages share one <｜User｜> and are joined
//     by "\n\n". A user message followed by an assistant message, or ending the conversation,
//     is followed by the transition <｜Assistant｜> + (</think> | <think>).
//   - assistant: content + EOS. It must directly follow a user message.
//   - ChatMode::kChat (non-thinking): every transition is <｜Assistant｜></think>; reasoning is
//     not used.
//   - ChatMode::kThinking: the transition after the LAST user message is <｜Assistant｜><think>
//     and the assistant turns after it render reasoning + </think> + content + EOS (an empty
//     reasoning gives "<think></think>", as V4 renders it). Earlier turns drop their reasoning
//     and use </think>, as the model sees multi-turn history at inference.
//   Other roles (tool, developer, ...) and tool calls are rejected: calibration data has none.
//
// Special-token safety: the markers are emitted as token ids, never as text for the tokenizer
// to find, and the message text is encoded so it cannot produce a marker. Tokenizer::encode
// matches added tokens inside text (as HF does with add_special_tokens=False), so a user
// message containing the literal "<｜User｜>" would otherwise open a fake turn. Every text piece
// is therefore cut right after each '<' that starts "<｜", "<|", "<think>" or "</think>", and
// after the first '｜' of "｜DSML｜" (V4's tool-call marker). DeepSeek's added tokens all start
// with one of those ("<｜...｜>", "<|EOT|>", the think markers), so none can match across a cut
// and such text becomes ordinary tokens; chat_encode also checks that no text piece produced a
// marker id. Text without those sequences
// (all ordinary chat data) encodes exactly as the whole conversation string would, which
// tests/data/test_chat_encoding.cpp checks against Hugging Face `tokenizers`.
// If the tokenizer has no single token for <think> or </think> (DeepSeek-V3's tokenizer, used in
// tests), the marker is encoded as text together with the text that follows it, which again is
// exactly what encoding the whole string gives. BOS, EOS, <｜User｜> and <｜Assistant｜> must be
// tokens; a tokenizer without them is an error.
// Tests: tests/data/test_chat_encoding.cpp (fixture from tests/data/make_chat_fixture.py).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"

namespace dsv4::data {

enum class ChatRole { kSystem, kUser, kAssistant };
enum class ChatMode { kChat, kThinking };  // recipe strings "chat" and "thinking"

struct ChatMessage {
  ChatRole role = ChatRole::kUser;
  std::string content;
  std::string reasoning;  // `reasoning_content`; used only in ChatMode::kThinking
};

// The token strings of the chat markers (DeepSeek's spelling, fullwidth bars).
inline constexpr const char* kChatBos = "<｜begin▁of▁sentence｜>";
inline constexpr const char* kChatEos = "<｜end▁of▁sentence｜>";
inline constexpr const char* kChatUser = "<｜User｜>";
inline constexpr const char* kChatAssistant = "<｜Assistant｜>";
inline constexpr const char* kChatThinkOpen = "<think>";
inline constexpr const char* kChatThinkClose = "</think>";

std::optional<ChatRole> chat_role_parse(std::string_view role);  // "system", "user", "assistant"
std::string_view chat_role_name(ChatRole role);
std::optional<ChatMode> chat_mode_parse(std::string_view mode);  // "chat", "thinking"
std::string_view chat_mode_name(ChatMode mode);

// Throws (naming the message index and the rule) if the conversation breaks the format's rules.
void chat_validate(std::span<const ChatMessage> messages);
// The conversation as one string, markers spelled out: for logs, docs and tests.
std::string chat_render(std::span<const ChatMessage> messages, ChatMode mode);
std::vector<int32_t> chat_encode(const Tokenizer& tok, std::span<const ChatMessage> messages, ChatMode mode);
// tok.encode(text) made safe as described above: never yields an added token starting with
// "<｜", "<|", "<think>", "</think>" or "｜DSML｜".
std::vector<int32_t> chat_encode_text(const Tokenizer& tok, std::string_view text);

// implementation details -------------------------------------------------------------------
enum class ChatMarker { kNone, kBos, kEos, kUser, kAssistant, kThinkOpen, kThinkClose };
std::string_view chat_marker_text(ChatMarker marker);  // "" for kNone

// One piece of a rendered conversation: a marker, or text (views into the messages).
struct ChatPiece {
  ChatMarker marker = ChatMarker::kNone;
  std::string_view text;
};
// The conversation as pieces; chat_render and chat_encode both walk this, so they cannot
// disagree about the format. Validates first.
std::vector<ChatPiece> chat_pieces(std::span<const ChatMessage> messages, ChatMode mode);

}  // namespace dsv4::data
