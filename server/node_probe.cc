// Node: ICMP reachability checks from namespaces.
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/ip.h"
#include "diyc/netcore/ping.h"
#include "diyc/netcore/status_macros.h"
#include "names.h"
#include "node.h"

namespace diyc::server {

using netcore::IpAddress;
using netcore::IpPrefix;
using netcore::Quote;

namespace {

struct ProbeSource {
  std::string label;
  Target target;
  std::string own_ip;  // excluded from its targets
  std::vector<IpAddress> targets;
};

constexpr int kMaxProbeTargets = 4096;

}  // namespace

absl::StatusOr<v1::ProbeResponse> Node::Probe(const v1::ProbeRequest& request) {
  const int count = request.count() == 0 ? 1 : request.count();
  const int timeout_ms = request.timeout_ms() == 0 ? 1000 : request.timeout_ms();
  if (count < 1 || count > 100) return absl::InvalidArgumentError("count must be 1..100");
  if (timeout_ms < 1 || timeout_ms > 10000) return absl::InvalidArgumentError("timeout_ms must be 1..10000");
  if (request.targets_size() > kMaxProbeTargets) return absl::InvalidArgumentError("too many targets");
  std::vector<IpAddress> explicit_targets;
  for (const std::string& t : request.targets()) {
    DIYC_ASSIGN_OR_RETURN(IpAddress address, IpAddress::Parse(t));
    explicit_targets.push_back(address);
  }
  if (!request.network().empty()) DIYC_RETURN_IF_ERROR(ValidateObjectName("network", request.network()));

  // Attachments of the network, when one is named: (target, ip).
  std::vector<std::pair<Target, IpAddress>> members;
  if (!request.network().empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!networks_.count(request.network())) {
      return absl::NotFoundError(absl::StrCat("network ", Quote(request.network()), " not found"));
    }
    for (const auto& [name, state] : attachments_) {
      const v1::Attachment& a = state.record.attachment();
      if (a.network() != request.network() || state.phase != AttachPhase::kReady) continue;
      members.emplace_back(TargetOf(a), IpPrefix::Parse(a.ip())->address());
    }
  }

  std::vector<ProbeSource> sources;
  const Target source = SourceOf(request);
  if (source.kind != Target::Kind::kNone) {
    DIYC_RETURN_IF_ERROR(ValidateTarget(source));
    ProbeSource s{.label = source.Label(), .target = source, .targets = explicit_targets};
    for (const auto& [target, ip] : members) {
      if (!(target == source)) s.targets.push_back(ip);
    }
    sources.push_back(std::move(s));
  } else if (!request.network().empty()) {
    // A matrix: every member pings every other member (and any explicit target).
    for (const auto& [target, ip] : members) {
      ProbeSource s{.label = target.Label(), .target = target, .targets = explicit_targets};
      for (const auto& [other_target, other_ip] : members) {
        if (!(other_target == target)) s.targets.push_back(other_ip);
      }
      sources.push_back(std::move(s));
    }
  } else {
    return absl::InvalidArgumentError("probe needs a source (container, netns_path, netns_name or pid) or a network");
  }
  if (source.kind != Target::Kind::kNone && sources[0].targets.empty()) {
    return absl::InvalidArgumentError("probe has no targets");
  }

  // Sources run in parallel (bounded); each pings its targets in turn.
  const netcore::PingOptions options{.count = count, .timeout = absl::Milliseconds(timeout_ms)};
  std::vector<std::vector<v1::ProbeResult>> per_source(sources.size());
  std::vector<absl::Status> errors(sources.size());
  auto run = [&](size_t i) {
    const ProbeSource& s = sources[i];
    absl::StatusOr<netcore::Netns> ns = OpenTarget(s.target, options_.containers);
    if (!ns.ok()) {
      errors[i] = ns.status();
      return;
    }
    for (const IpAddress& target : s.targets) {
      v1::ProbeResult result;
      result.set_source(s.label);
      result.set_target(target.ToString());
      absl::StatusOr<netcore::PingResult> ping = netcore::Ping(&*ns, target, options);
      if (!ping.ok()) {
        errors[i] = ping.status();
        return;
      }
      result.set_sent(ping->sent);
      result.set_received(ping->received);
      for (double rtt : ping->rtts_ms) result.add_rtts_ms(rtt);
      per_source[i].push_back(std::move(result));
    }
  };
  constexpr size_t kParallel = 16;
  for (size_t start = 0; start < sources.size(); start += kParallel) {
    std::vector<std::thread> workers;
    for (size_t i = start; i < std::min(sources.size(), start + kParallel); ++i) workers.emplace_back(run, i);
    for (std::thread& w : workers) w.join();
  }
  v1::ProbeResponse response;
  for (size_t i = 0; i < sources.size(); ++i) {
    if (!errors[i].ok()) return netcore::Annotate(errors[i], absl::StrCat("probe from ", sources[i].label));
    for (v1::ProbeResult& r : per_source[i]) *response.add_results() = std::move(r);
  }
  return response;
}

}  // namespace diyc::server
