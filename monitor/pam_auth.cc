#include "monitor/pam_auth.h"

#include <security/pam_appl.h>

#include <cstdlib>
#include <cstring>

#include "common/secure.h"

namespace popguard::monitor {
namespace {

// Answers hidden prompts with the password; shows nothing to anyone; a
// visible prompt (a module asking for a name or an OTP) is refused, since a
// POP3 client cannot answer it.
int Converse(int n, const pam_message** msgs, pam_response** out, void* data) {
  if (n <= 0 || n > PAM_MAX_NUM_MSG) return PAM_CONV_ERR;
  auto* replies =
      static_cast<pam_response*>(std::calloc(n, sizeof(pam_response)));
  if (!replies) return PAM_BUF_ERR;
  const auto* password = static_cast<const std::string*>(data);
  for (int i = 0; i < n; i++) {
    switch (msgs[i]->msg_style) {
      case PAM_PROMPT_ECHO_OFF:
        replies[i].resp = strdup(password->c_str());
        if (!replies[i].resp) goto fail;
        break;
      case PAM_TEXT_INFO:
      case PAM_ERROR_MSG: break;
      default: goto fail;
    }
  }
  *out = replies;
  return PAM_SUCCESS;

fail:
  for (int i = 0; i < n; i++) {
    if (replies[i].resp) {
      explicit_bzero(replies[i].resp, std::strlen(replies[i].resp));
      std::free(replies[i].resp);
    }
  }
  std::free(replies);
  return PAM_CONV_ERR;
}

// libpam sleeps after a failure unless the application takes the delay
// over; ours is applied by the monitor.
void NoDelay(int, unsigned, void*) {}

PamResult Classify(int rc) {
  switch (rc) {
    case PAM_SUCCESS: return PamResult::kOk;
    case PAM_AUTHINFO_UNAVAIL:
    case PAM_SYSTEM_ERR:
    case PAM_BUF_ERR:
    case PAM_ABORT:
    case PAM_SERVICE_ERR: return PamResult::kTempFail;
    default: return PamResult::kFailed;
  }
}

}  // namespace

PamOutcome PamLogin(const std::string& service, const std::string& user,
                    std::string& password, const std::string& rhost) {
  PamOutcome out;
  pam_conv conv{Converse, &password};
  pam_handle_t* pamh = nullptr;
  int rc = pam_start(service.c_str(), user.c_str(), &conv, &pamh);
  if (rc != PAM_SUCCESS) {
    Wipe(password);
    out.result = PamResult::kTempFail;
    out.reason = "pam_start failed";
    return out;
  }
  pam_set_item(pamh, PAM_RHOST, rhost.c_str());
  pam_set_item(pamh, PAM_FAIL_DELAY, reinterpret_cast<void*>(NoDelay));

  rc = pam_authenticate(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
  Wipe(password);
  if (rc == PAM_SUCCESS) rc = pam_acct_mgmt(pamh, PAM_SILENT);
  out.result = Classify(rc);
  out.reason = pam_strerror(pamh, rc);
  if (rc == PAM_SUCCESS) {
    const void* item = nullptr;
    if (pam_get_item(pamh, PAM_USER, &item) == PAM_SUCCESS && item)
      out.user = static_cast<const char*>(item);
    else
      out.result = PamResult::kFailed;
  }
  pam_end(pamh, rc);
  return out;
}

}  // namespace popguard::monitor
