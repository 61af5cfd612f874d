#include "worker/mbox.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include "worker/mbox_testing.h"
#include "worker/session.h"

namespace popguard::worker {
namespace {

using testing::LocalSpool;
using testing::TempMbox;

constexpr std::string_view kFromLine =
    "From sender@example.org Mon Jan  1 00:00:00 2024\n";

// The mboxrd form of messages, as a delivery agent writes them: a From_
// line, every /^>*From / line quoted with one more '>', a blank line.
std::string Mboxrd(const std::vector<std::string>& messages) {
  std::string out;
  for (const std::string& m : messages) {
    out += kFromLine;
    std::size_t pos = 0;
    while (pos < m.size()) {
      std::size_t nl = m.find('\n', pos);
      std::size_t end = nl == std::string::npos ? m.size() : nl + 1;
      std::string_view line(m.data() + pos, end - pos);
      std::size_t n = line.find_first_not_of('>');
      if (n != std::string_view::npos && line.substr(n).starts_with("From "))
        out += '>';
      out += line;
      pos = end;
    }
    if (!m.empty() && m.back() != '\n') out += '\n';
    out += '\n';
  }
  return out;
}

std::string ReadAll(Mailbox& mb, std::size_t i, std::size_t chunk = 7) {
  auto s = mb.Open(i);
  EXPECT_TRUE(s.has_value());
  if (!s) return {};
  std::string out;
  std::string buf(chunk, '\0');
  for (;;) {
    auto n = (*s)->Read(buf);
    EXPECT_TRUE(n.has_value());
    if (!n || *n == 0) return out;
    out.append(buf.data(), *n);
  }
}

// The octets a client holds after RETR: the size RFC 1939 counts.
std::uint64_t WireSize(std::string_view stored) {
  WireEncoder enc;
  std::string out;
  enc.Feed(stored, &out);
  enc.Finish(&out);
  return out.size() - 3 - enc.stuffed();
}

class MboxTest : public ::testing::Test {
 protected:
  std::unique_ptr<Mbox> Open(Mbox::Options o = {}) {
    auto mb = Mbox::Open(box_.path(), spool_, o);
    EXPECT_TRUE(mb.has_value());
    return mb ? std::move(*mb) : nullptr;
  }
  std::vector<std::string> Uidls(Mbox& mb) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < mb.Count(); i++) out.emplace_back(mb.Uidl(i));
    return out;
  }
  ino_t Inode() {
    struct stat st;
    EXPECT_EQ(stat(box_.path().c_str(), &st), 0);
    return st.st_ino;
  }

  TempMbox box_;
  LocalSpool spool_{box_.path()};
};

// --- Parsing ---

TEST_F(MboxTest, FromLineStartsAMessageOnlyAfterABlankLine) {
  box_.Write(
      "From a Mon Jan  1 00:00:00 2024\nSubject: 1\n\nbody\n"
      "From the text, not a separator\n\n"
      "From b Mon Jan  1 00:00:00 2024\nSubject: 2\n\nsecond\n\n");
  auto mb = Open();
  ASSERT_EQ(mb->Count(), 2u);
  EXPECT_EQ(ReadAll(*mb, 0),
            "Subject: 1\n\nbody\nFrom the text, not a separator\n");
  EXPECT_EQ(ReadAll(*mb, 1), "Subject: 2\n\nsecond\n");
}

TEST_F(MboxTest, RetrRemovesOneLevelOfFromQuoting) {
  box_.Write(std::string(kFromLine) +
             "S: q\n\n>From a\n>>From b\n>Fromage\n> From c\n>>>From d\n\n");
  auto mb = Open();
  ASSERT_EQ(mb->Count(), 1u);
  std::string want = "S: q\n\nFrom a\n>From b\n>Fromage\n> From c\n>>From d\n";
  EXPECT_EQ(ReadAll(*mb, 0), want);
  EXPECT_EQ(*mb->Size(0), WireSize(want));
}

TEST_F(MboxTest, LastMessageWithoutFinalNewline) {
  box_.Write(std::string(kFromLine) + "S: x\n\nno newline");
  auto mb = Open();
  ASSERT_EQ(mb->Count(), 1u);
  EXPECT_EQ(ReadAll(*mb, 0), "S: x\n\nno newline");
  EXPECT_EQ(*mb->Size(0), 20u);  // "S: x\r\n\r\nno newline\r\n"
}

TEST_F(MboxTest, EmptyFileIsAnEmptyMailbox) {
  box_.Write("");
  EXPECT_EQ(Open()->Count(), 0u);
}

TEST_F(MboxTest, MissingFileIsEmptyAndNotCreated) {
  auto mb = Open();
  EXPECT_EQ(mb->Count(), 0u);
  EXPECT_FALSE(std::filesystem::exists(box_.path()));
  EXPECT_EQ(spool_.locks, 0);
}

TEST_F(MboxTest, EmptyMessageHasSizeZero) {
  box_.Write(Mboxrd({"", "S: 2\n\nx\n"}));
  auto mb = Open();
  ASSERT_EQ(mb->Count(), 2u);
  EXPECT_EQ(ReadAll(*mb, 0), "");
  EXPECT_EQ(*mb->Size(0), 0u);
  EXPECT_EQ(ReadAll(*mb, 1), "S: 2\n\nx\n");
}

TEST_F(MboxTest, EightBitAndNulOctetsPassUnchanged) {
  std::string msg("S: b\n\n\xff\x00\x80\xc3\xa9\n", 12);
  box_.Write(Mboxrd({msg}));
  auto mb = Open();
  ASSERT_EQ(mb->Count(), 1u);
  EXPECT_EQ(ReadAll(*mb, 0), msg);
  EXPECT_EQ(*mb->Size(0), WireSize(msg));
}

TEST_F(MboxTest, CrlfMboxSeparatesOnCrlfBlankLines) {
  box_.Write(
      "From a Mon Jan  1 00:00:00 2024\r\nS: 1\r\n\r\nbody\r\n\r\n"
      "From b Mon Jan  1 00:00:00 2024\r\nS: 2\r\n\r\nz\r\n\r\n");
  auto mb = Open();
  ASSERT_EQ(mb->Count(), 2u);
  EXPECT_EQ(ReadAll(*mb, 0), "S: 1\r\n\r\nbody\r\n");
  EXPECT_EQ(*mb->Size(0), 14u);
  EXPECT_EQ(ReadAll(*mb, 1), "S: 2\r\n\r\nz\r\n");
}

TEST_F(MboxTest, ContentLengthIsIgnored) {
  box_.Write(
      "From a Mon Jan  1 00:00:00 2024\nContent-Length: 5000\n\nshort\n\n"
      "From b Mon Jan  1 00:00:00 2024\nContent-Length: 1\n\nlonger text\n\n");
  auto mb = Open();
  ASSERT_EQ(mb->Count(), 2u);
  EXPECT_EQ(ReadAll(*mb, 1), "Content-Length: 1\n\nlonger text\n");
}

TEST_F(MboxTest, OctetsBeforeTheFirstFromLineAreNoMessage) {
  box_.Write("stray text\n\n" + Mboxrd({"S: 1\n\nx\n"}));
  auto mb = Open();
  ASSERT_EQ(mb->Count(), 1u);
  EXPECT_EQ(ReadAll(*mb, 0), "S: 1\n\nx\n");
}

TEST_F(MboxTest, TopStopsAfterTheRequestedBodyLines) {
  box_.Write(Mboxrd({"S: t\n\n1\nFrom 2\n3\n"}));
  auto mb = Open();
  WireEncoder enc(2);
  std::string out;
  enc.Feed(ReadAll(*mb, 0), &out);
  enc.Finish(&out);
  EXPECT_EQ(out, "S: t\r\n\r\n1\r\nFrom 2\r\n.\r\n");
}

// Messages of random lines (From lines, quoted ones, blank lines, CRs,
// lines longer than the read buffer) written as mboxrd read back exactly,
// with sizes that match, whatever chunk size RETR reads with.
TEST_F(MboxTest, RandomMessagesReadBackExactly) {
  std::mt19937 rng(4155);
  const std::string pieces[] = {"From x", ">From y", ">>From z", "",    "\r",
                                ".",      "text",    "From",     "\xff"};
  for (int round = 0; round < 20; round++) {
    std::vector<std::string> msgs;
    for (int m = 0; m < 1 + static_cast<int>(rng() % 6); m++) {
      std::string msg;
      for (int l = 0; l < static_cast<int>(rng() % 12); l++) {
        msg += pieces[rng() % std::size(pieces)];
        if (rng() % 50 == 0) msg += std::string(200 * 1024, 'L');
        if (rng() % 3 == 0) msg += pieces[rng() % std::size(pieces)];
        msg += '\n';
      }
      msgs.push_back(msg);
    }
    box_.Write(Mboxrd(msgs));
    auto mb = Open();
    ASSERT_EQ(mb->Count(), msgs.size()) << "round " << round;
    for (std::size_t i = 0; i < msgs.size(); i++) {
      EXPECT_EQ(ReadAll(*mb, i, 1 + rng() % 70000), msgs[i])
          << "round " << round << " message " << i;
      EXPECT_EQ(*mb->Size(i), WireSize(msgs[i]));
    }
  }
}

// --- UIDL ---

TEST_F(MboxTest, XUidlHeaderIsTheUidl) {
  box_.Write(
      Mboxrd({"X-UIDL: 3fb0c2a1e7d4\nS: 1\n\nx\n", "X-UIDL: has space\n\nx\n",
              "X-UIDL: " + std::string(71, 'a') + "\n\nx\n",
              "S: 4\n\nX-UIDL: in-the-body\n"}));
  auto mb = Open();
  ASSERT_EQ(mb->Count(), 4u);
  EXPECT_EQ(mb->Uidl(0), "3fb0c2a1e7d4");
  for (std::size_t i = 1; i < 4; i++) {
    EXPECT_EQ(mb->Uidl(i).size(), 32u);
    EXPECT_EQ(mb->Uidl(i).find_first_not_of("0123456789abcdef"),
              std::string::npos);
  }
}

TEST_F(MboxTest, UidlIgnoresFlagHeadersThatReadersRewrite) {
  box_.Write(Mboxrd({"Subject: s\nStatus: O\n\nbody\n"}));
  std::string before(Open()->Uidl(0));
  box_.Write(Mboxrd({"Subject: s\nStatus: RO\nX-Status: A\n\nbody\n"}));
  EXPECT_EQ(Open()->Uidl(0), before);
  box_.Write(Mboxrd({"Subject: t\nStatus: RO\n\nbody\n"}));
  EXPECT_NE(Open()->Uidl(0), before);
}

TEST_F(MboxTest, DuplicateMessagesGetDistinctUidlsInFileOrder) {
  box_.Write(Mboxrd({"S: same\n\nx\n", "S: same\n\nx\n", "X-UIDL: abc\n\n1\n",
                     "X-UIDL: abc\n\n2\n"}));
  auto mb = Open();
  ASSERT_EQ(mb->Count(), 4u);
  EXPECT_EQ(mb->Uidl(1), std::string(mb->Uidl(0)) + ".2");
  EXPECT_EQ(mb->Uidl(2), "abc");
  EXPECT_EQ(mb->Uidl(3).size(), 32u);
}

TEST_F(MboxTest, UidlsAreStableAcrossSessionsDeletionsAndRewrites) {
  box_.Write(Mboxrd(
      {"S: 1\n\na\n", "S: 2\n\nb\n", "S: 3\n\nc\n", "X-UIDL: q4\n\nd\n"}));
  std::vector<std::string> first;
  {
    auto mb = Open();
    first = Uidls(*mb);
  }
  EXPECT_EQ(Uidls(*Open()), first);
  {
    auto mb = Open();
    std::size_t doomed[] = {1};
    ASSERT_EQ(mb->Commit(doomed).removed, 1u);
  }
  auto mb = Open();
  EXPECT_EQ(Uidls(*mb),
            (std::vector<std::string>{first[0], first[2], first[3]}));
}

// --- Commit ---

TEST_F(MboxTest, NothingDeletedTouchesNothing) {
  box_.Write(Mboxrd({"S: 1\n\na\n"}));
  ino_t ino = Inode();
  {
    auto mb = Open();
    EXPECT_EQ(mb->Commit({}).removed, 0u);
  }
  EXPECT_EQ(Inode(), ino);
  EXPECT_EQ(spool_.locks, 1);  // the scan at open only
  EXPECT_EQ(spool_.temps, 0);
}

TEST_F(MboxTest, CommitRemovesOnlyMarkedMessagesAndKeepsTheRestExact) {
  std::vector<std::string> msgs = {"S: 1\n\na\n", "S: 2\n\n>From b\n",
                                   "S: 3\n\nc", "S: 4\n\nd\n"};
  box_.Write("prefix\n\n" + Mboxrd(msgs));
  auto mb = Open();
  std::size_t doomed[] = {0, 3};
  CommitResult r = mb->Commit(doomed);
  EXPECT_EQ(r.removed, 2u);
  EXPECT_EQ(r.failed, 0u);
  EXPECT_EQ(box_.Read(), "prefix\n\n" + Mboxrd({msgs[1], msgs[2]}));
  EXPECT_FALSE(spool_.locked());
  EXPECT_FALSE(std::filesystem::exists(box_.path() + ".popguard.test"));
}

TEST_F(MboxTest, CommitKeepsMailDeliveredAfterTheSnapshot) {
  box_.Write(Mboxrd({"S: 1\n\na\n", "S: 2\n\nb\n"}));
  auto mb = Open();
  box_.Append(Mboxrd({"S: new\n\nlate\n"}));
  ASSERT_EQ(mb->Count(), 2u);
  std::size_t doomed[] = {1};
  EXPECT_EQ(mb->Commit(doomed).removed, 1u);
  EXPECT_EQ(box_.Read(), Mboxrd({"S: 1\n\na\n", "S: new\n\nlate\n"}));
}

TEST_F(MboxTest, CommitIsRefusedWhenAnotherClientChangedTheMailbox) {
  box_.Write(Mboxrd({"S: 1\n\na\n", "S: 2\n\nb\n"}));
  auto mb = Open();
  // A mail reader expunged message 1 in place.
  std::string theirs = Mboxrd({"S: 2\n\nb\n"});
  box_.Write(theirs);
  std::size_t doomed[] = {1};
  CommitResult r = mb->Commit(doomed);
  EXPECT_EQ(r.removed, 0u);
  EXPECT_EQ(r.failed, 1u);
  EXPECT_EQ(r.problem, CommitProblem::kChanged);
  EXPECT_EQ(box_.Read(), theirs);
  EXPECT_FALSE(spool_.locked());
}

TEST_F(MboxTest, CommitIsRefusedWhenTheFileWasReplaced) {
  std::string content = Mboxrd({"S: 1\n\na\n"});
  box_.Write(content);
  auto mb = Open();
  std::string other = box_.dir() + "/other";
  {
    std::ofstream f(other, std::ios::binary);
    f << content;
  }
  ASSERT_EQ(rename(other.c_str(), box_.path().c_str()), 0);
  std::size_t doomed[] = {0};
  EXPECT_EQ(mb->Commit(doomed).problem, CommitProblem::kChanged);
  EXPECT_EQ(box_.Read(), content);
}

TEST_F(MboxTest, FailedRenameLeavesTheMailboxAndNoTemporaryFile) {
  std::string content = Mboxrd({"S: 1\n\na\n", "S: 2\n\nb\n"});
  box_.Write(content);
  auto mb = Open();
  spool_.fail_commit = true;
  std::size_t doomed[] = {0};
  CommitResult r = mb->Commit(doomed);
  EXPECT_EQ(r.problem, CommitProblem::kIo);
  EXPECT_EQ(r.removed, 0u);
  EXPECT_EQ(box_.Read(), content);
  EXPECT_FALSE(std::filesystem::exists(box_.path() + ".popguard.test"));
}

// The monitor renames, then dies before it answers: the reply is lost.
class ReplyLostSpool final : public Spool {
 public:
  explicit ReplyLostSpool(LocalSpool& inner) : inner_(inner) {}
  bool Lock() override { return inner_.Lock(); }
  void Unlock() override { inner_.Unlock(); }
  UniqueFd CreateTemp() override { return inner_.CreateTemp(); }
  bool CommitTemp() override {
    inner_.CommitTemp();
    return false;
  }
  void DiscardTemp() override { inner_.DiscardTemp(); }

 private:
  LocalSpool& inner_;
};

TEST_F(MboxTest, RenameWhoseReplyIsLostCountsAsCommitted) {
  box_.Write(Mboxrd({"S: 1\n\na\n", "S: 2\n\nb\n"}));
  ReplyLostSpool spool(spool_);
  auto mb = Mbox::Open(box_.path(), spool);
  ASSERT_TRUE(mb.has_value());
  std::size_t doomed[] = {0};
  CommitResult r = (*mb)->Commit(doomed);
  EXPECT_EQ(r.problem, CommitProblem::kNone);
  EXPECT_EQ(r.removed, 1u);
  EXPECT_EQ(r.failed, 0u);
  EXPECT_EQ(box_.Read(), Mboxrd({"S: 2\n\nb\n"}));
}

TEST_F(MboxTest, RetrOfAMessageMovedByAnotherClientIsGone) {
  box_.Write(Mboxrd({"S: 1\n\na\n", "S: 2\n\nb\n"}));
  auto mb = Open();
  box_.Write(Mboxrd({"S: 2\n\nb\n"}));
  auto s = mb->Open(1);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), MessageError::kGone);
}

// --- Locks ---

TEST_F(MboxTest, SecondSessionIsInUse) {
  box_.Write(Mboxrd({"S: 1\n\na\n"}));
  auto first = Open();
  LocalSpool other(box_.path());
  auto second = Mbox::Open(box_.path(), other);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error(), Mbox::Error::kInUse);
  first.reset();
  EXPECT_TRUE(Mbox::Open(box_.path(), other).has_value());
}

TEST_F(MboxTest, DeliveryIsNotBlockedDuringTheSession) {
  box_.Write(Mboxrd({"S: 1\n\na\n"}));
  auto mb = Open();
  EXPECT_FALSE(std::filesystem::exists(box_.path() + ".lock"));
  // A delivery agent's whole-file fcntl lock, from another process.
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(box_.path().c_str(), O_RDWR);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    _exit(fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST_F(MboxTest, HeldDotlockMakesOpenBusy) {
  box_.Write(Mboxrd({"S: 1\n\na\n"}));
  LocalSpool mda(box_.path());
  ASSERT_TRUE(mda.Lock());
  auto mb = Mbox::Open(box_.path(), spool_);
  ASSERT_FALSE(mb.has_value());
  EXPECT_EQ(mb.error(), Mbox::Error::kBusy);
}

// A delivery holding the fcntl lock (and appending) while QUIT commits:
// the commit waits for it, then keeps what it delivered.
TEST_F(MboxTest, CommitWaitsForADeliveryThenKeepsItsMail) {
  box_.Write(Mboxrd({"S: 1\n\na\n", "S: 2\n\nb\n"}));
  auto mb = Open();
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(box_.path().c_str(), O_RDWR | O_APPEND);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fd < 0 || fcntl(fd, F_SETLK, &fl) < 0) _exit(1);
    (void)!write(ready[1], "x", 1);
    usleep(300 * 1000);
    std::string mail = Mboxrd({"S: late\n\nz\n"});
    (void)!write(fd, mail.data(), mail.size());
    _exit(0);  // the lock goes with the process
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  std::size_t doomed[] = {0};
  CommitResult r = mb->Commit(doomed);
  waitpid(pid, nullptr, 0);
  EXPECT_EQ(r.removed, 1u);
  EXPECT_EQ(box_.Read(), Mboxrd({"S: 2\n\nb\n", "S: late\n\nz\n"}));
  close(ready[0]);
  close(ready[1]);
}

TEST_F(MboxTest, CommitGivesUpOnALockHeldTooLong) {
  std::string content = Mboxrd({"S: 1\n\na\n"});
  box_.Write(content);
  Mbox::Options quick;
  quick.lock_wait_ms = 200;
  auto mb = Open(quick);
  int ready[2], done[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(done), 0);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(box_.path().c_str(), O_RDWR);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fd < 0 || fcntl(fd, F_SETLK, &fl) < 0) _exit(1);
    (void)!write(ready[1], "x", 1);
    char c;
    (void)!read(done[0], &c, 1);  // hold the lock until the parent is done
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  std::size_t doomed[] = {0};
  CommitResult r = mb->Commit(doomed);
  (void)!write(done[1], "x", 1);
  waitpid(pid, nullptr, 0);
  EXPECT_EQ(r.problem, CommitProblem::kLocked);
  EXPECT_EQ(box_.Read(), content);
  EXPECT_FALSE(spool_.locked());
  for (int fd : {ready[0], ready[1], done[0], done[1]}) close(fd);
}

// --- Through the session ---

// --- Delivery dates, for EXPIRE ---

TEST(MboxDateTest, FromLineDatesInTheFormsAgentsWrite) {
  EXPECT_EQ(ParseFromLineDate("From a@b Thu Jan  1 00:00:00 1970"), 0);
  EXPECT_EQ(ParseFromLineDate("From a@b Sat Jan 15 12:34:56 2028"), 1831552496);
  EXPECT_EQ(ParseFromLineDate("From MAILER-DAEMON Sat Jan 15 12:34 2028"),
            1831552440);
  EXPECT_EQ(ParseFromLineDate("From a@b Sat Jan 15 12:34:56 UTC 2028"),
            1831552496);
  EXPECT_EQ(
      ParseFromLineDate("From a@b Sat Jan 15 12:34:56 2028 remote from x"),
      1831552496);
  EXPECT_EQ(ParseFromLineDate("From a@b\tSat Jan 15 12:34:56 2028\r"),
            1831552496);
}

TEST(MboxDateTest, LinesWithoutADateGiveNone) {
  for (std::string_view bad :
       {"From a@b", "From ", "From a@b Sat Foo 15 12:34:56 2028",
        "From a@b Sat Jan 32 12:34:56 2028", "From a@b Sat Jan 15 25:00 2028",
        "From a@b Sat Jan 15 12:34:56 yesterday", "Frm a@b Sat Jan 15 1:2 3",
        "From a@b Sat Jan 15 12:3x:56 2028", "From a@b Sat Jan 15 1234 2028"})
    EXPECT_EQ(ParseFromLineDate(bad), std::nullopt) << bad;
}

TEST_F(MboxTest, DeliveredAtReadsEachMessagesFromLine) {
  box_.Write(
      "From a Sat Jan 15 12:34:56 2028\nS: 1\n\na\n\n"
      "From b no date at all\nS: 2\n\nb\n\n"
      "From c Thu Jan  1 00:00:10 1970\nS: 3\n\nc\n");
  auto mb = Open();
  ASSERT_EQ(mb->Count(), 3u);
  EXPECT_EQ(mb->DeliveredAt(0), 1831552496);
  EXPECT_EQ(mb->DeliveredAt(1), std::nullopt);
  EXPECT_EQ(mb->DeliveredAt(2), 10);
}

class StringSink final : public Sink {
 public:
  bool Send(std::string_view bytes) override {
    out.append(bytes);
    return true;
  }
  std::string out;
};

TEST_F(MboxTest, SessionQuitSaysNothingDeletedWhenTheMailboxChanged) {
  box_.Write(Mboxrd({"S: 1\n\na\n", "S: 2\n\nb\n"}));
  auto mb = Open();
  StringSink sink;
  Session session(*mb, sink, 5);
  session.Greet();
  session.HandleLine("STAT");
  session.HandleLine("DELE 1");
  box_.Write(Mboxrd({"S: 2\n\nb\n"}));
  session.HandleLine("QUIT");
  session.Flush();
  EXPECT_EQ(sink.out,
            "+OK maildrop has 2 messages\r\n+OK 2 22\r\n"
            "+OK message 1 deleted\r\n"
            "-ERR [SYS/TEMP] mailbox changed by another client; nothing "
            "deleted\r\n");
  EXPECT_EQ(session.end_reason(), ipc::EndReason::kCommitFailed);
}

}  // namespace
}  // namespace popguard::worker
