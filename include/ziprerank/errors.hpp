// Error types used throughout ziprerank. Library code throws; the CLI maps each kind to an exit
// code.
#pragma once

#include <stdexcept>
#include <string>

namespace ziprerank {

/// Process exit codes, set only at the program's edge (the CLI's main).
enum class ExitCode : int {
  kOk = 0,
  kPartialFailure = 1,  ///< the run finished but some items failed (e.g. batch queries)
  kUsage = 2,           ///< bad command line
  kBadInput = 3,        ///< a file, model folder or record the user gave is wrong
  kInternal = 4,        ///< a bug or an unexpected runtime failure
  kInterrupted = 130,   ///< stopped by SIGINT/SIGTERM after saving finished work
};

/// Base class: a message meant for the user, plus the exit code it maps to.
class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const noexcept { return code_; }

 private:
  ExitCode code_;
};

/// The command line was wrong (unknown flag value, conflicting options).
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& message) : Error(ExitCode::kUsage, message) {}
};

/// Input data was wrong: malformed file, missing tensor, bad record, unreadable image.
class InputError : public Error {
 public:
  explicit InputError(const std::string& message) : Error(ExitCode::kBadInput, message) {}
};

/// The user stopped the work (SIGINT/SIGTERM) before it finished.
class Interrupted : public Error {
 public:
  explicit Interrupted(const std::string& message) : Error(ExitCode::kInterrupted, message) {}
};

/// An invariant inside ziprerank failed.
class InternalError : public Error {
 public:
  explicit InternalError(const std::string& message) : Error(ExitCode::kInternal, message) {}
};

}  // namespace ziprerank
