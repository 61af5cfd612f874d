#include "worker/session.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "worker/maildir.h"
#include "worker/maildir_testing.h"

namespace popguard::worker {
namespace {

using testing::TempMaildir;

// Records every Send, so tests see both the bytes and how they were split.
class RecordingSink final : public Sink {
 public:
  bool Send(std::string_view bytes) override {
    if (fail) return false;
    writes.emplace_back(bytes);
    return true;
  }
  std::string All() const {
    std::string s;
    for (const auto& w : writes) s += w;
    return s;
  }
  std::vector<std::string> writes;
  bool fail = false;
};

// Three messages: a plain one, one with dot lines and CRLF mixed, and one
// with a body of five lines.
class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    md_.Add("new", "1000.a.host", "Subject: one\n\nhello\n");
    md_.Add("cur", "2000.b.host:2,S", ".leading dot\r\n..two\nend");
    md_.Add("new", "3000.c.host", "H: x\n\n1\n2\n3\n4\n5\n");
    Start();
  }

  void Start(std::uint32_t max_bad = 5) {
    session_.reset();
    mailbox_.reset();
    auto mb = Maildir::Open(md_.path());
    ASSERT_TRUE(mb.has_value());
    mailbox_ = std::move(*mb);
    sink_ = RecordingSink();
    session_ = std::make_unique<Session>(*mailbox_, sink_, max_bad);
  }

  // Sends each line as a command and returns the responses.
  std::string Run(std::initializer_list<std::string_view> lines) {
    std::size_t from = sink_.writes.size();
    for (std::string_view l : lines) session_->HandleLine(l);
    session_->Flush();
    std::string s;
    for (std::size_t i = from; i < sink_.writes.size(); i++)
      s += sink_.writes[i];
    return s;
  }

  TempMaildir md_;
  std::unique_ptr<Maildir> mailbox_;
  RecordingSink sink_;
  std::unique_ptr<Session> session_;
};

// Sizes: message 1 "Subject: one\r\n\r\nhello\r\n" = 23; message 2
// ".leading dot\r\n..two\r\nend\r\n" = 26; message 3
// "H: x\r\n\r\n1\r\n2\r\n3\r\n4\r\n5\r\n" = 23.

TEST_F(SessionTest, GreetsWithMessageCountOnly) {
  session_->Greet();
  EXPECT_EQ(Run({}), "+OK maildrop has 3 messages\r\n");
}

// The login reply and UIDL need no size, so they read no message: sizes
// are what the files hold when STAT first asks, not at login.
TEST_F(SessionTest, SizesAreComputedOnFirstUseNotAtLogin) {
  session_->Greet();
  Run({"UIDL"});
  md_.Add("new", "1000.a.host", "grown\nto three\nlines\n");
  EXPECT_EQ(Run({"LIST 1"}), "+OK 1 24\r\n");
  md_.Add("new", "1000.a.host", "shrunk\n");
  EXPECT_EQ(Run({"STAT"}), "+OK 3 73\r\n");  // remembered once computed
}

TEST_F(SessionTest, StatAndListReportRetrSizes) {
  EXPECT_EQ(Run({"STAT"}), "+OK 3 72\r\n");
  EXPECT_EQ(Run({"LIST"}),
            "+OK 3 messages (72 octets)\r\n1 23\r\n2 26\r\n3 23\r\n.\r\n");
  EXPECT_EQ(Run({"list 2"}), "+OK 2 26\r\n");
}

TEST_F(SessionTest, RetrIsByteExactWithStuffingAndTerminator) {
  EXPECT_EQ(Run({"RETR 1"}),
            "+OK 23 octets\r\nSubject: one\r\n\r\nhello\r\n.\r\n");
  EXPECT_EQ(Run({"RETR 2"}),
            "+OK 26 octets\r\n..leading dot\r\n...two\r\nend\r\n.\r\n");
}

TEST_F(SessionTest, RetrOfMessageWithoutBodyLinesSendsTerminatorOnly) {
  md_.Add("new", "4000.empty.host", "");
  Start();
  EXPECT_EQ(Run({"LIST 4", "RETR 4"}), "+OK 4 0\r\n+OK 0 octets\r\n.\r\n");
}

TEST_F(SessionTest, TopSendsHeaderAndRequestedBodyLines) {
  EXPECT_EQ(Run({"TOP 3 0"}),
            "+OK top of message follows\r\nH: x\r\n\r\n.\r\n");
  EXPECT_EQ(Run({"TOP 3 2"}),
            "+OK top of message follows\r\nH: x\r\n\r\n1\r\n2\r\n.\r\n");
  EXPECT_EQ(Run({"TOP 3 100"}),
            "+OK top of message follows\r\nH: x\r\n\r\n1\r\n2\r\n3\r\n4\r\n"
            "5\r\n.\r\n");
}

TEST_F(SessionTest, UidlListsUniqueParts) {
  EXPECT_EQ(Run({"UIDL"}),
            "+OK unique-id listing follows\r\n1 1000.a.host\r\n"
            "2 2000.b.host\r\n3 3000.c.host\r\n.\r\n");
  EXPECT_EQ(Run({"UIDL 2"}), "+OK 2 2000.b.host\r\n");
}

TEST_F(SessionTest, DeletedMessageIsRefusedAndLeftOutOfListings) {
  EXPECT_EQ(Run({"DELE 2"}), "+OK message 2 deleted\r\n");
  EXPECT_EQ(Run({"RETR 2", "TOP 2 0", "LIST 2", "UIDL 2", "DELE 2"}),
            "-ERR message 2 is deleted\r\n-ERR message 2 is deleted\r\n"
            "-ERR message 2 is deleted\r\n-ERR message 2 is deleted\r\n"
            "-ERR message 2 is deleted\r\n");
  EXPECT_EQ(Run({"STAT"}), "+OK 2 46\r\n");
  EXPECT_EQ(Run({"LIST"}),
            "+OK 2 messages (46 octets)\r\n1 23\r\n3 23\r\n.\r\n");
  EXPECT_EQ(Run({"UIDL"}),
            "+OK unique-id listing follows\r\n1 1000.a.host\r\n"
            "3 3000.c.host\r\n.\r\n");
}

TEST_F(SessionTest, NonexistentMessageIsNoSuchMessage) {
  EXPECT_EQ(Run({"RETR 4", "LIST 0", "DELE 99999999999"}),
            "-ERR no such message\r\n-ERR no such message\r\n"
            "-ERR no such message\r\n");
}

TEST_F(SessionTest, RsetUnmarksDeletions) {
  Run({"DELE 1", "DELE 3"});
  EXPECT_EQ(Run({"RSET"}), "+OK maildrop has 3 messages\r\n");
  EXPECT_EQ(Run({"STAT"}), "+OK 3 72\r\n");
  EXPECT_TRUE(session_->HandleLine("QUIT") == false);
  EXPECT_TRUE(md_.Exists("new", "1000.a.host"));
  EXPECT_TRUE(md_.Exists("new", "3000.c.host"));
}

TEST_F(SessionTest, QuitRemovesMarkedMessagesOnly) {
  Run({"DELE 1", "RETR 2"});
  EXPECT_EQ(Run({"QUIT"}), "+OK popguard signing off (2 messages left)\r\n");
  EXPECT_TRUE(session_->over());
  EXPECT_FALSE(md_.Exists("new", "1000.a.host"));
  EXPECT_TRUE(md_.Exists("cur", "2000.b.host:2,S"));
  EXPECT_TRUE(md_.Exists("new", "3000.c.host"));
  ipc::SessionEnd end = session_->Summary();
  EXPECT_EQ(end.reason, ipc::EndReason::kQuit);
  EXPECT_EQ(end.deleted, 1u);
  EXPECT_EQ(end.retrieved, 1u);
  EXPECT_EQ(end.octets, 28u);  // message 2 as sent: 26 plus two stuffed dots
  EXPECT_EQ(end.messages, 3u);
}

TEST_F(SessionTest, DisconnectRemovesNothing) {
  Run({"DELE 1", "DELE 2"});
  session_->EndByDisconnect();
  EXPECT_EQ(session_->Summary().reason, ipc::EndReason::kDisconnect);
  EXPECT_EQ(session_->Summary().deleted, 0u);
  EXPECT_TRUE(md_.Exists("new", "1000.a.host"));
  EXPECT_TRUE(md_.Exists("cur", "2000.b.host:2,S"));
}

TEST_F(SessionTest, TimeoutSaysSoAndRemovesNothing) {
  Run({"DELE 1"});
  session_->EndByTimeout();
  EXPECT_EQ(Run({}), "-ERR autologout; idle for too long\r\n");
  EXPECT_EQ(session_->Summary().reason, ipc::EndReason::kTimeout);
  EXPECT_TRUE(md_.Exists("new", "1000.a.host"));
}

TEST_F(SessionTest, NoopAndCapa) {
  EXPECT_EQ(Run({"NOOP"}), "+OK\r\n");
  EXPECT_EQ(Run({"CAPA"}),
            "+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
            "AUTH-RESP-CODE\r\nPIPELINING\r\n.\r\n");
}

TEST_F(SessionTest, RejectsAuthorizationCommandsAfterLogin) {
  EXPECT_EQ(
      Run({"USER bob", "PASS secret", "APOP bob 0123", "AUTH PLAIN", "STLS"}),
      "-ERR USER is not valid after login\r\n"
      "-ERR PASS is not valid after login\r\n"
      "-ERR APOP is not valid after login\r\n"
      "-ERR AUTH is not valid after login\r\n"
      "-ERR too many bad commands\r\n");
}

TEST_F(SessionTest, RejectsUnknownCommandsAndMalformedArguments) {
  Start(100);
  EXPECT_EQ(Run({"XYZZY", "RETR", "RETR x", "TOP 1", "TOP 1 -1", "STAT 1",
                 "LIST 1 2", "QUIT now"}),
            "-ERR unknown command\r\n"
            "-ERR usage: RETR msg\r\n"
            "-ERR invalid message number\r\n"
            "-ERR usage: TOP msg lines\r\n"
            "-ERR invalid line count\r\n"
            "-ERR usage: STAT\r\n"
            "-ERR usage: LIST [msg]\r\n"
            "-ERR usage: QUIT\r\n");
  EXPECT_FALSE(session_->over());
}

TEST_F(SessionTest, TooManyBadCommandsEndsTheSession) {
  Start(3);
  EXPECT_EQ(Run({"BAD", "RETR 9", "BAD", "BAD", "STAT"}),
            "-ERR unknown command\r\n-ERR no such message\r\n"
            "-ERR unknown command\r\n-ERR too many bad commands\r\n");
  EXPECT_TRUE(session_->over());
  EXPECT_EQ(session_->Summary().reason, ipc::EndReason::kBadCommands);
}

TEST_F(SessionTest, VanishedMessageIsGoneAndSessionGoesOn) {
  std::filesystem::remove(md_.Path("new", "1000.a.host"));
  EXPECT_EQ(Run({"RETR 1", "NOOP"}), "-ERR message 1 is gone\r\n+OK\r\n");
}

TEST_F(SessionTest, LargeRetrStreamsAndNeverSendsTerminatorAlone) {
  std::string big;
  // 1 MiB plus a few bytes, so that the last read holds little.
  while (big.size() < (1 << 20) + 5) big += "0123456789abcdef\n";
  md_.Add("new", "5000.big.host", big);
  Start();
  session_->HandleLine("RETR 4");
  session_->Flush();
  ASSERT_GT(sink_.writes.size(), 2u);
  for (const auto& w : sink_.writes) EXPECT_LE(w.size(), 512u * 1024);
  EXPECT_GT(sink_.writes.back().size(), 16u);
  EXPECT_TRUE(sink_.writes.back().ends_with("\r\n.\r\n"));
  std::string all = sink_.All();
  std::size_t header = all.find("\r\n") + 2;
  std::uint64_t size = mailbox_->Size(3).value();
  EXPECT_EQ(all.substr(0, header),
            "+OK " + std::to_string(size) + " octets\r\n");
  EXPECT_EQ(all.size() - header - 3, size);
}

TEST_F(SessionTest, ClientGoneDuringRetrEndsAsDisconnect) {
  sink_.fail = true;
  session_->HandleLine("RETR 1");
  EXPECT_FALSE(session_->Flush());
  EXPECT_EQ(session_->Summary().reason, ipc::EndReason::kDisconnect);
}

// --- EXPIRE ---

constexpr std::int64_t kDay = 86400;
constexpr std::int64_t kNow = 1800000000;

TEST_F(SessionTest, ExpireZeroRemovesRetrievedMessagesAtQuit) {
  session_->SetExpiry(0, kNow);
  Run({"RETR 1", "TOP 3 1"});
  EXPECT_EQ(Run({"QUIT"}), "+OK popguard signing off (2 messages left)\r\n");
  EXPECT_FALSE(md_.Exists("new", "1000.a.host"));
  EXPECT_TRUE(md_.Exists("cur", "2000.b.host:2,S"));
  EXPECT_TRUE(md_.Exists("new", "3000.c.host"));  // only its top was read
  EXPECT_EQ(session_->Summary().deleted, 1u);
}

TEST_F(SessionTest, ExpiryIsNotUndoneByRsetAndNeedsQuit) {
  session_->SetExpiry(0, kNow);
  Run({"RETR 2", "RSET"});
  session_->EndByDisconnect();
  EXPECT_TRUE(md_.Exists("cur", "2000.b.host:2,S"));
  Start();
  session_->SetExpiry(0, kNow);
  Run({"RETR 2", "RSET", "QUIT"});
  EXPECT_FALSE(md_.Exists("cur", "2000.b.host:2,S"));
}

TEST_F(SessionTest, ExpireZeroKeepsAMessageThatNeverLeft) {
  session_->SetExpiry(0, kNow);
  sink_.fail = true;  // RETR and QUIT pipelined, the client already gone
  EXPECT_FALSE(session_->HandleLine("RETR 1") && session_->HandleLine("QUIT"));
  EXPECT_TRUE(md_.Exists("new", "1000.a.host"));
  EXPECT_EQ(session_->Summary().reason, ipc::EndReason::kDisconnect);
}

TEST_F(SessionTest, ExpireInDaysRemovesOlderMessagesRetrievedOrNot) {
  md_.SetMtime("new", "1000.a.host", kNow - 31 * kDay);
  md_.SetMtime("cur", "2000.b.host:2,S", kNow - 29 * kDay);
  md_.SetMtime("new", "3000.c.host", kNow - 40 * kDay);
  Start();
  session_->SetExpiry(30, kNow);
  Run({"RETR 2", "UIDL"});
  EXPECT_EQ(Run({"QUIT"}), "+OK popguard signing off (1 message left)\r\n");
  EXPECT_FALSE(md_.Exists("new", "1000.a.host"));
  EXPECT_TRUE(md_.Exists("cur", "2000.b.host:2,S"));  // retrieved, but young
  EXPECT_FALSE(md_.Exists("new", "3000.c.host"));
  EXPECT_EQ(session_->Summary().deleted, 2u);
}

TEST_F(SessionTest, WithoutExpiryOldMessagesStay) {
  md_.SetMtime("new", "1000.a.host", kNow - 4000 * kDay);
  Start();
  Run({"RETR 1", "QUIT"});
  EXPECT_TRUE(md_.Exists("new", "1000.a.host"));
}

// --- Serve() over a real socket ---

class ServeTest : public SessionTest {
 protected:
  void SetUp() override {
    SessionTest::SetUp();
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds_), 0);
  }
  void TearDown() override {
    close(fds_[0]);
    if (fds_[1] >= 0) close(fds_[1]);
  }
  // Runs Serve on fds_[0] with `pipelined`, after writing `client` to the
  // other end and (if close_after) closing it; returns what the client got.
  std::string Talk(std::string_view pipelined, std::string_view client,
                   bool close_after, int timeout_ms = 5000) {
    CountingSink sink(fds_[0], timeout_ms);
    Session session(*mailbox_, sink, 5);
    EXPECT_EQ(write(fds_[1], client.data(), client.size()),
              static_cast<ssize_t>(client.size()));
    if (close_after) shutdown(fds_[1], SHUT_WR);
    Serve(session, fds_[0], pipelined, timeout_ms);
    end_ = session.Summary();
    writes_ = sink.writes;
    std::string got;
    char buf[4096];
    shutdown(fds_[0], SHUT_WR);
    for (;;) {
      ssize_t n = read(fds_[1], buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, n);
    }
    return got;
  }
  struct CountingSink final : Sink {
    CountingSink(int fd, int timeout_ms) : fd_sink(fd, timeout_ms) {}
    bool Send(std::string_view bytes) override {
      writes++;
      return fd_sink.Send(bytes);
    }
    FdSink fd_sink;
    int writes = 0;
  };
  int fds_[2] = {-1, -1};
  ipc::SessionEnd end_;
  int writes_ = 0;
};

TEST_F(ServeTest, RunsPipelinedBytesBeforeReadingTheSocket) {
  std::string got = Talk("STAT\r\nDELE 1\r\nLIS", "T 1\r\nQUIT\r\n", false);
  EXPECT_EQ(got,
            "+OK 3 72\r\n+OK message 1 deleted\r\n-ERR message 1 is deleted\r\n"
            "+OK popguard signing off (2 messages left)\r\n");
  EXPECT_EQ(end_.reason, ipc::EndReason::kQuit);
  EXPECT_FALSE(md_.Exists("new", "1000.a.host"));
}

TEST_F(ServeTest, DisconnectWithoutQuitRemovesNothing) {
  std::string got = Talk("", "DELE 1\r\n", true);
  EXPECT_EQ(got, "+OK message 1 deleted\r\n");
  EXPECT_EQ(end_.reason, ipc::EndReason::kDisconnect);
  EXPECT_TRUE(md_.Exists("new", "1000.a.host"));
}

TEST_F(ServeTest, OverlongLineIsRefusedAndSessionGoesOn) {
  std::string line(5000, 'A');
  std::string got = Talk("", line + "\r\nNOOP\r\nQUIT\r\n", false);
  EXPECT_EQ(got,
            "-ERR line too long\r\n+OK\r\n"
            "+OK popguard signing off (3 messages left)\r\n");
}

TEST_F(ServeTest, IdleClientIsLoggedOut) {
  std::string got = Talk("", "DELE 1\r\n", false, 200);
  EXPECT_EQ(got,
            "+OK message 1 deleted\r\n-ERR autologout; idle for too long\r\n");
  EXPECT_EQ(end_.reason, ipc::EndReason::kTimeout);
  EXPECT_TRUE(md_.Exists("new", "1000.a.host"));
}

TEST_F(ServeTest, AnswersPipelinedCommandsInOneWrite) {
  // Everything arrives at once; the answers leave in one write, so the
  // client reads them in one go.
  std::string got =
      Talk("", "NOOP\r\nNOOP\r\nSTAT\r\nLIST 1\r\nQUIT\r\n", false);
  EXPECT_EQ(got,
            "+OK\r\n+OK\r\n+OK 3 72\r\n+OK 1 23\r\n"
            "+OK popguard signing off (3 messages left)\r\n");
  EXPECT_EQ(writes_, 1);
}

}  // namespace
}  // namespace popguard::worker
