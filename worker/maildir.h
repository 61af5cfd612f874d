// A Maildir served over POP3.
//
// Messages are the regular files in `new/` and `cur/` (`tmp/` and names
// starting with '.' are ignored; symbolic links are not followed).  They are
// ordered by their unique part, the file name before the info suffix
// (":2,..." or "!2,..."), which a delivery agent starts with the delivery
// time; that order and the UIDLs stay the same across sessions, across
// other clients moving a message from new/ to cur/ and changing its flags.
//
// UIDL is the unique part when it is 1 to 70 characters of 0x21..0x7E, as
// RFC 1939 section 7 requires; otherwise the hex MD5 of the unique part.  If
// two files share a unique part (a broken delivery), the second and later
// ones get the MD5 of their directory and full name, so UIDLs stay unique.
//
// Open only lists new/ and cur/: no message file is opened, so a session
// that asks for nothing but UIDL reads no message.  A message's size (see
// mailbox.h for what it counts) is computed by reading its file the first
// time STAT, LIST or RETR needs it.  Dovecot's ",S=" and ",W=" name fields
// are not trusted: they are written by whatever delivered the mail.
//
// A message's delivery time (for EXPIRE) is its file's modification time.
//
// One session per mailbox: Open takes an exclusive lock (an open file
// description lock, F_OFD_SETLK) on `popguard.lock` in the Maildir, created
// empty if needed.  The kernel drops it when the process dies, so a killed
// session never blocks the next one.  OFD locks are fcntl locks, which NFS
// carries to the server, so sessions on two hosts sharing the Maildir
// exclude each other too.  A Maildir where the lock file cannot be created
// (read-only) is refused as an I/O error rather than served unlocked.
//
// A Maildir that does not exist is served as an empty mailbox and nothing
// is created: the worker runs as the user and should not invent a mail
// store that the delivery agent may want to create differently.  No lock is
// taken then, since there is nothing to delete.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <vector>

#include "worker/mailbox.h"
#include "worker/unique_fd.h"

namespace popguard::worker {

class Maildir final : public Mailbox {
 public:
  enum class Error {
    kInUse,  // another session holds the lock
    kIo,     // the Maildir or a message could not be read or locked
  };

  // The file that holds the one-session lock, inside the Maildir.
  static constexpr const char* kLockName = "popguard.lock";

  // Opens and locks the Maildir at `path` and lists its messages.
  static std::expected<std::unique_ptr<Maildir>, Error> Open(
      const std::string& path);

  std::size_t Count() const override { return entries_.size(); }
  std::expected<std::uint64_t, MessageError> Size(std::size_t i) override;
  std::string_view Uidl(std::size_t i) const override;
  std::expected<std::unique_ptr<MessageStream>, MessageError> Open(
      std::size_t i) override;
  std::optional<std::int64_t> DeliveredAt(std::size_t i) override;
  CommitResult Commit(std::span<const std::size_t> doomed) override;

  // The unique part of a Maildir file name (exposed for tests).
  static std::string_view UniquePart(std::string_view name);

 private:
  enum Dir : std::uint8_t { kNew = 0, kCur = 1 };
  static constexpr std::uint64_t kUnknown = ~std::uint64_t{0};
  struct Entry {
    std::string name;
    std::uint32_t unique_len = 0;
    Dir dir = kNew;
    std::uint64_t size = kUnknown;
    std::string hashed_uidl;  // empty when the unique part is the UIDL
    std::string_view unique() const {
      return std::string_view(name).substr(0, unique_len);
    }
  };

  Maildir() = default;
  std::expected<void, Error> Scan(Dir dir);
  // Sorts the entries and gives each its UIDL; false if a digest failed.
  bool AssignUidls();
  int DirFd(Dir dir) const { return dir == kNew ? new_.get() : cur_.get(); }
  // Opens message i's file, following a rename by another client.
  std::expected<UniqueFd, MessageError> OpenFile(std::size_t i);
  // Finds entry i again after another client renamed it (new/ to cur/, or
  // a flag change); false if it is no longer in the Maildir.
  bool Relocate(std::size_t i);

  UniqueFd root_, new_, cur_, lock_;
  std::vector<Entry> entries_;
  std::string buf_;  // read buffer for sizes, allocated on first use
};

}  // namespace popguard::worker
