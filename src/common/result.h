// The one error convention of the codebase: functions that can fail return
// Result<T> (a value or an Error) or Status (Result<void>). No exceptions
// cross our APIs. Error codes map one-to-one onto gRPC status codes so the
// daemon can hand them to API callers unchanged.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace sebpf {

enum class Errc {
  kInvalidArgument,     // the caller's input is wrong
  kNotFound,            // a named thing (cgroup, interface, id) is not there
  kAlreadyExists,       // the target is attached already
  kPermissionDenied,    // missing privileges or capabilities
  kUnsupported,         // the kernel or system lacks a needed feature
  kResourceExhausted,   // a map or table is full
  kFailedPrecondition,  // the system is not in a state that allows this
  kUnavailable,         // a service we need does not answer (the daemon, an upstream)
  kInternal,            // a bug or an unexpected kernel answer
};

std::string_view errc_name(Errc code);

// The description of an errno value ("Connection refused"), or "error <n>"
// for a value the C library does not know. Unlike std::strerror, safe to
// call from several threads at once (the daemon's DNS loops, its API and
// watcher threads all report system errors).
std::string errno_text(int err);

class [[nodiscard]] Error {
 public:
  Error(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  // "<what>: <errno_text(err)>", with a code derived from the errno value.
  static Error from_errno(int err, std::string_view what);

  Errc code() const { return code_; }
  const std::string& message() const { return message_; }

  // A new error with context put in front: "attach cgroup /x: <message>".
  Error wrap(std::string_view context) const;

 private:
  Errc code_;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<Error>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_{Errc::kInternal, ""};
  bool ok_ = true;
};

using Status = Result<void>;

inline Status ok_status() { return {}; }

}  // namespace sebpf

#define SEBPF_CONCAT_INNER(a, b) a##b
#define SEBPF_CONCAT(a, b) SEBPF_CONCAT_INNER(a, b)

// Returns the error of a failed Status/Result from the enclosing function.
#define SEBPF_RETURN_IF_ERROR(expr)                        \
  do {                                                     \
    auto&& sebpf_status_ = (expr);                         \
    if (!sebpf_status_.ok()) return sebpf_status_.error(); \
  } while (0)

// Declares `lhs` from a Result's value, or returns its error.
#define SEBPF_ASSIGN_OR_RETURN(lhs, expr) \
  SEBPF_ASSIGN_OR_RETURN_IMPL(SEBPF_CONCAT(sebpf_result_, __LINE__), lhs, expr)
#define SEBPF_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.error();                \
  lhs = std::move(tmp).value()
