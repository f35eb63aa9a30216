#include "ctl/exit_codes.h"

namespace sebpf::ctl {

int exit_code_for(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument:
      return kExitInvalid;
    case Errc::kNotFound:
      return kExitNotFound;
    case Errc::kAlreadyExists:
      return kExitAlreadyAttached;
    case Errc::kPermissionDenied:
      return kExitPermission;
    case Errc::kUnavailable:
      return kExitUnreachable;
    case Errc::kUnsupported:
    case Errc::kResourceExhausted:
    case Errc::kFailedPrecondition:
      return kExitCannotNow;
    case Errc::kInternal:
      return kExitFailure;
  }
  return kExitFailure;
}

}  // namespace sebpf::ctl
