// Each subcommand lives in its own tools/cmd_*.cpp and registers itself here, so that
// commands can be added without touching kiln.cpp.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln::cli {

using CommandSetup = void (*)(CLI::App& app);  // adds one subcommand and its callback

std::vector<CommandSetup>& Registry();
struct CommandRegistrar {
  explicit CommandRegistrar(CommandSetup setup) { Registry().push_back(setup); }
};

// Prints "kiln: error: <message>" to stderr and ends the command with exit code 1.
[[noreturn]] void Fail(const Status& status);
[[noreturn]] void Fail(const std::string& message);
inline void CheckOk(const Status& s) {
  if (!s.ok()) Fail(s);
}
template <typename T>
T ValueOrFail(Expected<T> e) {
  if (!e.ok()) Fail(e.status());
  return std::move(e).value();
}
// Parses "1,2,3" (spaces allowed) into token ids; fails with a clear message.
std::vector<int32_t> ParseTokenList(const std::string& text, const std::string& flag);

}  // namespace kiln::cli

#define KILN_REGISTER_COMMAND(setup) \
  static ::kiln::cli::CommandRegistrar KILN_CONCAT(kiln_cmd_registrar_, __LINE__)(setup)
