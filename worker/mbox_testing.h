// A throw-away mbox and a stand-in for the monitor's spool service, for
// the worker's tests.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

#include "common/ipc.h"
#include "worker/spool_client.h"

namespace popguard::worker::testing {

// A directory under $TMPDIR (or /tmp) holding the mbox file "mbox".
class TempMbox {
 public:
  TempMbox() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "popguard-mbox-XXXXXX")
            .string();
    dir_ = mkdtemp(tmpl.data());
    path_ = dir_ + "/mbox";
  }
  ~TempMbox() { std::filesystem::remove_all(dir_); }

  const std::string& path() const { return path_; }
  const std::string& dir() const { return dir_; }

  void Write(std::string_view content) const {
    std::ofstream f(path_, std::ios::binary | std::ios::trunc);
    f.write(content.data(), static_cast<std::streamsize>(content.size()));
  }
  // Appends as a delivery agent would (without its locks).
  void Append(std::string_view content) const {
    std::ofstream f(path_, std::ios::binary | std::ios::app);
    f.write(content.data(), static_cast<std::streamsize>(content.size()));
  }
  std::string Read() const {
    std::ifstream f(path_, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

 private:
  std::string dir_;
  std::string path_;
};

// Does what the monitor's SpoolService does, as the calling user and
// without its ownership checks: the dotlock, a temporary file beside the
// mailbox, the rename.  Counts calls so tests can see what was asked.
class LocalSpool final : public Spool {
 public:
  explicit LocalSpool(std::string mailbox) : mailbox_(std::move(mailbox)) {}
  ~LocalSpool() override {
    DiscardTemp();
    Unlock();
  }

  bool Lock() override {
    locks++;
    int fd = open((mailbox_ + ".lock").c_str(),
                  O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    close(fd);
    locked_ = true;
    return true;
  }
  void Unlock() override {
    if (locked_) unlink((mailbox_ + ".lock").c_str());
    locked_ = false;
  }
  UniqueFd CreateTemp() override {
    temps++;
    temp_ = mailbox_ + ".popguard.test";
    struct stat st;
    if (stat(mailbox_.c_str(), &st) < 0) return UniqueFd();
    return UniqueFd(open(temp_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                         st.st_mode & 0777));
  }
  bool CommitTemp() override {
    if (fail_commit) return false;
    bool ok = rename(temp_.c_str(), mailbox_.c_str()) == 0;
    if (ok) temp_.clear();
    return ok;
  }
  void DiscardTemp() override {
    if (!temp_.empty()) unlink(temp_.c_str());
    temp_.clear();
  }

  bool locked() const { return locked_; }
  int locks = 0;
  int temps = 0;
  bool fail_commit = false;

 private:
  std::string mailbox_;
  std::string temp_;
  bool locked_ = false;
};

// Answers a worker's spool requests on `sock` with `spool`, as the
// monitor's ServeWorker does, until the worker closes its end.
inline void ServeSpool(int sock, Spool& spool) {
  for (;;) {
    auto msg = ipc::Receive(sock);
    if (!msg) return;
    if (msg->fd >= 0) close(msg->fd);
    ipc::SpoolRequest req;
    if (!ipc::Decode(*msg, &req)) return;
    ipc::SpoolReply reply;
    UniqueFd fd;
    switch (req.op) {
      case ipc::SpoolOp::kLock: reply.ok = spool.Lock(); break;
      case ipc::SpoolOp::kUnlock:
        spool.Unlock();
        reply.ok = 1;
        break;
      case ipc::SpoolOp::kCreateTemp:
        fd = spool.CreateTemp();
        reply.ok = fd.valid();
        break;
      case ipc::SpoolOp::kCommitTemp: reply.ok = spool.CommitTemp(); break;
      case ipc::SpoolOp::kDiscardTemp:
        spool.DiscardTemp();
        reply.ok = 1;
        break;
    }
    if (!ipc::Send(sock, ipc::Type::kSpoolReply, ipc::Encode(reply), fd.get()))
      return;
  }
}

}  // namespace popguard::worker::testing
