// Small text helpers shared by the tokenizers: UTF-8 scanning, lossy repair, GPT-2's
// byte<->unicode table, "<0xXX>" byte pieces, file reading.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"

namespace kiln::tok {

// Length of the UTF-8 sequence starting at s[i] if it is a complete valid character,
// 0 if it is invalid, -1 if it is a valid but truncated prefix (the text ends too early).
int Utf8CharLen(std::string_view s, size_t i);
// Replaces every invalid subsequence with U+FFFD (maximal-subpart rule, like Rust's from_utf8_lossy).
std::string Utf8Lossy(std::string_view s);
bool IsValidUtf8(std::string_view s);
// Number of trailing bytes that form a valid-but-incomplete UTF-8 prefix (0..3).
size_t IncompleteUtf8Tail(std::string_view s);
// Splits into UTF-8 characters; an invalid byte becomes its own one-byte piece.
std::vector<std::string_view> SplitUtf8Chars(std::string_view s);
std::string EncodeUtf8(uint32_t cp);
// Decodes one code point at s[i] (advancing i); invalid bytes yield U+FFFD and advance by one.
uint32_t DecodeUtf8(std::string_view s, size_t& i);

// GPT-2 byte-level alphabet: byte -> its printable stand-in (as UTF-8), and back.
const std::string& ByteToUnicode(uint8_t b);
// Returns -1 if the code point is not one of the 256 stand-ins.
int UnicodeToByte(uint32_t cp);
std::string BytesToByteLevel(std::string_view bytes);
// Maps stand-ins back to bytes; false (and out untouched) if any character is not a stand-in.
bool ByteLevelToBytes(std::string_view text, std::string* out);

// "<0x41>" -> 0x41; -1 if the piece is not a byte piece.
int ParseBytePiece(std::string_view piece);
std::string BytePieceName(uint8_t b);

Expected<std::string> ReadFileToString(const std::string& path);
bool FileExists(const std::string& path);
bool IsDirectory(const std::string& path);

}  // namespace kiln::tok
