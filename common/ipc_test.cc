#include "common/ipc.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace popguard::ipc {
namespace {

// A connected SOCK_SEQPACKET pair, as the monitor makes for each child.
class IpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds_), 0);
  }
  void TearDown() override {
    for (int fd : fds_)
      if (fd >= 0) close(fd);
  }
  void CloseSender() {
    close(fds_[0]);
    fds_[0] = -1;
  }

  int sender() const { return fds_[0]; }
  int receiver() const { return fds_[1]; }

  // Sends m as a child would and decodes it as the monitor would.
  template <typename M>
  M RoundTrip(const M& m) {
    EXPECT_TRUE(SendMessage(sender(), m).has_value());
    auto got = Receive(receiver());
    EXPECT_TRUE(got.has_value());
    M out{};
    if (!got) return out;
    EXPECT_EQ(got->type, TypeOf(m));
    EXPECT_EQ(got->fd, -1);
    EXPECT_TRUE(Decode(*got, &out));
    return out;
  }

  // Sends raw bytes, bypassing Send's checks, as a hostile child could.
  void SendRaw(std::string_view bytes) {
    ASSERT_EQ(send(sender(), bytes.data(), bytes.size(), 0),
              static_cast<ssize_t>(bytes.size()));
  }

 private:
  int fds_[2] = {-1, -1};
};

std::string Raw(Type type, std::string_view body) {
  auto t = static_cast<std::uint16_t>(type);
  std::string out(reinterpret_cast<const char*>(&t), sizeof t);
  out.append(body);
  return out;
}

Hello SampleHello() {
  Hello m;
  m.session_id = "s-0001";
  m.challenge = "<1a2b.3c4d-5e@pop.example.org>";
  m.allow_user = 1;
  m.allow_apop = 1;
  m.login_timeout_s = 60;
  m.max_bad_commands = 10;
  m.tls_available = 1;
  m.implicit_tls = 1;
  m.login_delay_s = 900;
  m.expire = "NEVER";
  return m;
}

TlsResult SampleTlsResult() {
  TlsResult m;
  m.ok = 1;
  m.protocol = "TLSv1.3";
  m.cipher = "TLS_AES_256_GCM_SHA384";
  return m;
}

WorkerInit SampleWorkerInit() {
  WorkerInit m;
  m.session_id = "s-0002";
  m.user = "alice";
  m.mailbox = "/var/mail/alice";
  m.format = MailboxFormat::kMbox;
  m.pipelined = "STAT\r\nLIST\r\n";
  m.idle_timeout_s = 900;
  m.max_bad_commands = 7;
  return m;
}

SessionEnd SampleSessionEnd() {
  SessionEnd m;
  m.reason = EndReason::kCommitFailed;
  m.retrieved = 3;
  m.octets = 5'000'000'000ull;
  m.deleted = 2;
  m.messages = 9;
  return m;
}

TEST_F(IpcTest, HelloRoundTrips) {
  Hello m = SampleHello();
  Hello got = RoundTrip(m);
  EXPECT_EQ(got.session_id, m.session_id);
  EXPECT_EQ(got.challenge, m.challenge);
  EXPECT_EQ(got.allow_user, 1u);
  EXPECT_EQ(got.allow_apop, 1u);
  EXPECT_EQ(got.login_timeout_s, 60u);
  EXPECT_EQ(got.max_bad_commands, 10u);
  EXPECT_EQ(got.tls_available, 1u);
  EXPECT_EQ(got.implicit_tls, 1u);
  EXPECT_EQ(got.login_delay_s, 900u);
  EXPECT_EQ(got.expire, "NEVER");
}

TEST_F(IpcTest, AuthPassRoundTrips) {
  AuthPass m{"alice", std::string("pass word\0with nul", 18), "plain"};
  AuthPass got = RoundTrip(m);
  EXPECT_EQ(got.user, m.user);
  EXPECT_EQ(got.password, m.password);
  EXPECT_EQ(got.mechanism, "plain");
}

TEST_F(IpcTest, AuthApopRoundTrips) {
  AuthApop m{"mrose", "c4c9334bac560ecc979e58001b3e22fb"};
  AuthApop got = RoundTrip(m);
  EXPECT_EQ(got.user, m.user);
  EXPECT_EQ(got.digest, m.digest);
}

TEST_F(IpcTest, AuthResultRoundTripsEveryCode) {
  for (AuthCode code : {AuthCode::kOk, AuthCode::kFailed, AuthCode::kRefused,
                        AuthCode::kTempFail, AuthCode::kEndSession,
                        AuthCode::kLoginDelay, AuthCode::kBanned}) {
    AuthResult got = RoundTrip(AuthResult{code, "authentication failed"});
    EXPECT_EQ(got.code, code);
    EXPECT_EQ(got.text, "authentication failed");
  }
}

TEST_F(IpcTest, HandoffRoundTripsEmptyAndBinaryBytes) {
  EXPECT_EQ(RoundTrip(Handoff{""}).pipelined, "");
  std::string bytes;
  for (int i = 0; i < 256; i++) bytes += static_cast<char>(i);
  EXPECT_EQ(RoundTrip(Handoff{bytes}).pipelined, bytes);
}

TEST_F(IpcTest, RefusalRoundTrips) {
  Refusal got = RoundTrip(Refusal{"bob", "pass"});
  EXPECT_EQ(got.user, "bob");
  EXPECT_EQ(got.mechanism, "pass");
}

TEST_F(IpcTest, TlsResultRoundTripsSuccessAndFailure) {
  TlsResult ok = RoundTrip(SampleTlsResult());
  EXPECT_EQ(ok.ok, 1u);
  EXPECT_EQ(ok.protocol, "TLSv1.3");
  EXPECT_EQ(ok.cipher, "TLS_AES_256_GCM_SHA384");
  EXPECT_EQ(ok.error, "");
  TlsResult failed = RoundTrip(TlsResult{0, "", "", "unsupported protocol"});
  EXPECT_EQ(failed.ok, 0u);
  EXPECT_EQ(failed.error, "unsupported protocol");
}

TEST_F(IpcTest, WorkerInitRoundTrips) {
  WorkerInit m = SampleWorkerInit();
  WorkerInit got = RoundTrip(m);
  EXPECT_EQ(got.session_id, m.session_id);
  EXPECT_EQ(got.user, m.user);
  EXPECT_EQ(got.mailbox, m.mailbox);
  EXPECT_EQ(got.format, MailboxFormat::kMbox);
  EXPECT_EQ(got.pipelined, m.pipelined);
  EXPECT_EQ(got.idle_timeout_s, 900u);
  EXPECT_EQ(got.max_bad_commands, 7u);
}

TEST_F(IpcTest, SessionEndRoundTrips) {
  SessionEnd m = SampleSessionEnd();
  SessionEnd got = RoundTrip(m);
  EXPECT_EQ(got.reason, EndReason::kCommitFailed);
  EXPECT_EQ(got.retrieved, 3u);
  EXPECT_EQ(got.octets, 5'000'000'000ull);
  EXPECT_EQ(got.deleted, 2u);
  EXPECT_EQ(got.messages, 9u);
}

// Each message's valid body, for the decoder tests below.
struct Sample {
  Type type;
  std::string body;
  bool (*decode)(const Message&);
};

template <typename M>
bool DecodeAs(const Message& msg) {
  M m;
  return Decode(msg, &m);
}

std::vector<Sample> Samples() {
  return {
      {Type::kHello, Encode(SampleHello()), DecodeAs<Hello>},
      {Type::kAuthPass, Encode(AuthPass{"u", "p"}), DecodeAs<AuthPass>},
      {Type::kAuthApop, Encode(AuthApop{"u", "d"}), DecodeAs<AuthApop>},
      {Type::kAuthResult, Encode(AuthResult{AuthCode::kOk, "hi"}),
       DecodeAs<AuthResult>},
      {Type::kHandoff, Encode(Handoff{"NOOP\r\n"}), DecodeAs<Handoff>},
      {Type::kRefusal, Encode(Refusal{"u", "apop"}), DecodeAs<Refusal>},
      {Type::kTlsResult, Encode(SampleTlsResult()), DecodeAs<TlsResult>},
      {Type::kWorkerInit, Encode(SampleWorkerInit()), DecodeAs<WorkerInit>},
      {Type::kSessionEnd, Encode(SampleSessionEnd()), DecodeAs<SessionEnd>},
  };
}

TEST(DecodeTest, AcceptsEachSampleAsIs) {
  for (const auto& s : Samples()) {
    SCOPED_TRACE(static_cast<int>(s.type));
    EXPECT_TRUE(s.decode(Message{s.type, s.body, -1}));
  }
}

TEST(DecodeTest, RejectsTrailingBytes) {
  for (const auto& s : Samples()) {
    SCOPED_TRACE(static_cast<int>(s.type));
    EXPECT_FALSE(s.decode(Message{s.type, s.body + '\0', -1}));
    EXPECT_FALSE(s.decode(Message{s.type, s.body + "junk", -1}));
  }
}

TEST(DecodeTest, RejectsEveryShortBody) {
  for (const auto& s : Samples()) {
    for (std::size_t len = 0; len < s.body.size(); len++) {
      SCOPED_TRACE(
          fmt::format("type {} length {}", static_cast<int>(s.type), len));
      EXPECT_FALSE(s.decode(Message{s.type, s.body.substr(0, len), -1}));
    }
  }
}

TEST(DecodeTest, RejectsWrongType) {
  for (const auto& s : Samples()) {
    for (const auto& other : Samples()) {
      if (other.type == s.type) continue;
      SCOPED_TRACE(fmt::format("type {} as {}", static_cast<int>(s.type),
                               static_cast<int>(other.type)));
      EXPECT_FALSE(other.decode(Message{s.type, s.body, -1}));
    }
    EXPECT_FALSE(s.decode(Message{static_cast<Type>(0), s.body, -1}));
    EXPECT_FALSE(s.decode(Message{static_cast<Type>(999), s.body, -1}));
  }
}

TEST(DecodeTest, RejectsOverLongString) {
  std::string long_field(kMaxField + 1, 'a');
  Hello hello = SampleHello();
  hello.session_id = long_field;
  EXPECT_FALSE(DecodeAs<Hello>(Message{Type::kHello, Encode(hello), -1}));
  AuthPass pass{"alice", long_field};
  EXPECT_FALSE(DecodeAs<AuthPass>(Message{Type::kAuthPass, Encode(pass), -1}));
  AuthApop apop{long_field, "d"};
  EXPECT_FALSE(DecodeAs<AuthApop>(Message{Type::kAuthApop, Encode(apop), -1}));
  AuthResult result{AuthCode::kFailed, long_field};
  EXPECT_FALSE(
      DecodeAs<AuthResult>(Message{Type::kAuthResult, Encode(result), -1}));
  WorkerInit init = SampleWorkerInit();
  init.mailbox = std::string(4097, '/');
  EXPECT_FALSE(
      DecodeAs<WorkerInit>(Message{Type::kWorkerInit, Encode(init), -1}));

  Refusal refusal{long_field, "pass"};
  EXPECT_FALSE(DecodeAs<Refusal>(Message{Type::kRefusal, Encode(refusal), -1}));
  TlsResult tls = SampleTlsResult();
  tls.protocol = std::string(65, 'T');
  EXPECT_FALSE(DecodeAs<TlsResult>(Message{Type::kTlsResult, Encode(tls), -1}));
  AuthPass plain{"alice", "pw", std::string(17, 'p')};
  EXPECT_FALSE(DecodeAs<AuthPass>(Message{Type::kAuthPass, Encode(plain), -1}));

  // At the limit is still fine.
  pass.password = std::string(kMaxField, 'a');
  EXPECT_TRUE(DecodeAs<AuthPass>(Message{Type::kAuthPass, Encode(pass), -1}));
}

TEST(DecodeTest, RejectsLengthPastTheEndOfTheBody) {
  Writer w;
  w.U32(10).Str("x");
  Message msg{Type::kHandoff, w.bytes(), -1};
  EXPECT_FALSE(DecodeAs<Handoff>(msg));
  Writer huge;
  huge.U32(0xffffffff);
  EXPECT_FALSE(DecodeAs<Handoff>(Message{Type::kHandoff, huge.bytes(), -1}));
}

TEST(DecodeTest, RejectsEnumOutOfRange) {
  Writer result;
  result.U32(static_cast<std::uint32_t>(AuthCode::kBanned) + 1).Str("");
  EXPECT_FALSE(
      DecodeAs<AuthResult>(Message{Type::kAuthResult, result.bytes(), -1}));

  Writer init;
  init.Str("s").Str("u").Str("/m").U32(2).Str("").U32(600).U32(10);
  EXPECT_FALSE(
      DecodeAs<WorkerInit>(Message{Type::kWorkerInit, init.bytes(), -1}));

  TlsResult tls = SampleTlsResult();
  tls.ok = 2;
  EXPECT_FALSE(DecodeAs<TlsResult>(Message{Type::kTlsResult, Encode(tls), -1}));

  Writer end;
  end.U32(static_cast<std::uint32_t>(EndReason::kCommitFailed) + 1);
  end.U32(0).U64(0).U32(0).U32(0);
  EXPECT_FALSE(
      DecodeAs<SessionEnd>(Message{Type::kSessionEnd, end.bytes(), -1}));
  end = Writer();
  end.U32(0xffffffff).U32(0).U64(0).U32(0).U32(0);
  EXPECT_FALSE(
      DecodeAs<SessionEnd>(Message{Type::kSessionEnd, end.bytes(), -1}));
}

TEST(ReaderTest, FailsEveryReadAfterTheFirstFailure) {
  Writer w;
  w.U32(7);
  Reader r(w.bytes());
  std::uint64_t big;
  EXPECT_FALSE(r.U64(&big));
  std::uint32_t small;
  EXPECT_FALSE(r.U32(&small));
  EXPECT_FALSE(r.Done());
}

TEST(WriterTest, WipeEmptiesTheBuffer) {
  Writer w;
  w.Str("secret");
  w.Wipe();
  EXPECT_TRUE(w.bytes().empty());
}

TEST_F(IpcTest, PassedDescriptorArrives) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  ASSERT_TRUE(Send(sender(), Type::kHandoff, Encode(Handoff{"x"}), pipe_fds[1])
                  .has_value());
  close(pipe_fds[1]);

  auto got = Receive(receiver());
  ASSERT_TRUE(got.has_value());
  ASSERT_GE(got->fd, 0);
  EXPECT_EQ(fcntl(got->fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  ASSERT_EQ(write(got->fd, "ok", 2), 2);
  close(got->fd);
  char buf[4] = {};
  EXPECT_EQ(read(pipe_fds[0], buf, sizeof buf), 2);
  EXPECT_STREQ(buf, "ok");
  close(pipe_fds[0]);
}

TEST_F(IpcTest, ReportsSenderWhenCredentialsArePassed) {
  ASSERT_TRUE(PassCredentials(receiver()));
  ASSERT_TRUE(SendMessage(sender(), Handoff{"x"}).has_value());
  auto got = Receive(receiver());
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->has_sender);
  EXPECT_EQ(got->sender_pid, getpid());
  EXPECT_EQ(got->sender_uid, getuid());
}

TEST_F(IpcTest, ReportsNoSenderWithoutPassCredentials) {
  ASSERT_TRUE(SendMessage(sender(), Handoff{"x"}).has_value());
  auto got = Receive(receiver());
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->has_sender);
}

TEST_F(IpcTest, PassesDescriptorAndCredentialsTogether) {
  ASSERT_TRUE(PassCredentials(receiver()));
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  ASSERT_TRUE(Send(sender(), Type::kHandoff, Encode(Handoff{""}), pipe_fds[0])
                  .has_value());
  close(pipe_fds[0]);
  auto got = Receive(receiver());
  close(pipe_fds[1]);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->has_sender);
  ASSERT_GE(got->fd, 0);
  close(got->fd);
}

TEST_F(IpcTest, RefusesMoreThanOneDescriptorAndClosesThem) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);

  std::uint16_t type = static_cast<std::uint16_t>(Type::kHandoff);
  iovec iov{&type, sizeof type};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(2 * sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(2 * sizeof(int));
  int two[2] = {pipe_fds[1], pipe_fds[1]};
  std::memcpy(CMSG_DATA(c), two, sizeof two);
  ASSERT_EQ(sendmsg(sender(), &mh, 0), static_cast<ssize_t>(sizeof type));
  close(pipe_fds[1]);

  auto got = Receive(receiver());
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error(), Error::kMalformed);
  // Every copy of the write end is gone, so the read end sees end of file.
  char ch;
  EXPECT_EQ(read(pipe_fds[0], &ch, 1), 0);
  close(pipe_fds[0]);
}

TEST_F(IpcTest, SendRefusesOverSizeMessage) {
  std::string body(kMaxMessage - sizeof(std::uint16_t) + 1, 'x');
  auto sent = Send(sender(), Type::kHandoff, body);
  ASSERT_FALSE(sent.has_value());
  EXPECT_EQ(sent.error(), Error::kMalformed);
}

TEST_F(IpcTest, LargestMessageArrivesWhole) {
  std::string body(kMaxMessage - sizeof(std::uint16_t), 'x');
  ASSERT_TRUE(Send(sender(), Type::kHandoff, body).has_value());
  auto got = Receive(receiver());
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->body, body);
}

TEST_F(IpcTest, ReceiveRefusesOverSizeMessage) {
  SendRaw(Raw(Type::kHandoff, std::string(kMaxMessage, 'x')));
  auto got = Receive(receiver());
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error(), Error::kMalformed);
}

TEST_F(IpcTest, ReceiveRefusesMessageBeyondItsBuffer) {
  SendRaw(Raw(Type::kHandoff, std::string(2 * kMaxMessage, 'x')));
  auto got = Receive(receiver());
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error(), Error::kMalformed);
}

TEST_F(IpcTest, ReceiveRefusesMessageShorterThanItsType) {
  SendRaw("x");
  auto got = Receive(receiver());
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error(), Error::kMalformed);
}

TEST_F(IpcTest, ReceiveReportsClosedPeer) {
  CloseSender();
  auto got = Receive(receiver());
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error(), Error::kClosed);
}

TEST_F(IpcTest, SendReportsClosedPeer) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
  close(fds[1]);
  auto sent = Send(fds[0], Type::kHandoff, "");
  close(fds[0]);
  ASSERT_FALSE(sent.has_value());
  EXPECT_EQ(sent.error(), Error::kClosed);
}

TEST_F(IpcTest, MessagesKeepTheirBoundaries) {
  ASSERT_TRUE(SendMessage(sender(), Handoff{"one"}).has_value());
  ASSERT_TRUE(SendMessage(sender(), Handoff{"two"}).has_value());
  for (const char* want : {"one", "two"}) {
    auto got = Receive(receiver());
    ASSERT_TRUE(got.has_value());
    Handoff h;
    ASSERT_TRUE(Decode(*got, &h));
    EXPECT_EQ(h.pipelined, want);
  }
}

TEST(NamesTest, NamesEveryErrorAndEndReason) {
  EXPECT_EQ(ErrorName(Error::kClosed), "closed");
  EXPECT_EQ(ErrorName(Error::kIo), "io");
  EXPECT_EQ(ErrorName(Error::kMalformed), "malformed");
  EXPECT_EQ(EndReasonName(EndReason::kQuit), "quit");
  EXPECT_EQ(EndReasonName(EndReason::kDisconnect), "disconnect");
  EXPECT_EQ(EndReasonName(EndReason::kTimeout), "timeout");
  EXPECT_EQ(EndReasonName(EndReason::kInUse), "in-use");
  EXPECT_EQ(EndReasonName(EndReason::kMailboxError), "mailbox-error");
  EXPECT_EQ(EndReasonName(EndReason::kBadCommands), "bad-commands");
  EXPECT_EQ(EndReasonName(EndReason::kCommitFailed), "commit-failed");
}

}  // namespace
}  // namespace popguard::ipc
