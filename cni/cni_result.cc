#include "cni_result.h"

#include "absl/strings/str_cat.h"
#include "cni_config.h"
#include "cni_error.h"

namespace diyc::cni {

using nlohmann::json;

json BuildResult(const ResultInput& in, const std::string& cni_version) {
  const v1::Attachment& a = *in.attachment;
  const bool with_ip_version = !VersionAtLeast(cni_version, "1.0.0");
  json host_if = {{"name", a.host_ifname()}};
  if (!in.host_mac.empty()) host_if["mac"] = in.host_mac;
  json result = {
      {"cniVersion", cni_version},
      {"interfaces", json::array({host_if, {{"name", a.ifname()}, {"mac", a.mac()}, {"sandbox", in.netns}}})},
      {"ips", json::array()},
      {"routes", json::array()},
      {"dns", in.dns.is_object() ? in.dns : json::object()},
  };
  auto add_ip = [&](const std::string& address, const std::string& gateway, const char* family,
                    const char* default_dst) {
    if (address.empty()) return;
    json ip = {{"address", address}, {"interface", 1}};
    if (!gateway.empty()) ip["gateway"] = gateway;
    if (with_ip_version) ip["version"] = family;
    result["ips"].push_back(ip);
    if (!gateway.empty()) result["routes"].push_back({{"dst", default_dst}, {"gw", gateway}});
  };
  add_ip(a.ip(), a.gateway(), "4", "0.0.0.0/0");
  add_ip(a.ip6(), a.gateway6(), "6", "::/0");
  return result;
}

absl::StatusOr<PrevResult> ParsePrevResult(const json& prev, const std::string& ifname) {
  auto bad = [](absl::string_view why) {
    return CniError(kInvalidNetworkConfig, absl::StrCat("prevResult: ", why));
  };
  if (!prev.is_object()) return bad("missing: CHECK needs the result of ADD");
  if (!prev.contains("interfaces") || !prev["interfaces"].is_array()) return bad("no interfaces");
  const json& interfaces = prev["interfaces"];
  int index = -1;
  for (size_t i = 0; i < interfaces.size(); ++i) {
    const json& iface = interfaces[i];
    if (iface.is_object() && iface.value("name", "") == ifname && !iface.value("sandbox", "").empty()) {
      index = static_cast<int>(i);
      break;
    }
  }
  if (index < 0) return bad(absl::StrCat("no interface ", ifname, " inside a sandbox"));
  PrevResult parsed;
  parsed.mac = interfaces[index].value("mac", "");
  if (prev.contains("ips") && prev["ips"].is_array()) {
    for (const json& ip : prev["ips"]) {
      if (!ip.is_object() || !ip.contains("address") || !ip["address"].is_string()) return bad("an ip without address");
      if (ip.contains("interface") && ip["interface"].is_number_integer() && ip["interface"].get<int>() != index) {
        continue;
      }
      parsed.addresses.push_back(ip["address"].get<std::string>());
      if (ip.contains("gateway") && ip["gateway"].is_string()) parsed.gateways.push_back(ip["gateway"].get<std::string>());
    }
  }
  if (parsed.addresses.empty()) return bad(absl::StrCat("no address on ", ifname));
  return parsed;
}

}  // namespace diyc::cni
