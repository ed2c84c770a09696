// diyc-cni: a CNI plugin (spec 0.3.0 to 1.1.0) that attaches containers to
// diyc networks through a running diycd. See cni/README.md.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>

#include "absl/strings/str_join.h"
#include "cni_commands.h"
#include "cni_config.h"
#include "cni_error.h"

namespace {

using diyc::cni::CniEnv;
using diyc::cni::NetConf;

absl::StatusOr<std::string> ReadStdin() {
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n == 0) return text;
    if (n < 0) {
      if (errno == EINTR) continue;
      return diyc::cni::CniError(diyc::cni::kIoFailure, std::string("reading stdin: ") + std::strerror(errno));
    }
    text.append(buf, static_cast<size_t>(n));
  }
}

absl::StatusOr<std::string> Dispatch(const CniEnv& env, const NetConf& conf) {
  if (env.command == "ADD") return diyc::cni::Add(env, conf);
  if (env.command == "DEL") return diyc::cni::Del(env, conf);
  if (env.command == "CHECK") return diyc::cni::Check(env, conf);
  if (env.command == "GC") return diyc::cni::Gc(env, conf);
  return diyc::cni::Status(env, conf);  // ReadEnv admitted nothing else
}

// The version errors are reported in: the configuration's when it is one
// we speak, else the latest.
std::string ErrorVersion(const std::string& stdin_text) {
  std::string asked = diyc::cni::ParseVersionRequest(stdin_text);
  for (const std::string& v : diyc::cni::SupportedVersions()) {
    if (v == asked) return asked;
  }
  return diyc::cni::kLatestVersion;
}

int Fail(const absl::Status& status, const std::string& command, const std::string& stdin_text) {
  std::cout << diyc::cni::ErrorJson(status, command, ErrorVersion(stdin_text)) << std::endl;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && (std::strcmp(argv[1], "--version") == 0 || std::strcmp(argv[1], "version") == 0)) {
    std::cout << "diyc-cni " << DIYC_VERSION << " (CNI protocol "
              << absl::StrJoin(diyc::cni::SupportedVersions(), ", ") << ")" << std::endl;
    return 0;
  }
  std::string command = getenv("CNI_COMMAND") ? getenv("CNI_COMMAND") : "";
  absl::StatusOr<std::string> text = ReadStdin();
  if (!text.ok()) return Fail(text.status(), command, "");
  absl::StatusOr<CniEnv> env = diyc::cni::ReadEnv();
  if (!env.ok()) return Fail(env.status(), command, *text);
  if (env->command == "VERSION") {
    std::cout << diyc::cni::VersionJson(diyc::cni::ParseVersionRequest(*text)) << std::endl;
    return 0;
  }
  absl::StatusOr<NetConf> conf = diyc::cni::ParseNetConf(*text);
  if (!conf.ok()) return Fail(conf.status(), command, *text);
  absl::StatusOr<std::string> out = Dispatch(*env, *conf);
  if (!out.ok()) return Fail(out.status(), command, *text);
  if (!out->empty()) std::cout << *out << std::endl;
  return 0;
}
