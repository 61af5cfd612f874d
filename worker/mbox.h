// An mbox file (RFC 4155) served over POP3, as /var/mail/USER holds it.
//
// Format.  A message starts at a "From " line (the From_ line) at the start
// of the file or right after an empty line; a "From " line anywhere else is
// message text.  The empty line before a From_ line, and one empty line at
// the end of the file, separate messages and belong to none.  The From_
// line is not part of the message.  Content-Length headers are ignored:
// they are written by whatever delivered the mail and often wrong.  Bytes
// before the first From_ line are not a message; they are kept as they are.
//
// Quoting is mboxrd's: a delivery agent writes a text line matching
// /^>*From / with one more '>', so RETR removes exactly one '>' from every
// line matching /^>+From /.  An mboxo file (where only "From " was quoted)
// reads the same except for lines that began with ">From " in the original,
// which lose a '>'; that is the usual cost of reading mboxo.  The match is
// made on the first kLookahead octets of a line, so RETR, TOP and the sizes
// agree however a line falls across read buffers.  Sizes in STAT and LIST
// are computed during the scan at open, on the text RETR sends (mailbox.h).
//
// UIDL.  A valid X-UIDL header (Qpopper's: 1 to 70 octets of 0x21..0x7E)
// is the UIDL.  Otherwise it is the hex MD5 of the From_ line and the
// header, which no delivery or rewrite changes: it never depends on where
// the message sits in the file.  Header fields that mail readers rewrite
// in place to keep flags (Status, X-Status, X-Keywords, X-UID, X-IMAP,
// X-IMAPbase, Content-Length, Lines) are left out of the digest, and CR
// octets are dropped, so that mutt marking a message read, or a CRLF
// conversion, does not make a client fetch it again.  When two messages
// share an id (an exact duplicate, or a copied X-UIDL), the later ones, in
// file order, get the digest and then ".2", ".3", ... appended until the
// id is unique.
//
// Snapshot.  Open scans the file under the spool locks (the dotlock, taken
// by the monitor, and an fcntl write lock on the file, the pair Postfix's
// local, procmail and mutt use) and remembers its size; the locks are
// released as soon as the scan is done, so delivery goes on during the
// session.  Mail appended later is not part of this session.
//
// One session per mailbox.  Open takes flock(LOCK_EX | LOCK_NB) on the
// mbox file and keeps it for the session.  On Linux, flock and fcntl locks
// are independent on local file systems, so the delivery agents above, which
// lock with fcntl, are not held up.  Rejected alternatives: an fcntl or OFD
// lock on a byte range beyond the end of the file conflicts with every
// whole-file fcntl lock (length 0 covers all offsets), which is exactly the
// lock delivery agents take, so it would block delivery for the whole
// session; a lock file in /tmp named by the inode lets any local user
// create that name first and lock everyone out.  Limit: over NFS the kernel
// turns flock into a whole-file fcntl lock, so there a session would hold
// up delivery; an agent configured to lock with flock (Dovecot's
// mbox_write_locks = flock, Exim's use_flock_lock) waits for the session.
//
// Commit (UPDATE).  If nothing was deleted nothing is touched.  Otherwise,
// under the dotlock and an fcntl write lock: the file must still be the one
// opened and still begin with the snapshot (a new scan of the first
// snapshot-size octets must find the same messages at the same offsets
// with the same sizes and ids), else nothing is deleted and the client is
// told the mailbox changed.  Then every kept message of the snapshot, as
// stored, and everything after the snapshot (mail delivered meanwhile) are
// copied into a temporary file the monitor made beside the mailbox (with
// the mailbox's owner, group and mode), the file is fsynced, and the monitor
// renames it over the mailbox and fsyncs the directory.  At every instant
// the name refers to the complete old file or the complete new one.  The
// rename is the commit: if the monitor's answer is lost (it was killed),
// the name says whether it happened, and the client is told accordingly.
//
// Agents that take the dotlock before opening the mailbox (Postfix 3,
// procmail) or that check, once locked, that the name still refers to the
// file they opened (Dovecot, Exim) see the new file.  Limit: an agent that
// opens the mailbox, then waits for the fcntl lock and appends without that
// check, appends to the replaced file; that is the price of a rewrite that
// can be killed at any point without damage.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <vector>

#include "worker/mailbox.h"
#include "worker/spool_client.h"
#include "worker/unique_fd.h"

namespace popguard::worker {

class Mbox final : public Mailbox {
 public:
  enum class Error {
    kInUse,  // another POP3 session has the mailbox
    kBusy,   // the spool locks stayed taken (a long delivery?)
    kIo,     // the file could not be opened or read
  };

  struct Options {
    // How long to wait for the fcntl lock that a delivery agent or mail
    // reader holds, at open and at commit.  Deliveries take well under a
    // second; a client waits some seconds for an answer to QUIT.
    int lock_wait_ms = 10 * 1000;
    int lock_retry_ms = 50;
  };

  // Octets of a line that decide whether it is a From_ line or a quoted
  // ">From " line.
  static constexpr std::size_t kLookahead = 1024;

  // Opens the mbox at `path`, takes the one-session lock and scans it under
  // the spool locks.  A file that does not exist is an empty mailbox and is
  // not created.  `spool` must outlive the Mbox.
  static std::expected<std::unique_ptr<Mbox>, Error> Open(
      const std::string& path, Spool& spool, Options options);
  static std::expected<std::unique_ptr<Mbox>, Error> Open(
      const std::string& path, Spool& spool) {
    return Open(path, spool, Options());
  }

  std::size_t Count() const override { return entries_.size(); }
  std::expected<std::uint64_t, MessageError> Size(std::size_t i) override {
    return entries_[i].size;
  }
  std::string_view Uidl(std::size_t i) const override {
    return entries_[i].uidl;
  }
  std::expected<std::unique_ptr<MessageStream>, MessageError> Open(
      std::size_t i) override;
  // The date on the message's From_ line.
  std::optional<std::int64_t> DeliveredAt(std::size_t i) override;
  CommitResult Commit(std::span<const std::size_t> doomed) override;

  // One message as the scan found it (exposed for tests).
  struct Entry {
    std::uint64_t from = 0;  // offset of its From_ line
    std::uint64_t body = 0;  // offset of the line after it
    std::uint64_t end = 0;   // end of its text, before the separator line
    std::uint64_t size = 0;  // octets RETR sends (mailbox.h)
    std::array<unsigned char, 16> digest{};  // MD5 of From_ line + header
    std::string uidl;
    bool operator==(const Entry&) const = default;
  };

 private:
  Mbox(UniqueFd fd, std::string path, Spool& spool, Options options)
      : fd_(std::move(fd)),
        path_(std::move(path)),
        spool_(&spool),
        options_(options) {}

  // Takes the dotlock and then the fcntl lock (the order procmail and
  // Postfix use), waiting up to lock_wait_ms for the latter.
  bool LockSpool();
  void UnlockSpool();
  // Commit's work under the locks.
  CommitProblem Rewrite(std::span<const std::size_t> doomed);
  bool CopyTo(int out, std::span<const std::size_t> doomed);

  UniqueFd fd_;  // empty when the file does not exist
  std::string path_;
  Spool* spool_;
  Options options_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::uint64_t snapshot_ = 0;    // file size at the scan
  std::uint64_t first_from_ = 0;  // octets before the first message
  std::vector<Entry> entries_;
};

// The time on a From_ line ("From sender Thu Dec  3 10:00:00 2026"), read
// as UTC; nullopt if the line carries no date in that form.  Exposed for
// tests.
std::optional<std::int64_t> ParseFromLineDate(std::string_view line);

// Scans the first `limit` octets of the open mbox `fd` into *entries, and
// *first_from to the offset of the first From_ line (limit if none).  UIDLs
// are not yet made unique.  false on a read error or a file shorter than
// limit.  Exposed for tests.
bool ScanMbox(int fd, std::uint64_t limit, std::vector<Mbox::Entry>* entries,
              std::uint64_t* first_from);

}  // namespace popguard::worker
