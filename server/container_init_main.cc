// diyc-init: starts one container and watches over it.
//
// diycd runs `diyc-init SPEC_JSON` with a pipe on fd 3. diyc-init forks a
// monitor that outlives diycd (diycd may restart; the container must not
// notice), reports "OK <monitor pid> <container pid>" or "ERR <message>" on
// the pipe once the command has been exec'd or has failed to start, relays
// the container's stdout and stderr into its log, and when the container's
// first process ends writes the exit record diycd reads.
//
// This is a fresh single-threaded process: it may unshare, clone into new
// namespaces and pivot_root, which a multithreaded gRPC server cannot.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "container_log.h"
#include "diyc/netcore/capabilities.h"
#include "diyc/netcore/cgroup.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/rootfs.h"
#include "diyc/netcore/seccomp.h"
#include "diyc/netcore/status_macros.h"
#include "diyc/netcore/unique_fd.h"
#include "diyc/v1/state.pb.h"
#include "google/protobuf/util/time_util.h"
#include "store.h"

extern char** environ;

namespace diyc::server {
namespace {

using netcore::UniqueFd;

constexpr int kStatusFd = 3;

struct ChildArgs {
  const v1::ContainerSpec* spec;
  int go_read;      // one byte arrives once the child is in its cgroup
  int error_write;  // close-on-exec: EOF at the parent means exec succeeded
  int netns_fd;
  int stdout_write;
  int stderr_write;
};

[[noreturn]] void ChildFail(const ChildArgs& a, const absl::Status& status) {
  std::string message(status.message());
  (void)!write(a.error_write, message.data(), message.size());
  _exit(127);
}

// The container's first process: joins the prepared network namespace,
// builds its root filesystem, sheds privileges and execs the command.
int ContainerMain(void* arg) {
  const ChildArgs& a = *static_cast<ChildArgs*>(arg);
  const v1::ContainerSpec& spec = *a.spec;
  char go = 0;
  if (read(a.go_read, &go, 1) != 1) _exit(127);  // the monitor gave up

  if (setns(a.netns_fd, CLONE_NEWNET) != 0) ChildFail(a, netcore::ErrnoError(errno, "join network namespace"));
  if (sethostname(spec.hostname().data(), spec.hostname().size()) != 0) {
    ChildFail(a, netcore::ErrnoError(errno, "set hostname"));
  }
  netcore::RootfsOptions rootfs{.lower_dir = spec.lower_dir(), .upper_dir = spec.upper_dir(),
                                .work_dir = spec.overlay_work_dir(), .rootfs_dir = spec.rootfs_dir(),
                                .hostname = spec.hostname(), .hosts = spec.hosts(),
                                .resolv_conf = spec.resolv_conf()};
  if (absl::Status s = netcore::SetupRootfs(rootfs); !s.ok()) ChildFail(a, s);

  const std::string workdir = spec.workdir().empty() ? "/" : spec.workdir();
  // Like Docker, a missing working directory is created.
  for (size_t i = 1; i <= workdir.size(); ++i) {
    if (i == workdir.size() || workdir[i] == '/') mkdir(workdir.substr(0, i).c_str(), 0755);
  }
  if (chdir(workdir.c_str()) != 0) ChildFail(a, netcore::ErrnoError(errno, absl::StrCat("chdir ", workdir)));

  int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(a.stdout_write, 1) < 0 || dup2(a.stderr_write, 2) < 0) {
    ChildFail(a, netcore::ErrnoError(errno, "set up stdio"));
  }
  // Only 0-2 survive the exec; no descriptor of diycd or diyc-init leaks in.
  if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    ChildFail(a, netcore::ErrnoError(errno, "close descriptors"));
  }
  if (absl::Status s = netcore::RestrictPrivileges(netcore::DefaultCapabilities()); !s.ok()) ChildFail(a, s);
  // Last, so the setup above could still mount and pivot; inherited by the
  // command across exec.
  if (absl::Status s = netcore::ApplyDefaultSeccomp(); !s.ok()) ChildFail(a, s);

  std::vector<char*> argv;
  for (const std::string& arg : spec.argv()) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> env;
  for (const std::string& e : spec.env()) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  // execvp searches the container's PATH, which it reads from environ.
  environ = env.data();
  // The monitor ignores and blocks signals for itself; ignored dispositions
  // and the mask survive exec, and a shell cannot trap a signal that was
  // ignored when it started. The command starts with every default.
  // The raw system call: the C library refuses to touch the two real-time
  // signals it reserves, which a parent may still have left ignored.
  struct {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    uint64_t mask;
  } default_action = {SIG_DFL, 0, nullptr, 0};
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) syscall(SYS_rt_sigaction, sig, &default_action, nullptr, sizeof(uint64_t));
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  execvp(argv[0], argv.data());
  ChildFail(a, netcore::ErrnoError(errno, absl::StrCat("exec ", netcore::Quote(spec.argv(0)))));
}

void Report(const std::string& line) {
  std::string text = line + "\n";
  (void)!write(kStatusFd, text.data(), text.size());
  close(kStatusFd);
}

absl::Status WriteExit(const v1::ContainerSpec& spec, const v1::ContainerExit& exit_record) {
  DIYC_ASSIGN_OR_RETURN(std::string json, RecordToJson(exit_record));
  return WriteFileAtomically(spec.exit_path(), json);
}

// Runs in the monitor. Returns the process exit code of diyc-init.
int Monitor(const v1::ContainerSpec& spec) {
  auto fail = [&](const absl::Status& status) {
    v1::ContainerExit exit_record;
    exit_record.set_exit_code(127);
    exit_record.set_error(std::string(status.message()));
    *exit_record.mutable_finished_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
    (void)WriteExit(spec, exit_record);
    Report(absl::StrCat("ERR ", status.message()));
    return 1;
  };

  UniqueFd log(open(spec.log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!log) return fail(netcore::ErrnoError(errno, "open container log"));
  UniqueFd netns(open(spec.netns_path().c_str(), O_RDONLY | O_CLOEXEC));
  if (!netns) return fail(netcore::ErrnoError(errno, "open container network namespace"));

  int go[2], err[2], out[2], errout[2];
  if (pipe2(go, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
      pipe2(errout, O_CLOEXEC) != 0) {
    return fail(netcore::ErrnoError(errno, "create pipes"));
  }
  // SIGCHLD through a signalfd, so the relay loop sees the exit.
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, nullptr);
  UniqueFd sigfd(signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));

  ChildArgs args{&spec, go[0], err[1], netns.get(), out[1], errout[1]};
  constexpr size_t kStack = 1 << 20;
  std::vector<char> stack(kStack);
  // The stack grows down on every architecture diyc runs on.
  pid_t child = clone(ContainerMain, stack.data() + kStack,
                      CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD, &args);
  if (child < 0) return fail(netcore::ErrnoError(errno, "clone container process"));
  close(go[0]);
  close(err[1]);
  close(out[1]);
  close(errout[1]);

  absl::StatusOr<std::unique_ptr<netcore::Cgroup>> cgroup =
      netcore::OpenCgroup(spec.cgroup_name(), {.parent = spec.cgroup_parent()});
  absl::Status joined = cgroup.ok() ? (*cgroup)->AddProcess(child) : cgroup.status();
  if (!joined.ok()) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return fail(netcore::Annotate(joined, "join cgroup"));
  }
  if (write(go[1], "g", 1) != 1) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return fail(netcore::ErrnoError(errno, "start container process"));
  }
  close(go[1]);

  std::string start_error;
  char buf[4096];
  ssize_t n;
  while ((n = read(err[0], buf, sizeof(buf))) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    start_error.append(buf, n);
  }
  close(err[0]);
  if (!start_error.empty()) {
    waitpid(child, nullptr, 0);
    return fail(absl::InternalError(start_error));
  }
  Report(absl::StrCat("OK ", getpid(), " ", child));

  // Relay output until the first process ends and both pipes are drained.
  ContainerLogWriter writer(log.get());
  std::vector<pollfd> fds = {{out[0], POLLIN, 0}, {errout[0], POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
  int open_pipes = 2;
  int status = 0;
  bool exited = false;
  while (open_pipes > 0 || !exited) {
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (size_t i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        writer.Write(i == 0 ? v1::LogChunk::STDOUT : v1::LogChunk::STDERR, buf, n);
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_pipes;
      }
    }
    if (fds[2].revents & POLLIN) {
      signalfd_siginfo info;
      while (read(sigfd.get(), &info, sizeof(info)) > 0) {
      }
      if (!exited && waitpid(child, &status, WNOHANG) == child) exited = true;
    }
  }

  v1::ContainerExit exit_record;
  if (WIFEXITED(status)) {
    exit_record.set_exit_code(WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    exit_record.set_signal(WTERMSIG(status));
    exit_record.set_exit_code(128 + WTERMSIG(status));
  }
  if (absl::StatusOr<netcore::CgroupStats> stats = (*cgroup)->Stats(); stats.ok()) {
    exit_record.set_oom_killed(stats->oom_killed);
  }
  *exit_record.mutable_finished_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
  return WriteExit(spec, exit_record).ok() ? 0 : 1;
}

int Main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: diyc-init SPEC_JSON (run by diycd)\n");
    return 2;
  }
  v1::ContainerSpec spec;
  absl::StatusOr<std::string> json = ReadSmallFile(argv[1]);
  absl::Status parsed = json.ok() ? RecordFromJson(*json, &spec) : json.status();
  if (!parsed.ok() || spec.argv().empty()) {
    Report(absl::StrCat("ERR read container spec: ", parsed.ok() ? "no command" : parsed.message()));
    return 1;
  }
  // The monitor is a grandchild: diycd reaps this process at once, and the
  // monitor belongs to no diycd that may later restart.
  pid_t monitor = fork();
  if (monitor < 0) {
    Report(absl::StrCat("ERR fork monitor: ", std::strerror(errno)));
    return 1;
  }
  if (monitor > 0) return 0;
  setsid();
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  if (chdir("/") != 0) return 1;
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0) {
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
  }
  return Monitor(spec);
}

}  // namespace
}  // namespace diyc::server

int main(int argc, char** argv) { return diyc::server::Main(argc, argv); }
