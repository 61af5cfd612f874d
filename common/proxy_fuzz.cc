// libFuzzer target for the PROXY protocol parser, which reads bytes from
// the network as root.  Not part of the default build (g++ has no
// libFuzzer); with clang:
//
//   clang++ -std=c++2b -g -O1 -fsanitize=fuzzer,address,undefined \
//     -I. common/proxy_fuzz.cc common/proxy.cc -o proxy_fuzz
//   ./proxy_fuzz -max_len=4200
//
// The invariants are those of ProxyFuzzTest in proxy_test.cc.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/proxy.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  using namespace popguard::proxy;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  ParseResult r = ParseHeader(in);
  switch (r.status) {
    case Status::kDone:
      Check(r.header.length <= size);
      Check(r.header.version == 1 || r.header.version == 2);
      Check(r.header.local == r.header.source.empty());
      break;
    case Status::kNeedMore:
      Check(r.need >= 1 && size + r.need <= kV2Fixed + kMaxV2Body);
      break;
    case Status::kInvalid: Check(!r.error.empty()); break;
  }
  return 0;
}
