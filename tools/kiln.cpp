// The one CLI. Subcommands register themselves from tools/cmd_*.cpp.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sstream>

#include "command.h"

namespace kiln::cli {

std::vector<CommandSetup>& Registry() {
  static std::vector<CommandSetup> registry;
  return registry;
}

void Fail(const Status& status) { Fail(status.message()); }
void Fail(const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "kiln: error: %s\n", message.c_str());
  throw CLI::RuntimeError(1);
}

std::vector<int32_t> ParseTokenList(const std::string& text, const std::string& flag) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) Fail(flag + ": empty token id in '" + text + "'");
    item = item.substr(b, e - b + 1);
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(item.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || v < 0 || v > INT32_MAX)
      Fail(flag + ": '" + item + "' is not a token id (a non-negative integer)");
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) Fail(flag + ": no token ids given");
  return ids;
}

}  // namespace kiln::cli

int main(int argc, char** argv) {
  CLI::App app{"kiln: build LLMs into inference engines and serve them fast"};
  app.set_version_flag("--version", std::string("kiln ") + KILN_VERSION);
  app.require_subcommand(1);
  for (auto setup : kiln::cli::Registry()) setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
