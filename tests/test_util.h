// Helpers shared by the C++ tests: fixture paths, temp dirs, running the kiln CLI.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace kiln::test {

// ../shared beside the repository (or ./shared inside it, or $KILN_SHARED_DIR); empty when
// none holds fixtures, so tests that can skip do so with a reason.
inline std::string SharedDir() {
  if (const char* e = std::getenv("KILN_SHARED_DIR")) return e;
  for (std::string d : {std::string(KILN_SOURCE_DIR) + "/shared", std::string(KILN_SOURCE_DIR) + "/../shared"})
    if (std::filesystem::exists(d + "/fixtures")) return d;
  return "";
}
inline std::string KilnBinary() { return KILN_BINARY; }

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// A fresh directory removed at scope exit.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("kiln_test_" + std::to_string(::getpid()) + "_" +
                                                      std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

struct CliResult {
  int exit_code = -1;
  bool crashed = false;  // killed by a signal
  std::string out, err;
};

// Runs `kiln args...` without a shell; captures stdout and stderr.
inline CliResult RunKiln(const std::vector<std::string>& args, const std::string& stdin_text = "") {
  TempDir io;
  const std::string out_path = io / "out", err_path = io / "err", in_path = io / "in";
  WriteFile(in_path, stdin_text);
  CliResult r;
  pid_t pid = fork();
  if (pid == 0) {
    FILE* o = std::freopen(out_path.c_str(), "w", stdout);
    FILE* e = std::freopen(err_path.c_str(), "w", stderr);
    FILE* i = std::freopen(in_path.c_str(), "r", stdin);
    (void)o, (void)e, (void)i;
    std::vector<char*> argv;
    std::string bin = KilnBinary();
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.crashed = true;
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  return r;
}

inline std::vector<int> ParseInts(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string tok;
  while (ss >> tok) {
    try {
      v.push_back(std::stoi(tok));
    } catch (...) {
    }
  }
  return v;
}

}  // namespace kiln::test
