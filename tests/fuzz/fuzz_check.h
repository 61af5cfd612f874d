// What every fuzz target in tests/fuzz shares: a check of an invariant
// that fails loudly.
//
// A broken invariant aborts, which libFuzzer records as a crash together
// with the input that caused it; the message says which check failed, so
// a report can be read without a debugger.  Unlike assert(), it stays in
// a build with NDEBUG set.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <source_location>

namespace popguard::fuzz {

inline void Check(
    bool ok, const char* what,
    std::source_location where = std::source_location::current()) {
  if (ok) return;
  std::fprintf(stderr, "%s:%u: invariant broken: %s\n", where.file_name(),
               static_cast<unsigned>(where.line()), what);
  std::abort();
}

}  // namespace popguard::fuzz
