// JSON text for the wire: generated text may hold bytes that are not valid UTF-8 (a byte-level
// token on its own), which nlohmann would otherwise throw on; they become U+FFFD instead.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace kiln::server {

inline std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace kiln::server
