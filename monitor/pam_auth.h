// Password logins through PAM: pam_authenticate, then pam_acct_mgmt.
#pragma once

#include <string>

namespace popguard::monitor {

enum class PamResult {
  kOk,
  kFailed,    // wrong password, unknown user, account refused
  kTempFail,  // PAM could not decide (a module or service is down)
};

struct PamOutcome {
  PamResult result = PamResult::kFailed;
  std::string user;    // the name PAM settled on (PAM_USER), on success
  std::string reason;  // pam_strerror text, for the audit record
};

// Runs the PAM service `service` for `user` with `password` as the answer
// to every hidden prompt.  `rhost` is set as PAM_RHOST.  The password is
// wiped from `password` before this returns.  libpam's own failure delay
// is disabled: the monitor applies one delay for every kind of failure, so
// that an unknown user and a wrong password look alike.
PamOutcome PamLogin(const std::string& service, const std::string& user,
                    std::string& password, const std::string& rhost);

}  // namespace popguard::monitor
