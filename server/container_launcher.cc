#include "container_launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/unique_fd.h"
#include "store.h"

extern char** environ;

namespace diyc::server {

using netcore::ErrnoError;
using netcore::UniqueFd;

absl::StatusOr<uint64_t> ProcessStartTime(pid_t pid) {
  absl::StatusOr<std::string> stat = ReadSmallFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return absl::NotFoundError(absl::StrCat("process ", pid, " is gone"));
  // The command name (field 2) may hold spaces and parentheses: count from
  // the last ')'.
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return absl::InternalError("unreadable /proc stat");
  std::vector<absl::string_view> fields = absl::StrSplit(absl::string_view(*stat).substr(close + 2), ' ');
  uint64_t start = 0;
  // Fields after ')' start at field 3 (state); start time is field 22.
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &start)) return absl::InternalError("unreadable /proc stat");
  return start;
}

absl::StatusOr<Launched> LaunchContainer(const std::string& init_binary, const std::string& spec_path,
                                         absl::Duration timeout) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoError(errno, "create status pipe");
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  // dup2 onto 3 clears close-on-exec only if the source is another fd.
  if (write_end.get() == 3) write_end.Reset(fcntl(3, F_DUPFD_CLOEXEC, 10));

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 3);
  posix_spawn_file_actions_addclosefrom_np(&actions, 4);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // diycd blocks SIGTERM/SIGINT for its signal thread; the child starts clean.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  char* argv[] = {const_cast<char*>(init_binary.c_str()), const_cast<char*>(spec_path.c_str()), nullptr};
  char* envp[] = {const_cast<char*>("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), nullptr};
  pid_t init_pid = 0;
  int rc = posix_spawn(&init_pid, init_binary.c_str(), &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return ErrnoError(rc, absl::StrCat("run ", netcore::Quote(init_binary)));
  write_end.Reset();
  // diyc-init forks the monitor and exits at once.
  waitpid(init_pid, nullptr, 0);

  std::string reply;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) return absl::DeadlineExceededError("container did not start in time");
    pollfd pfd{read_end.get(), POLLIN, 0};
    int ready = poll(&pfd, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buf[1024];
    ssize_t n = read(read_end.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, n);
  }
  while (!reply.empty() && reply.back() == '\n') reply.pop_back();
  if (reply.rfind("ERR ", 0) == 0) return absl::FailedPreconditionError(reply.substr(4));
  std::vector<absl::string_view> parts = absl::StrSplit(reply, ' ');
  Launched launched;
  if (parts.size() != 3 || parts[0] != "OK" || !absl::SimpleAtoi(parts[1], &launched.monitor_pid) ||
      !absl::SimpleAtoi(parts[2], &launched.pid)) {
    return absl::InternalError(absl::StrCat("diyc-init said ", netcore::Quote(reply)));
  }
  launched.monitor_start_time = ProcessStartTime(launched.monitor_pid).value_or(0);
  launched.pid_start_time = ProcessStartTime(launched.pid).value_or(0);
  return launched;
}

}  // namespace diyc::server
