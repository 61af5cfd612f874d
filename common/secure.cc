#include "common/secure.h"

#include <string.h>

namespace popguard {

void Wipe(std::string& s) {
  // glibc promises not to elide explicit_bzero; the worker, which links
  // this, stays free of libcrypto.
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

}  // namespace popguard
