// The server's log: leveled messages and one JSON access-log line per request, on stderr
// (stdout stays free for whatever embeds the server).
#pragma once
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "kiln/status.h"

namespace kiln::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

Expected<LogLevel> ParseLogLevel(const std::string& name);  // debug | info | warning | error | off
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
void Log(LogLevel level, const std::string& message);
// {"ts": ISO-8601, "level": "info", "event": "access", ...fields}; at info level.
void AccessLog(const nlohmann::json& fields);

}  // namespace kiln::server
