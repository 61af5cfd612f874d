#include "monitor/audit_chain.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace popguard::monitor {
namespace {

class AuditChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/audit-chain-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/audit.jsonl";
  }
  void TearDown() override {
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }

  void Append(int n) {
    for (int i = 0; i < n; i++) {
      std::string members = "\"event\":\"auth\",\"user\":";
      AppendJsonString(&members, fmt::format("user{}", i));
      ASSERT_TRUE(AppendChained(path_, members).has_value());
    }
  }

  std::vector<std::string> Lines() {
    std::ifstream in(path_);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  std::string Contents() {
    std::ifstream in(path_, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  void Write(const std::string& text) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << text;
  }

  void WriteLines(const std::vector<std::string>& lines) {
    std::string text;
    for (const auto& l : lines) text += l + "\n";
    Write(text);
  }

  ChainReport Verify() {
    int fd = open(path_.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    ChainReport r = VerifyChain(fd);
    close(fd);
    return r;
  }

  std::string dir_;
  std::string path_;
};

TEST(AppendJsonStringTest, EscapesQuotesBackslashesAndEveryOtherByte) {
  std::string out;
  AppendJsonString(&out, std::string("a\"b\\c\n\x01\x7f\xc3\xa9 z", 12));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\u000a\\u0001\\u007f\\u00c3\\u00a9 z\"");
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_TRUE(j.is_string());
}

TEST(AppendJsonStringTest, RoundTripsEveryByteAsValidJson) {
  std::string all;
  for (int c = 0; c < 256; c++) all += static_cast<char>(c);
  std::string out;
  AppendJsonString(&out, all);
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  // Each byte comes back as the code point of the same value.
  std::string back = j.get<std::string>();
  std::size_t i = 0;
  for (int c = 0; c < 0x80; c++) EXPECT_EQ(back[i++], static_cast<char>(c));
}

TEST(Sha256HexTest, MatchesTheKnownDigestOfAbc) {
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Rfc3339UtcTest, WritesUtcWithMilliseconds) {
  auto t = std::chrono::system_clock::time_point(
      std::chrono::milliseconds(1700000000123));
  EXPECT_EQ(Rfc3339Utc(t), "2023-11-14T22:13:20.123Z");
}

TEST_F(AuditChainTest, FirstRecordHasSeqOneAndZeroPrev) {
  Append(1);
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["seq"], 1);
  EXPECT_EQ(j["prev"], std::string(64, '0'));
  EXPECT_EQ(j["event"], "auth");
  EXPECT_TRUE(j["time"].get<std::string>().ends_with("Z"));
}

TEST_F(AuditChainTest, EachRecordCarriesTheDigestOfTheLineBefore) {
  Append(3);
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  for (std::size_t i = 1; i < lines.size(); i++) {
    auto j = nlohmann::json::parse(lines[i]);
    EXPECT_EQ(j["seq"], i + 1);
    EXPECT_EQ(j["prev"], Sha256Hex(lines[i - 1]));
  }
}

TEST_F(AuditChainTest, CreatesTheFileRootOnly) {
  Append(1);
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(AuditChainTest, VerifiesAnIntactChain) {
  Append(5);
  ChainReport r = Verify();
  EXPECT_TRUE(r.intact) << r.why;
  EXPECT_EQ(r.records, 5u);
}

TEST_F(AuditChainTest, VerifiesAnEmptyFileAsIntact) {
  Write("");
  ChainReport r = Verify();
  EXPECT_TRUE(r.intact);
  EXPECT_EQ(r.records, 0u);
}

TEST_F(AuditChainTest, DetectsAnEditedByte) {
  Append(5);
  std::string text = Contents();
  std::size_t at = text.find("user2");
  ASSERT_NE(at, std::string::npos);
  text[at + 4] = '9';
  Write(text);
  ChainReport r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.line, 4u);
  EXPECT_NE(r.why.find("digest mismatch"), std::string::npos) << r.why;
}

TEST_F(AuditChainTest, DetectsARemovedLine) {
  Append(5);
  auto lines = Lines();
  lines.erase(lines.begin() + 2);
  WriteLines(lines);
  ChainReport r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.line, 3u);
  EXPECT_NE(r.why.find("seq gap"), std::string::npos) << r.why;
}

TEST_F(AuditChainTest, DetectsARemovedFirstLine) {
  Append(3);
  auto lines = Lines();
  lines.erase(lines.begin());
  WriteLines(lines);
  ChainReport r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.line, 1u);
  EXPECT_NE(r.why.find("start of the file is missing"), std::string::npos);
}

TEST_F(AuditChainTest, DetectsReorderedLines) {
  Append(5);
  auto lines = Lines();
  std::swap(lines[1], lines[3]);
  WriteLines(lines);
  ChainReport r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.line, 2u);
}

TEST_F(AuditChainTest, DetectsARenumberedLineWithItsDigestKept) {
  // Removing a line and renumbering the rest still breaks the digests.
  Append(4);
  auto lines = Lines();
  lines.erase(lines.begin() + 1);
  for (std::size_t i = 1; i < lines.size(); i++) {
    std::string from = fmt::format("{{\"seq\":{},", i + 2);
    std::string to = fmt::format("{{\"seq\":{},", i + 1);
    lines[i].replace(0, from.size(), to);
  }
  WriteLines(lines);
  ChainReport r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.line, 2u);
  EXPECT_NE(r.why.find("digest mismatch"), std::string::npos) << r.why;
}

TEST_F(AuditChainTest, DetectsATruncatedLastLine) {
  Append(3);
  std::string text = Contents();
  Write(text.substr(0, text.size() - 10));
  ChainReport r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.line, 3u);
  EXPECT_NE(r.why.find("cut short"), std::string::npos) << r.why;
}

TEST_F(AuditChainTest, DetectsALineThatIsNotJson) {
  Append(3);
  auto lines = Lines();
  lines[1] = lines[1].substr(0, lines[1].size() - 1);
  WriteLines(lines);
  ChainReport r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.line, 2u);
  EXPECT_EQ(r.why, "not a JSON object");
}

TEST_F(AuditChainTest, KeepsACutShortLineApartAndChainsPastIt) {
  Append(2);
  std::string text = Contents();
  Write(text.substr(0, text.size() - 5));
  Append(1);
  auto lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  // The torn line is reported, but the new record still names its digest.
  auto j = nlohmann::json::parse(lines[2]);
  EXPECT_EQ(j["prev"], Sha256Hex(lines[1]));
  ChainReport r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.line, 2u);
}

TEST_F(AuditChainTest, ReadChainTailReadsOnlyTheLastLine) {
  Append(3);
  int fd = open(path_.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  auto tail = ReadChainTail(fd);
  close(fd);
  ASSERT_TRUE(tail.has_value());
  EXPECT_EQ(tail->seq, 3u);
  EXPECT_EQ(tail->digest, Sha256Hex(Lines()[2]));
}

TEST_F(AuditChainTest, ReadChainTailFindsALineLongerThanOneChunk) {
  std::string members = "\"event\":\"x\",\"pad\":";
  AppendJsonString(&members, std::string(10000, 'p'));
  ASSERT_TRUE(AppendChained(path_, members).has_value());
  ASSERT_TRUE(AppendChained(path_, members).has_value());
  ChainReport r = Verify();
  EXPECT_TRUE(r.intact) << r.why;
  EXPECT_EQ(r.records, 2u);
}

TEST_F(AuditChainTest, ConcurrentWritersKeepOneUnbrokenChain) {
  constexpr int kWriters = 8;
  constexpr int kEach = 50;
  std::vector<pid_t> pids;
  for (int w = 0; w < kWriters; w++) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      for (int i = 0; i < kEach; i++) {
        std::string members = fmt::format("\"event\":\"w{}\"", w);
        if (!AppendChained(path_, members)) _exit(1);
      }
      _exit(0);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  ChainReport r = Verify();
  EXPECT_TRUE(r.intact) << "line " << r.line << ": " << r.why;
  EXPECT_EQ(r.records, static_cast<std::uint64_t>(kWriters * kEach));
}

TEST_F(AuditChainTest, RefusesASymlinkInPlaceOfTheFile) {
  std::string target = dir_ + "/elsewhere";
  ASSERT_EQ(symlink(target.c_str(), path_.c_str()), 0);
  auto r = AppendChained(path_, "\"event\":\"x\"");
  EXPECT_FALSE(r.has_value());
  EXPECT_NE(access(target.c_str(), F_OK), 0);
  unlink(target.c_str());
}

}  // namespace
}  // namespace popguard::monitor
