// Runs the real ziprerank binary as a user would and captures what it prints.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace ziprerank::test {

struct CliResult {
  int code = -1;
  std::string out;
  std::string err;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Runs `before` + the binary + `args` in a shell. With `piped`, `before` supplies stdin (e.g.
/// "cat x |"); otherwise stdin is `stdin_text`.
inline CliResult run_cli_after(const std::string& before, const std::string& args,
                               const std::string& stdin_text, bool piped) {
  namespace fs = std::filesystem;
  static int counter = 0;
  const fs::path dir = fs::temp_directory_path() /
                       ("zr_cli_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::create_directories(dir);
  std::ofstream(dir / "in") << stdin_text;
  const std::string cmd = before + " " + shell_quote(ZIPRERANK_BINARY) + " " + args +
                          (piped ? "" : " < " + shell_quote((dir / "in").string())) + " > " +
                          shell_quote((dir / "out").string()) + " 2> " +
                          shell_quote((dir / "err").string());
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(dir / "out");
  r.err = slurp(dir / "err");
  fs::remove_all(dir);
  return r;
}

/// `args` is appended to the binary path verbatim (quote paths with shell_quote).
inline CliResult run_cli(const std::string& args, const std::string& stdin_text = "") {
  return run_cli_after("", args, stdin_text, false);
}

/// run_cli under a time limit: a command that would wait forever (on a FIFO) fails the test with
/// exit 124 instead of hanging the suite. `pipe` goes before the binary (e.g. "cat x |").
inline CliResult run_cli_limited(const std::string& args, const std::string& pipe = "") {
  return run_cli_after(pipe + " timeout -k 5 60", args, "", !pipe.empty());
}

/// One parsed JSON value per non-empty line; every line must parse.
inline std::vector<nlohmann::json> read_jsonl(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

// Sets (a value) or unsets (no value) an environment variable for the child processes the tests
// start, and puts back what was there when it goes out of scope, on every way out of the test
// (an ASSERT too). No name: does nothing.
class ScopedEnv {
 public:
  ScopedEnv(const std::string& name, const std::optional<std::string>& value) : name_(name) {
    if (name_.empty()) return;
    if (const char* was = std::getenv(name_.c_str())) saved_ = was;
    set(value);
  }
  ~ScopedEnv() {
    if (!name_.empty()) set(saved_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  void set(const std::optional<std::string>& value) const {
    if (value) {
      ::setenv(name_.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  std::string name_;
  std::optional<std::string> saved_;
};

}  // namespace ziprerank::test
