// A throw-away Maildir for the worker's tests.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace popguard::worker::testing {

class TempMaildir {
 public:
  // Makes a directory under $TMPDIR (or /tmp) holding new/, cur/ and tmp/.
  TempMaildir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "popguard-md-XXXXXX")
            .string();
    base_ = mkdtemp(tmpl.data());
    path_ = base_ + "/Maildir";
    for (const char* d : {"", "/new", "/cur", "/tmp"})
      mkdir((path_ + d).c_str(), 0700);
  }
  ~TempMaildir() { std::filesystem::remove_all(base_); }

  const std::string& path() const { return path_; }
  // A path next to the Maildir that does not exist.
  std::string missing() const { return base_ + "/NoMaildir"; }

  // Writes `content` as new/name or cur/name (dir is "new" or "cur").
  void Add(std::string_view dir, std::string_view name,
           std::string_view content) const {
    std::ofstream f(Path(dir, name), std::ios::binary);
    f.write(content.data(), static_cast<std::streamsize>(content.size()));
  }
  // Sets the file's modification time: when it was delivered.
  void SetMtime(std::string_view dir, std::string_view name,
                std::time_t when) const {
    struct timespec times[2] = {{when, 0}, {when, 0}};
    utimensat(AT_FDCWD, Path(dir, name).c_str(), times, 0);
  }
  bool Exists(std::string_view dir, std::string_view name) const {
    return std::filesystem::exists(Path(dir, name));
  }
  std::string Path(std::string_view dir, std::string_view name) const {
    return path_ + "/" + std::string(dir) + "/" + std::string(name);
  }

 private:
  std::string base_;
  std::string path_;
};

}  // namespace popguard::worker::testing
