// diycd: the diyc node daemon.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>

#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "diyc/netcore/firewall.h"
#include "diyc/netcore/netns.h"
#include "fault.h"
#include "listen.h"
#include "node.h"
#include "node_service.h"

ABSL_FLAG(std::string, socket, "/run/diyc/diyc.sock", "Unix socket to serve on (root only, mode 0600)");
ABSL_FLAG(std::string, state_dir, "/var/lib/diyc", "Where networks and attachments are recorded");
ABSL_FLAG(std::string, listen, "", "Also serve on TCP HOST:PORT; requires --tls-cert and --tls-key");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain for --listen");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --listen");
ABSL_FLAG(std::string, tls_client_ca, "", "PEM CA bundle: with it, TCP clients must present a certificate it signed");
ABSL_FLAG(std::string, init_binary, "", "The diyc-init helper (default: next to diycd)");
ABSL_FLAG(std::string, nft_table, "diyc", "nftables table (family inet) holding diyc's rules");
ABSL_FLAG(std::string, netns, "",
          "Serve the network namespace NAME (under /run/netns) or PATH instead of the host's: one diycd per "
          "simulated node");

namespace {

constexpr int kMaxMessageBytes = 1 << 20;  // requests are small; refuse floods

int Fail(const std::string& message) {
  absl::FPrintF(stderr, "diycd: %s\n", message);
  return 1;
}

// glibc hands a thread that finds its arena locked a new one, up to eight
// per core, and each arena keeps the memory freed into it. gRPC's server
// retires and starts worker threads as calls come and go, so over a long run
// more and more arenas fill: RSS climbed from 27 to 72 MiB over 1000
// container cycles on 2 cores with nothing leaked, and would go on with more
// cores. Two arenas keep it flat (bench/run.sh --soak); diycd's calls are
// short and few, so the lock contention costs nothing measurable.
// MALLOC_ARENA_MAX in the environment still wins.
constexpr int kMallocArenas = 2;

void LimitMallocArenas() {
  if (getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, kMallocArenas);
}

}  // namespace

// Accept --state-dir as well as --state_dir: dashes are what users type.
std::vector<char*> NormaliseFlagNames(int argc, char** argv, std::vector<std::string>& storage) {
  storage.assign(argv, argv + argc);
  for (size_t i = 1; i < storage.size(); ++i) {
    std::string& arg = storage[i];
    if (arg == "--") break;
    if (arg.rfind("--", 0) != 0) continue;
    for (size_t j = 2; j < arg.size() && arg[j] != '='; ++j) {
      if (arg[j] == '-') arg[j] = '_';
    }
  }
  std::vector<char*> out;
  for (std::string& arg : storage) out.push_back(arg.data());
  out.push_back(nullptr);
  return out;
}

int main(int argc, char** argv) {
  LimitMallocArenas();  // before any thread exists
  std::vector<std::string> arg_storage;
  std::vector<char*> args = NormaliseFlagNames(argc, argv, arg_storage);
  argv = args.data();
  absl::SetProgramUsageMessage(
      "diycd [--socket PATH] [--state-dir DIR] [--listen HOST:PORT --tls-cert F --tls-key F [--tls-client-ca F]]");
  absl::ParseCommandLine(argc, argv);
  diyc::server::InitFaultPoints();
  if (geteuid() != 0) return Fail("must run as root (it creates namespaces, links and firewall rules)");
  // Before any thread exists: every thread made later starts in it.
  if (const std::string netns = absl::GetFlag(FLAGS_netns); !netns.empty()) {
    auto ns = netns.find('/') == std::string::npos ? diyc::netcore::Netns::OpenName(netns)
                                                   : diyc::netcore::Netns::OpenPath(netns);
    if (!ns.ok()) return Fail(std::string(ns.status().message()));
    if (setns(ns->fd(), CLONE_NEWNET) != 0) return Fail(absl::StrCat("enter netns ", netns, ": ", strerror(errno)));
  }

  // Signals are taken by sigwait below, never by a gRPC or worker thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::shared_ptr<grpc::ServerCredentials> tls;
  const std::string tcp = absl::GetFlag(FLAGS_listen);
  if (!tcp.empty()) {
    auto creds = diyc::server::TlsCredentials({.cert = absl::GetFlag(FLAGS_tls_cert),
                                               .key = absl::GetFlag(FLAGS_tls_key),
                                               .client_ca = absl::GetFlag(FLAGS_tls_client_ca)});
    if (!creds.ok()) return Fail(std::string(creds.status().message()));
    tls = *creds;
  }

  if (auto table = diyc::netcore::ValidateNftTableName(absl::GetFlag(FLAGS_nft_table)); !table.ok()) {
    return Fail(std::string(table.message()));
  }
  std::string init_binary = absl::GetFlag(FLAGS_init_binary);
  if (init_binary.empty()) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    std::string exe = n > 0 ? std::string(self, n) : "/usr/local/bin/diycd";
    init_binary = exe.substr(0, exe.rfind('/')) + "/diyc-init";
  }
  // Node resolves container targets through Containers, which needs Node.
  diyc::server::Containers* containers_ptr = nullptr;
  diyc::server::NodeOptions options;
  options.state_dir = absl::GetFlag(FLAGS_state_dir);
  options.firewall = diyc::netcore::MakeNftablesFirewall(absl::GetFlag(FLAGS_nft_table));
  options.containers = [&containers_ptr](const std::string& name) { return containers_ptr->NetnsPath(name); };
  auto node = diyc::server::Node::Open(std::move(options));
  if (!node.ok()) return Fail(std::string(node.status().message()));
  auto containers = diyc::server::Containers::Open(
      {.state_dir = absl::GetFlag(FLAGS_state_dir), .init_binary = init_binary}, node->get());
  if (!containers.ok()) return Fail(std::string(containers.status().message()));
  containers_ptr = containers->get();

  // Bring the kernel in line with the records before accepting any request.
  if (auto loaded = (*containers)->Load(); !loaded.ok()) return Fail(absl::StrCat("load containers: ", loaded.message()));
  auto report = (*node)->Reconcile();
  if (!report.ok()) return Fail(absl::StrCat("reconcile: ", report.status().message()));
  auto container_report = (*containers)->Reconcile();
  if (!container_report.ok()) return Fail(absl::StrCat("reconcile containers: ", container_report.status().message()));
  report->insert(report->end(), container_report->begin(), container_report->end());
  for (const std::string& line : *report) absl::FPrintF(stderr, "diycd: reconcile: %s\n", line);

  auto listener = diyc::server::UnixListener::Open(absl::GetFlag(FLAGS_socket));
  if (!listener.ok()) return Fail(std::string(listener.status().message()));

  diyc::server::NodeService service(**node, **containers);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (tls) builder.AddListeningPort(tcp, tls);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  grpc::ResourceQuota quota("diycd");
  quota.SetMaxThreads(512);
  builder.SetResourceQuota(quota);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) return Fail(absl::StrCat("cannot start the gRPC server", tcp.empty() ? "" : " on " + tcp));
  (*listener)->Serve(server.get());
  absl::FPrintF(stderr, "diycd: serving on unix:%s%s\n", (*listener)->path(),
                tcp.empty() ? "" : " and " + tcp + " (TLS)");

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  absl::FPrintF(stderr, "diycd: %s, shutting down\n", strsignal(signal_number));
  (*listener)->Stop();
  service.Shutdown();
  (*node)->events().Close();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}
