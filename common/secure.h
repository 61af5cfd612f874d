// Wiping secrets from memory.
#pragma once

#include <string>

namespace popguard {

// Overwrites the string's bytes in a way the compiler may not elide, then
// empties it.
void Wipe(std::string& s);

}  // namespace popguard
