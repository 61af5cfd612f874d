// popauth: the admin tool for pop.auth, with Qpopper's command line.
//
//   popauth -init [-safe]       create the database (and the key if missing)
//   popauth -user NAME          set NAME's APOP secret, typed twice
//   popauth -user NAME -stdin   the same, one line from standard input
//   popauth -delete NAME        remove NAME's entry
//   popauth -list [ALL|NAME]    list the names, or say whether NAME has one
//   popauth -help
//
// -file PATH and -key PATH choose other files.  Exit status: 0 done, 1
// refused or failed (the files are as they were), 2 bad command line.
// Every option may also be written with two dashes.
#include <fcntl.h>
#include <fmt/format.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "common/secure.h"
#include "monitor/popauth_db.h"

namespace popguard::monitor {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// Longer input lines are refused whole rather than cut, so that a pasted
// secret is never stored shorter than the admin believes.
constexpr std::size_t kMaxLine = 1024;

constexpr char kUsage[] =
    "usage: popauth [-file PATH] [-key PATH] COMMAND\n"
    "\n"
    "commands:\n"
    "  -init [-safe]        create the database, replacing an existing one\n"
    "                       (-safe: refuse if one exists); creates the key\n"
    "                       file if it is missing\n"
    "  -user NAME           set the APOP secret of system user NAME, typed\n"
    "                       twice at the terminal\n"
    "  -user NAME -stdin    the same, read as one line from standard input\n"
    "  -delete NAME         remove NAME's entry\n"
    "  -list [ALL]          list every name that has an entry\n"
    "  -list NAME           say whether NAME has an entry (exit 1 if not)\n"
    "  -help                this text\n"
    "\n"
    "options:\n"
    "  -file PATH           the database (default /etc/pop.auth)\n"
    "  -key PATH            the key file (default "
    "/etc/popguard/pop.auth.key)\n"
    "\n"
    "Secrets are 8 to 255 printable characters and are never printed.\n";

enum class Command { kNone, kInit, kUser, kDelete, kList, kHelp };

struct Args {
  Command command = Command::kNone;
  std::string name;  // -user, -delete, -list NAME
  bool safe = false;
  bool use_stdin = false;
  PopAuthFiles files;
};

struct UsageError {
  std::string message;
};

int Fail(std::string_view message) {
  fmt::print(stderr, "popauth: {}\n", message);
  return kExitFailed;
}

int Fail(const PopAuthFailure& f) { return Fail(f.detail); }

std::expected<Args, UsageError> ParseArgs(int argc, char** argv) {
  Args args;
  auto set_command = [&](Command c) -> bool {
    if (args.command != Command::kNone) return false;
    args.command = c;
    return true;
  };
  auto is_option = [](std::string_view s) { return s.starts_with("-"); };

  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.starts_with("--") && arg.size() > 2) arg.remove_prefix(1);
    bool has_next = i + 1 < argc;
    std::string_view next = has_next ? argv[i + 1] : "";

    bool ok = true;
    if (arg == "-init") {
      ok = set_command(Command::kInit);
    } else if (arg == "-help" || arg == "-h") {
      ok = set_command(Command::kHelp);
    } else if (arg == "-safe") {
      args.safe = true;
    } else if (arg == "-stdin") {
      args.use_stdin = true;
    } else if (arg == "-file" || arg == "-key") {
      if (!has_next) {
        return std::unexpected(UsageError{"-file and -key need a path"});
      }
      (arg == "-file" ? args.files.db_path : args.files.key_path) = next;
      ++i;
    } else if (arg == "-user" || arg == "-delete") {
      if (!has_next || is_option(next)) {
        return std::unexpected(
            UsageError{fmt::format("{} needs a user name", arg)});
      }
      ok = set_command(arg == "-user" ? Command::kUser : Command::kDelete);
      args.name = next;
      ++i;
      if (arg == "-user" && i + 1 < argc && !is_option(argv[i + 1])) {
        return std::unexpected(UsageError{
            "refusing a secret on the command line: every user can read it "
            "in ps(1), and it stays in the shell's history.  Type it at the "
            "prompt (popauth -user NAME) or give it on standard input "
            "(popauth -user NAME --stdin)."});
      }
    } else if (arg == "-list") {
      ok = set_command(Command::kList);
      if (has_next && !is_option(next)) {
        args.name = next == "ALL" ? "" : std::string(next);
        ++i;
      }
    } else if (args.command == Command::kUser) {
      // Not echoed: it may be a secret that starts with '-'.
      return std::unexpected(
          UsageError{"unknown argument after -user (not shown, in case it is a "
                     "secret; secrets go on standard input with --stdin)"});
    } else {
      return std::unexpected(
          UsageError{fmt::format("unknown argument '{}'", arg)});
    }
    if (!ok) {
      return std::unexpected(UsageError{"give one command only"});
    }
  }
  if (args.use_stdin && args.command != Command::kUser) {
    return std::unexpected(UsageError{"-stdin goes with -user only"});
  }
  if (args.safe && args.command != Command::kInit) {
    return std::unexpected(UsageError{"-safe goes with -init only"});
  }
  return args;
}

// The terminal whose echo is off while a secret is typed, and how to put it
// back.  A signal that ends the tool meanwhile restores it first, or the
// admin's shell would be left without echo.
int g_tty_fd = -1;
termios g_tty_saved{};

void RestoreEchoAndDie(int sig) {
  tcsetattr(g_tty_fd, TCSAFLUSH, &g_tty_saved);
  signal(sig, SIG_DFL);
  raise(sig);
}

// Reads one line, without its end, into a string that never reallocates
// (a reallocation would leave an unwiped copy of a secret behind).
std::expected<std::string, std::string> ReadLine(int fd) {
  std::string line;
  line.reserve(kMaxLine + 1);
  bool too_long = false;
  for (;;) {
    char c = 0;
    ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Wipe(line);
      return std::unexpected(fmt::format("read: {}", std::strerror(errno)));
    }
    if (n == 0) {
      if (line.empty() && !too_long) {
        return std::unexpected(std::string("end of input"));
      }
      break;
    }
    if (c == '\n') break;
    if (line.size() < kMaxLine) {
      line.push_back(c);
    } else {
      too_long = true;
    }
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (too_long) {
    Wipe(line);
    return std::unexpected(
        fmt::format("line longer than {} characters", kMaxLine));
  }
  return line;
}

void WriteAll(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

int OpenTerminal() { return open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC); }

std::expected<std::string, std::string> AskHidden(int tty,
                                                  std::string_view prompt) {
  termios saved{};
  if (tcgetattr(tty, &saved) != 0) {
    return std::unexpected(fmt::format("terminal: {}", std::strerror(errno)));
  }
  termios quiet = saved;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  quiet.c_lflag |= ECHONL;

  g_tty_fd = tty;
  g_tty_saved = saved;
  struct sigaction restore {};
  restore.sa_handler = RestoreEchoAndDie;
  sigemptyset(&restore.sa_mask);
  struct sigaction old[4];
  const int kSignals[4] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  for (int i = 0; i < 4; ++i) sigaction(kSignals[i], &restore, &old[i]);
  // A stop with echo off would leave the shell silent until fg.
  sighandler_t old_tstp = signal(SIGTSTP, SIG_IGN);

  WriteAll(tty, prompt);
  tcsetattr(tty, TCSAFLUSH, &quiet);
  auto line = ReadLine(tty);
  tcsetattr(tty, TCSAFLUSH, &saved);

  signal(SIGTSTP, old_tstp);
  for (int i = 0; i < 4; ++i) sigaction(kSignals[i], &old[i], nullptr);
  return line;
}

// Asks a yes/no question on the terminal, or, when the tool has none (cron,
// a configuration tool), reads the answer from standard input.
bool Confirm(std::string_view question) {
  int tty = OpenTerminal();
  int in = tty >= 0 ? tty : STDIN_FILENO;
  WriteAll(tty >= 0 ? tty : STDERR_FILENO, question);
  auto answer = ReadLine(in);
  if (tty >= 0) close(tty);
  if (!answer) return false;
  return *answer == "y" || *answer == "Y" || *answer == "yes" ||
         *answer == "YES" || *answer == "Yes";
}

std::expected<void, std::string> CheckSecret(std::string_view secret) {
  if (secret.size() < kMinSecretLength || secret.size() > kMaxSecretLength) {
    return std::unexpected(
        fmt::format("the secret must be {} to {} characters long",
                    kMinSecretLength, kMaxSecretLength));
  }
  for (char c : secret) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      return std::unexpected(
          std::string("the secret must not hold control characters"));
    }
  }
  return {};
}

std::expected<std::string, std::string> SecretFromTerminal(
    const std::string& name) {
  int tty = OpenTerminal();
  if (tty < 0) {
    return std::unexpected(std::string(
        "no terminal to ask on; give the secret on standard input with "
        "--stdin"));
  }
  WriteAll(tty,
           fmt::format("Choose a secret that is not {}'s login password: "
                       "pop.auth keeps APOP secrets in recoverable form.\n",
                       name));
  auto first = AskHidden(tty, fmt::format("New APOP secret for {}: ", name));
  if (!first) {
    close(tty);
    return first;
  }
  auto second = AskHidden(tty, "Retype the secret: ");
  close(tty);
  if (!second) {
    Wipe(*first);
    return second;
  }
  bool same = *first == *second;
  Wipe(*second);
  if (!same) {
    Wipe(*first);
    return std::unexpected(
        std::string("the two secrets differ; nothing "
                    "changed"));
  }
  return first;
}

int RunInit(const Args& args) {
  if (args.safe && access(args.files.db_path.c_str(), F_OK) == 0) {
    return Fail(fmt::format("{}: already exists; left as it is (-safe)",
                            args.files.db_path));
  }
  if (!Confirm("Really initialize POP authentication DB? ")) {
    return Fail("not initialized");
  }
  auto done = InitDatabase(args.files, args.safe);
  if (!done) return Fail(done.error());
  fmt::print("popauth: initialized {} (key {})\n", args.files.db_path,
             args.files.key_path);
  return kExitOk;
}

int RunUser(const Args& args) {
  if (!ValidPopAuthName(args.name)) {
    return Fail(
        "not a valid user name: a lower-case letter or '_', then lower-case "
        "letters, digits, '_', '.' or '-', at most 32 in all");
  }
  if (getpwnam(args.name.c_str()) == nullptr) {
    return Fail(fmt::format("'{}' is not a user on this system", args.name));
  }
  // Refuse before the admin types a secret, not after.
  auto readable = VerifyPopAuthFiles(args.files);
  if (!readable) return Fail(readable.error());

  auto secret =
      args.use_stdin ? ReadLine(STDIN_FILENO) : SecretFromTerminal(args.name);
  if (!secret) {
    return Fail(args.use_stdin ? fmt::format("no secret on standard input ({})",
                                             secret.error())
                               : secret.error());
  }
  auto acceptable = CheckSecret(*secret);
  if (!acceptable) {
    Wipe(*secret);
    return Fail(acceptable.error());
  }
  auto replaced = SetSecret(args.files, args.name, *secret);
  Wipe(*secret);
  if (!replaced) return Fail(replaced.error());
  fmt::print("popauth: {} APOP secret for {}\n",
             *replaced ? "changed the" : "set an", args.name);
  if (args.use_stdin) {
    fmt::print(stderr,
               "popauth: note: the APOP secret should not be {}'s login "
               "password\n",
               args.name);
  }
  return kExitOk;
}

int RunDelete(const Args& args) {
  auto done = DeleteUser(args.files, args.name);
  if (!done) return Fail(done.error());
  fmt::print("popauth: removed {}\n", args.name);
  return kExitOk;
}

int RunList(const Args& args) {
  auto names = ListUsers(args.files);
  if (!names) return Fail(names.error());
  if (args.name.empty()) {
    for (const std::string& n : *names) fmt::print("{}\n", n);
    return kExitOk;
  }
  for (const std::string& n : *names) {
    if (n == args.name) {
      fmt::print("{}: has an APOP secret\n", n);
      return kExitOk;
    }
  }
  fmt::print("{}: no entry\n", args.name);
  return kExitFailed;
}

int Run(int argc, char** argv) {
  auto args = ParseArgs(argc, argv);
  if (!args) {
    fmt::print(stderr, "popauth: {}\n(popauth -help shows the usage)\n",
               args.error().message);
    return kExitUsage;
  }
  switch (args->command) {
    case Command::kNone: fmt::print(stderr, "{}", kUsage); return kExitUsage;
    case Command::kHelp: fmt::print("{}", kUsage); return kExitOk;
    default: break;
  }
  if (geteuid() != 0) {
    return Fail("must be run as root (the key and database are root's)");
  }
  umask(077);

  switch (args->command) {
    case Command::kInit: return RunInit(*args);
    case Command::kUser: return RunUser(*args);
    case Command::kDelete: return RunDelete(*args);
    case Command::kList: return RunList(*args);
    case Command::kNone:
    case Command::kHelp: break;
  }
  return kExitUsage;
}

}  // namespace
}  // namespace popguard::monitor

int main(int argc, char** argv) { return popguard::monitor::Run(argc, argv); }
