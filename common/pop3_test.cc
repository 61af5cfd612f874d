#include "common/pop3.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace popguard::pop3 {
namespace {

using Status = LineReader::Status;

// Everything Next() yields until it needs more: lines as themselves, a
// dropped long line as "<too long>".
std::vector<std::string> Drain(LineReader& r) {
  std::vector<std::string> out;
  std::string line;
  for (;;) {
    Status s = r.Next(&line);
    if (s == Status::kNeedMore) return out;
    out.push_back(s == Status::kLine ? line : "<too long>");
  }
}

using Lines = std::vector<std::string>;

TEST(LineReaderTest, NeedsMoreWhenEmpty) {
  LineReader r;
  std::string line;
  EXPECT_EQ(r.Next(&line), Status::kNeedMore);
}

TEST(LineReaderTest, SplitsPipelinedCommandsInOneFeed) {
  LineReader r;
  r.Feed("USER alice\r\nPASS secret\r\nSTAT\r\n");
  EXPECT_EQ(Drain(r), (Lines{"USER alice", "PASS secret", "STAT"}));
  EXPECT_TRUE(r.Pending().empty());
}

TEST(LineReaderTest, JoinsALineSplitAcrossFeeds) {
  LineReader r;
  r.Feed("US");
  EXPECT_TRUE(Drain(r).empty());
  r.Feed("ER al");
  EXPECT_TRUE(Drain(r).empty());
  r.Feed("ice\r\n");
  EXPECT_EQ(Drain(r), (Lines{"USER alice"}));
}

TEST(LineReaderTest, HandlesCrLfSplitAcrossFeeds) {
  LineReader r;
  r.Feed("NOOP\r");
  EXPECT_TRUE(Drain(r).empty());
  r.Feed("\nQUIT\r");
  EXPECT_EQ(Drain(r), (Lines{"NOOP"}));
  r.Feed("\n");
  EXPECT_EQ(Drain(r), (Lines{"QUIT"}));
}

TEST(LineReaderTest, AcceptsBareLf) {
  LineReader r;
  r.Feed("CAPA\nQUIT\n");
  EXPECT_EQ(Drain(r), (Lines{"CAPA", "QUIT"}));
}

TEST(LineReaderTest, KeepsACrInsideALine) {
  LineReader r;
  r.Feed("PASS a\rb\r\n");
  EXPECT_EQ(Drain(r), (Lines{"PASS a\rb"}));
}

TEST(LineReaderTest, ReturnsEmptyLine) {
  LineReader r;
  r.Feed("\r\n\nNOOP\r\n");
  EXPECT_EQ(Drain(r), (Lines{"", "", "NOOP"}));
}

TEST(LineReaderTest, KeepsNulBytes) {
  LineReader r;
  r.Feed(std::string_view("USER a\0b\r\n", 10));
  EXPECT_EQ(Drain(r), (Lines{std::string("USER a\0b", 8)}));
}

TEST(LineReaderTest, AcceptsLineOfExactlyTheLimit) {
  LineReader r(8);
  r.Feed("12345678\r\n12345678\n");
  EXPECT_EQ(Drain(r), (Lines{"12345678", "12345678"}));
}

TEST(LineReaderTest, AcceptsLineOfTheLimitWhoseLfComesLater) {
  LineReader r(8);
  r.Feed("12345678\r");
  EXPECT_TRUE(Drain(r).empty());
  r.Feed("\n");
  EXPECT_EQ(Drain(r), (Lines{"12345678"}));
}

TEST(LineReaderTest, ReportsCompleteLongLineOnceThenGoodLine) {
  LineReader r(8);
  r.Feed("123456789\r\nNOOP\r\n");
  EXPECT_EQ(Drain(r), (Lines{"<too long>", "NOOP"}));
}

TEST(LineReaderTest, ReportsLongLineFedInPiecesOnce) {
  LineReader r(8);
  r.Feed("1234567890");
  EXPECT_EQ(Drain(r), (Lines{"<too long>"}));
  for (int i = 0; i < 1000; i++) {
    r.Feed("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    EXPECT_TRUE(Drain(r).empty());
    EXPECT_TRUE(r.Pending().empty());
  }
  r.Feed("tail\r\nSTAT\r\n");
  EXPECT_EQ(Drain(r), (Lines{"STAT"}));
}

TEST(LineReaderTest, BoundsMemoryWhenFedWithoutDraining) {
  LineReader r(8);
  r.Feed("NOOP\r\n");
  for (int i = 0; i < 1000; i++) r.Feed("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
  EXPECT_LE(r.Pending().size(), 6u + 8 + 2);
  r.Feed("yyy\r\nQUIT\r\n");
  EXPECT_EQ(Drain(r), (Lines{"NOOP", "<too long>", "QUIT"}));
}

TEST(LineReaderTest, ReportsLongLineWhoseCrLfIsSplit) {
  LineReader r(4);
  r.Feed("123456\r");
  r.Feed("\nQUIT\r\n");
  EXPECT_EQ(Drain(r), (Lines{"<too long>", "QUIT"}));
}

TEST(LineReaderTest, ReportsEachOfSeveralLongLines) {
  LineReader r(4);
  r.Feed("123456\r\nabcdefgh\r\nSTAT\r\n");
  EXPECT_EQ(Drain(r), (Lines{"<too long>", "<too long>", "STAT"}));
}

TEST(LineReaderTest, HandlesByteByByteFeeding) {
  LineReader r(8);
  std::string input = "USER bob\r\n123456789012\r\nQUIT\n";
  Lines got;
  for (char ch : input) {
    r.Feed(std::string_view(&ch, 1));
    for (auto& l : Drain(r)) got.push_back(l);
  }
  EXPECT_EQ(got, (Lines{"USER bob", "<too long>", "QUIT"}));
}

TEST(LineReaderTest, PendingHoldsBytesBehindTheLastLineRead) {
  LineReader r;
  r.Feed("USER a\r\nPASS b\r\nSTAT\r\nLIST 1\r\nRE");
  std::string line;
  ASSERT_EQ(r.Next(&line), Status::kLine);
  ASSERT_EQ(r.Next(&line), Status::kLine);
  EXPECT_EQ(line, "PASS b");
  EXPECT_EQ(r.Pending(), "STAT\r\nLIST 1\r\nRE");
  r.Feed("TR 1\r\n");
  EXPECT_EQ(r.Pending(), "STAT\r\nLIST 1\r\nRETR 1\r\n");
  EXPECT_EQ(Drain(r), (Lines{"STAT", "LIST 1", "RETR 1"}));
  EXPECT_EQ(r.Pending(), "");
}

TEST(LineReaderTest, ClearDropsPipelinedBytes) {
  LineReader r;
  r.Feed("STLS\r\nUSER a\r\n");
  std::string line;
  ASSERT_EQ(r.Next(&line), Status::kLine);
  r.Clear();
  EXPECT_TRUE(r.Pending().empty());
  EXPECT_EQ(r.Next(&line), Status::kNeedMore);
  r.Feed("CAPA\r\n");
  EXPECT_EQ(Drain(r), (Lines{"CAPA"}));
}

TEST(LineReaderTest, WipeEmptiesTheReader) {
  LineReader r;
  r.Feed("PASS hunter2\r\nST");
  r.Wipe();
  EXPECT_TRUE(r.Pending().empty());
  r.Feed("AT\r\n");
  EXPECT_EQ(Drain(r), (Lines{"AT"}));
}

TEST(LineReaderTest, CompactsAcrossManyFeeds) {
  LineReader r;
  for (int i = 0; i < 10000; i++) {
    r.Feed("NOOP\r\nNO");
    EXPECT_EQ(Drain(r), (Lines{"NOOP"}));
    r.Feed("OP\r\n");
    EXPECT_EQ(Drain(r), (Lines{"NOOP"}));
  }
  EXPECT_TRUE(r.Pending().empty());
}

// What the reader must yield for `input` as a whole, written the obvious
// way: the reader's results must not depend on how the bytes arrive.
Lines Reference(std::string_view input, std::size_t max) {
  Lines out;
  for (std::size_t lf; (lf = input.find('\n')) != std::string_view::npos;) {
    std::string_view line = input.substr(0, lf);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line.size() > max ? "<too long>" : std::string(line));
    input.remove_prefix(lf + 1);
  }
  return out;
}

TEST(LineReaderTest, YieldsTheSameLinesHoweverTheInputIsSplit) {
  std::mt19937 rng(1939);
  const char alphabet[] = {'a', ' ', '\r', '\n', '\0', 'Z'};
  for (int round = 0; round < 2000; round++) {
    std::size_t max = 1 + rng() % 12;
    std::string input;
    for (std::size_t n = rng() % 200; n > 0; n--)
      input += alphabet[rng() % sizeof alphabet];
    // A final LF, so that the reference and the reader agree on the end.
    input += '\n';

    LineReader r(max);
    Lines got;
    bool drain_each_time = rng() % 2;
    for (std::size_t pos = 0; pos < input.size();) {
      std::size_t n = 1 + rng() % 20;
      r.Feed(std::string_view(input).substr(pos, n));
      pos += n;
      if (drain_each_time || rng() % 4 == 0)
        for (auto& l : Drain(r)) got.push_back(l);
    }
    for (auto& l : Drain(r)) got.push_back(l);
    ASSERT_EQ(got, Reference(input, max)) << "round " << round;
  }
}

TEST(ParseCommandTest, ParsesVerbCaseInsensitively) {
  EXPECT_EQ(ParseCommand("user alice").verb, Verb::kUser);
  EXPECT_EQ(ParseCommand("UsEr alice").verb, Verb::kUser);
  Command c = ParseCommand("stat");
  EXPECT_EQ(c.verb, Verb::kStat);
  EXPECT_EQ(c.name, "STAT");
  EXPECT_TRUE(c.args.empty());
}

TEST(ParseCommandTest, RecognisesEveryVerb) {
  const std::pair<const char*, Verb> cases[] = {
      {"USER", Verb::kUser}, {"PASS", Verb::kPass}, {"APOP", Verb::kApop},
      {"QUIT", Verb::kQuit}, {"STAT", Verb::kStat}, {"LIST", Verb::kList},
      {"RETR", Verb::kRetr}, {"DELE", Verb::kDele}, {"NOOP", Verb::kNoop},
      {"RSET", Verb::kRset}, {"TOP", Verb::kTop},   {"UIDL", Verb::kUidl},
      {"CAPA", Verb::kCapa}, {"STLS", Verb::kStls}, {"AUTH", Verb::kAuth},
  };
  for (const auto& [name, verb] : cases)
    EXPECT_EQ(ParseCommand(name).verb, verb);
}

TEST(ParseCommandTest, UnknownVerbKeepsBoundedUpperCaseName) {
  Command c = ParseCommand("xtnd xmit");
  EXPECT_EQ(c.verb, Verb::kUnknown);
  EXPECT_EQ(c.name, "XTND");
  Command longc = ParseCommand(std::string(500, 'q'));
  EXPECT_EQ(longc.verb, Verb::kUnknown);
  EXPECT_EQ(longc.name, std::string(16, 'Q'));
}

TEST(ParseCommandTest, VerbWithAPrefixOfAKnownOneIsUnknown) {
  EXPECT_EQ(ParseCommand("USERX a").verb, Verb::kUnknown);
  EXPECT_EQ(ParseCommand("USE a").verb, Verb::kUnknown);
  EXPECT_EQ(ParseCommand("STATSTATSTATSTATSTAT").verb, Verb::kUnknown);
}

TEST(ParseCommandTest, SplitsArgumentsAtRunsOfSpaces) {
  Command c = ParseCommand("TOP  1   10 ");
  EXPECT_EQ(c.verb, Verb::kTop);
  EXPECT_EQ(c.args, (Lines{"1", "10"}));
  EXPECT_EQ(ParseCommand("APOP mrose c4c9334bac560ecc979e58001b3e22fb").args,
            (Lines{"mrose", "c4c9334bac560ecc979e58001b3e22fb"}));
}

TEST(ParseCommandTest, LeadingSpaceMakesTheVerbEmpty) {
  Command c = ParseCommand(" USER alice");
  EXPECT_EQ(c.verb, Verb::kUnknown);
  EXPECT_EQ(c.name, "");
}

TEST(ParseCommandTest, EmptyLineIsUnknown) {
  Command c = ParseCommand("");
  EXPECT_EQ(c.verb, Verb::kUnknown);
  EXPECT_EQ(c.name, "");
  EXPECT_TRUE(c.args.empty());
}

TEST(ParseCommandTest, PassKeepsSpacesInThePassword) {
  EXPECT_EQ(ParseCommand("PASS correct horse  battery ").args,
            (Lines{"correct horse  battery "}));
  EXPECT_EQ(ParseCommand("pass  leading").args, (Lines{" leading"}));
}

TEST(ParseCommandTest, PassWithoutPasswordHasNoArgument) {
  EXPECT_TRUE(ParseCommand("PASS").args.empty());
  EXPECT_TRUE(ParseCommand("PASS ").args.empty());
}

TEST(ParseCommandTest, RejectsNulAnywhereInTheLine) {
  Command pass = ParseCommand(std::string_view("PASS ab\0cd", 10));
  EXPECT_EQ(pass.verb, Verb::kUnknown);
  EXPECT_TRUE(pass.args.empty());
  Command user = ParseCommand(std::string_view("USER root\0alice", 15));
  EXPECT_EQ(user.verb, Verb::kUnknown);
  EXPECT_EQ(user.name, "USER");
  EXPECT_EQ(ParseCommand(std::string_view("QUIT\0", 5)).verb, Verb::kUnknown);
}

TEST(ParseCommandTest, RejectsCrAndLfInTheLine) {
  EXPECT_EQ(ParseCommand("USER a\rb").verb, Verb::kUnknown);
  EXPECT_EQ(ParseCommand("USER a\nb").verb, Verb::kUnknown);
}

TEST(ParseCommandTest, KeepsNonAsciiBytesInArguments) {
  EXPECT_EQ(ParseCommand("PASS p\xc3\xa4ss").args, (Lines{"p\xc3\xa4ss"}));
}

TEST(ParseMessageNumberTest, AcceptsValidNumbers) {
  EXPECT_EQ(ParseMessageNumber("1"), 1u);
  EXPECT_EQ(ParseMessageNumber("42"), 42u);
  EXPECT_EQ(ParseMessageNumber("2147483647"), 2147483647u);
}

TEST(ParseMessageNumberTest, AcceptsLeadingZeros) {
  EXPECT_EQ(ParseMessageNumber("007"), 7u);
  EXPECT_EQ(ParseMessageNumber(std::string(100, '0') + "9"), 9u);
}

TEST(ParseMessageNumberTest, RejectsZeroSignsSpacesAndOverflow) {
  for (std::string_view bad :
       {"", "0", "000", "+1", "-1", " 1", "1 ", "1a", "0x10", "1.0",
        "2147483648", "4294967296", "99999999999999999999999"}) {
    EXPECT_FALSE(ParseMessageNumber(bad).has_value()) << bad;
  }
}

TEST(ParseCountTest, AcceptsZeroToUint32Max) {
  EXPECT_EQ(ParseCount("0"), 0u);
  EXPECT_EQ(ParseCount("10"), 10u);
  EXPECT_EQ(ParseCount("4294967295"), 4294967295u);
}

TEST(ParseCountTest, RejectsSignsAndOverflow) {
  for (std::string_view bad :
       {"", "-0", "+3", "-1", "4294967296", "3 ", "1e3"}) {
    EXPECT_FALSE(ParseCount(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace popguard::pop3
