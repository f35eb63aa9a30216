#include "common/result.h"

#include <cstring>

namespace sebpf {

std::string_view errc_name(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument:
      return "invalid argument";
    case Errc::kNotFound:
      return "not found";
    case Errc::kAlreadyExists:
      return "already exists";
    case Errc::kPermissionDenied:
      return "permission denied";
    case Errc::kUnsupported:
      return "unsupported";
    case Errc::kResourceExhausted:
      return "resource exhausted";
    case Errc::kFailedPrecondition:
      return "failed precondition";
    case Errc::kUnavailable:
      return "unavailable";
    case Errc::kInternal:
      return "internal error";
  }
  return "unknown error";
}

std::string errno_text(int err) {
  // strerrordesc_np (glibc 2.32): a constant string per value, no locale
  // and no shared buffer, which strerror fills for unknown values.
  if (const char* text = strerrordesc_np(err); text != nullptr) return text;
  return "error " + std::to_string(err);
}

Error Error::from_errno(int err, std::string_view what) {
  if (err < 0) err = -err;
  Errc code = Errc::kInternal;
  switch (err) {
    case EPERM:
    case EACCES:
      code = Errc::kPermissionDenied;
      break;
    case ENOENT:
    case ENODEV:
    case ESRCH:
    case ENXIO:
      code = Errc::kNotFound;
      break;
    case EEXIST:
      code = Errc::kAlreadyExists;
      break;
    case EINVAL:
      code = Errc::kInvalidArgument;
      break;
    case ENOSPC:
    case E2BIG:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      code = Errc::kResourceExhausted;
      break;
    case EOPNOTSUPP:
    case ENOSYS:
    case EPROTONOSUPPORT:
    case EAFNOSUPPORT:
      code = Errc::kUnsupported;
      break;
    case EBUSY:
      code = Errc::kFailedPrecondition;
      break;
    default:
      break;
  }
  std::string msg(what);
  msg += ": ";
  msg += errno_text(err);
  return Error(code, std::move(msg));
}

Error Error::wrap(std::string_view context) const {
  std::string msg(context);
  msg += ": ";
  msg += message_;
  return Error(code_, std::move(msg));
}

}  // namespace sebpf
