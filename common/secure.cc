#include "common/secure.h"

#include <openssl/crypto.h>

namespace popguard {

void Wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

}  // namespace popguard
