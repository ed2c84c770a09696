// The plugin's protocol handling without diycd or the kernel: environment,
// CNI_ARGS, configuration, results per version and error codes.
#include <cstdlib>

#include "cni_config.h"
#include "cni_error.h"
#include "cni_result.h"
#include "gtest/gtest.h"

namespace diyc::cni {
namespace {

using nlohmann::json;

int CodeOf(const absl::Status& status, const char* command = "ADD") { return MapToCniCode(status, command); }

TEST(CniVersion, ComparesNumerically) {
  EXPECT_TRUE(VersionAtLeast("1.1.0", "1.0.0"));
  EXPECT_TRUE(VersionAtLeast("0.4.0", "0.4.0"));
  EXPECT_FALSE(VersionAtLeast("0.3.1", "0.4.0"));
  EXPECT_TRUE(VersionAtLeast("0.10.0", "0.4.0"));
}

TEST(CniArgs, KnownKeysAndIgnoreUnknown) {
  absl::StatusOr<CniArgs> args = ParseCniArgs("IP=10.0.0.5;MAC=02:00:00:00:00:01");
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->ip, "10.0.0.5");
  EXPECT_EQ(args->mac, "02:00:00:00:00:01");
  EXPECT_EQ(CodeOf(ParseCniArgs("K8S_POD_NAME=x").status()), kInvalidEnvironment);
  EXPECT_TRUE(ParseCniArgs("K8S_POD_NAME=x;IgnoreUnknown=1").ok());
  EXPECT_TRUE(ParseCniArgs("IgnoreUnknown=true;K8S_POD_NAME=x;").ok());
  EXPECT_EQ(CodeOf(ParseCniArgs("justakey").status()), kInvalidEnvironment);
  EXPECT_TRUE(ParseCniArgs("").ok());
}

TEST(CniEnv, EachCommandGetsWhatItNeeds) {
  setenv("CNI_COMMAND", "ADD", 1);
  setenv("CNI_CONTAINERID", "abc-1.2_3", 1);
  setenv("CNI_IFNAME", "eth0", 1);
  setenv("CNI_NETNS", "/run/netns/x", 1);
  EXPECT_TRUE(ReadEnv().ok());
  setenv("CNI_CONTAINERID", "-abc", 1);
  EXPECT_EQ(CodeOf(ReadEnv().status()), kInvalidEnvironment);
  setenv("CNI_CONTAINERID", "abc", 1);
  setenv("CNI_IFNAME", "a/b", 1);
  EXPECT_EQ(CodeOf(ReadEnv().status()), kInvalidEnvironment);
  setenv("CNI_IFNAME", "eth0", 1);
  unsetenv("CNI_NETNS");
  EXPECT_EQ(CodeOf(ReadEnv().status()), kInvalidEnvironment);
  setenv("CNI_COMMAND", "DEL", 1);  // DEL may come without a namespace
  EXPECT_TRUE(ReadEnv().ok());
  setenv("CNI_COMMAND", "FROB", 1);
  EXPECT_EQ(CodeOf(ReadEnv().status()), kInvalidEnvironment);
  // libcni asks VERSION with placeholders in the variables VERSION ignores.
  setenv("CNI_COMMAND", "VERSION", 1);
  setenv("CNI_NETNS", "dummy", 1);
  setenv("CNI_IFNAME", "dummy", 1);
  setenv("CNI_CONTAINERID", "", 1);
  EXPECT_TRUE(ReadEnv().ok());
  setenv("CNI_COMMAND", "ADD", 1);
  setenv("CNI_CONTAINERID", "abc", 1);
  EXPECT_EQ(CodeOf(ReadEnv().status()), kInvalidEnvironment);  // ADD needs a real path
  for (const char* name : {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"}) unsetenv(name);
}

TEST(NetConf, DefaultsAndFields) {
  absl::StatusOr<NetConf> conf = ParseNetConf(
      R"({"cniVersion":"1.0.0","name":"n","type":"diyc","subnet":"10.1.0.0/24","mtu":1400,"nat":false,
          "dns":{"nameservers":["10.0.0.53"]},"runtimeConfig":{"ips":["10.1.0.9/24"],"mac":"02:00:00:00:00:09"},
          "prevResult":{"cniVersion":"1.0.0"},"cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}]})");
  ASSERT_TRUE(conf.ok()) << conf.status();
  EXPECT_EQ(conf->network, "n");
  EXPECT_EQ(conf->socket, "/run/diyc/diyc.sock");
  EXPECT_EQ(conf->timeout_seconds, 30);
  EXPECT_EQ(conf->mtu, 1400u);
  EXPECT_EQ(conf->nat, false);
  EXPECT_EQ(conf->runtime_ips, std::vector<std::string>{"10.1.0.9/24"});
  EXPECT_EQ(conf->runtime_mac, "02:00:00:00:00:09");
  ASSERT_TRUE(conf->valid_attachments.has_value());
  EXPECT_EQ(conf->valid_attachments->at(0).container_id, "c");
  EXPECT_TRUE(conf->dns.is_object());
}

TEST(NetConf, ErrorsCarryTheSpecCodes) {
  EXPECT_EQ(CodeOf(ParseNetConf("{nope").status()), kDecodeFailure);
  EXPECT_EQ(CodeOf(ParseNetConf("[]").status()), kDecodeFailure);
  EXPECT_EQ(CodeOf(ParseNetConf(R"({"cniVersion":"0.2.0","name":"n"})").status()), kIncompatibleVersion);
  EXPECT_EQ(CodeOf(ParseNetConf(R"({"name":"n"})").status()), kInvalidNetworkConfig);
  EXPECT_EQ(CodeOf(ParseNetConf(R"({"cniVersion":"1.0.0"})").status()), kInvalidNetworkConfig);
  EXPECT_EQ(CodeOf(ParseNetConf(R"({"cniVersion":"1.0.0","name":"n","mtu":"x"})").status()), kInvalidNetworkConfig);
  EXPECT_EQ(CodeOf(ParseNetConf(R"({"cniVersion":"1.0.0","name":"n","socket":"rel"})").status()),
            kInvalidNetworkConfig);
  EXPECT_EQ(CodeOf(ParseNetConf(R"({"cniVersion":"1.0.0","name":"n","cni.dev/valid-attachments":[1]})").status()),
            kInvalidNetworkConfig);
}

TEST(ErrorMapping, GrpcCodesPerCommand) {
  EXPECT_EQ(CodeOf(absl::UnavailableError("x"), "ADD"), kTryAgainLater);
  EXPECT_EQ(CodeOf(absl::DeadlineExceededError("x"), "DEL"), kTryAgainLater);
  EXPECT_EQ(CodeOf(absl::UnavailableError("x"), "STATUS"), kNotAvailable);
  EXPECT_EQ(CodeOf(absl::InvalidArgumentError("x")), kInvalidNetworkConfig);
  EXPECT_EQ(CodeOf(absl::AlreadyExistsError("x")), kAlreadyExists);
  EXPECT_EQ(CodeOf(absl::ResourceExhaustedError("x")), kExhausted);
  EXPECT_EQ(CodeOf(absl::InternalError("x")), kDiycdFailed);
  json error = json::parse(ErrorJson(CniError(kDrift, "drifted", "why"), "CHECK", "1.0.0"));
  EXPECT_EQ(error, json({{"cniVersion", "1.0.0"}, {"code", 110}, {"msg", "drifted"}, {"details", "why"}}));
}

v1::Attachment SampleAttachment() {
  v1::Attachment a;
  a.set_host_ifname("dv0123456789abc");
  a.set_ifname("eth0");
  a.set_mac("02:00:00:00:00:02");
  a.set_ip("10.1.0.2/24");
  a.set_gateway("10.1.0.1");
  return a;
}

TEST(Result, ShapePerVersion) {
  v1::Attachment a = SampleAttachment();
  ResultInput input{.attachment = &a, .host_mac = "0a:00:00:00:00:01", .netns = "/run/netns/x", .dns = nullptr};
  json modern = BuildResult(input, "1.1.0");
  EXPECT_EQ(modern["interfaces"][1], json({{"name", "eth0"}, {"mac", "02:00:00:00:00:02"}, {"sandbox", "/run/netns/x"}}));
  EXPECT_EQ(modern["ips"][0], json({{"address", "10.1.0.2/24"}, {"gateway", "10.1.0.1"}, {"interface", 1}}));
  EXPECT_EQ(modern["routes"][0], json({{"dst", "0.0.0.0/0"}, {"gw", "10.1.0.1"}}));
  EXPECT_EQ(modern["dns"], json::object());
  json old = BuildResult(input, "0.4.0");
  EXPECT_EQ(old["ips"][0]["version"], "4");
  a.set_ip6("fd00::2/64");
  a.set_gateway6("fd00::1");
  json dual = BuildResult(input, "0.3.1");
  EXPECT_EQ(dual["ips"][1]["version"], "6");
  EXPECT_EQ(dual["routes"][1]["dst"], "::/0");
}

TEST(Result, PrevResultRoundTrips) {
  v1::Attachment a = SampleAttachment();
  json result = BuildResult({.attachment = &a, .host_mac = "", .netns = "/run/netns/x", .dns = nullptr}, "1.0.0");
  absl::StatusOr<PrevResult> prev = ParsePrevResult(result, "eth0");
  ASSERT_TRUE(prev.ok()) << prev.status();
  EXPECT_EQ(prev->mac, "02:00:00:00:00:02");
  EXPECT_EQ(prev->addresses, std::vector<std::string>{"10.1.0.2/24"});
  EXPECT_EQ(prev->gateways, std::vector<std::string>{"10.1.0.1"});
  EXPECT_EQ(CodeOf(ParsePrevResult(result, "net1").status()), kInvalidNetworkConfig);
  EXPECT_EQ(CodeOf(ParsePrevResult(json(), "eth0").status()), kInvalidNetworkConfig);
}

}  // namespace
}  // namespace diyc::cni
