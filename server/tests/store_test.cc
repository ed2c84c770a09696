#include "store.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace diyc::server {
namespace {

class StoreTest : public testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/diyc-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    RemoveTree(dir_);
  }
  static void RemoveTree(const std::string& path) {
    for (const char* sub : {"/networks", "/attachments", "/quarantine"}) {
      std::string d = path + sub;
      if (DIR* dir = opendir(d.c_str())) {
        while (dirent* e = readdir(dir)) {
          if (e->d_name[0] != '.' || std::string(e->d_name).size() > 2) unlink((d + "/" + e->d_name).c_str());
        }
        closedir(dir);
      }
      rmdir(d.c_str());
    }
    unlink((path + "/lock").c_str());
    rmdir(path.c_str());
  }
  std::string dir_;
};

v1::NetworkRecord Network(const std::string& name) {
  v1::NetworkRecord r;
  r.mutable_network()->set_name(name);
  r.mutable_network()->set_subnet("10.1.0.0/24");
  r.set_phase(v1::NetworkRecord::READY);
  return r;
}

TEST_F(StoreTest, RoundTripsRecords) {
  auto store = StateStore::Open(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->PutNetwork(Network("a")).ok());
  ASSERT_TRUE((*store)->PutNetwork(Network("b")).ok());
  v1::AttachmentRecord att;
  att.mutable_attachment()->set_host_ifname("dv0000000000001");
  att.mutable_attachment()->set_network("a");
  att.set_netns_ino(42);
  ASSERT_TRUE((*store)->PutAttachment(att).ok());
  ASSERT_TRUE((*store)->DeleteNetwork("b").ok());
  ASSERT_TRUE((*store)->DeleteNetwork("b").ok());  // already gone is fine

  auto contents = (*store)->Load();
  ASSERT_TRUE(contents.ok());
  ASSERT_EQ(contents->networks.size(), 1u);
  EXPECT_EQ(contents->networks[0].network().name(), "a");
  ASSERT_EQ(contents->attachments.size(), 1u);
  EXPECT_EQ(contents->attachments[0].netns_ino(), 42u);
  struct stat st;
  ASSERT_EQ(stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(StoreTest, SecondOpenIsRefused) {
  auto first = StateStore::Open(dir_);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(StateStore::Open(dir_).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(StoreTest, CorruptRecordIsQuarantinedOthersLoad) {
  auto store = StateStore::Open(dir_);
  ASSERT_TRUE((*store)->PutNetwork(Network("good")).ok());
  std::ofstream(dir_ + "/networks/bad.json") << "{\"network\": {\"name\": \"bad\", ";  // truncated
  std::ofstream(dir_ + "/networks/liar.json") << "{\"network\": {\"name\": \"other\"}}";
  std::ofstream(dir_ + "/networks/.x.json.tmp1-1") << "partial";
  auto contents = (*store)->Load();
  ASSERT_TRUE(contents.ok());
  ASSERT_EQ(contents->networks.size(), 1u);
  EXPECT_EQ(contents->networks[0].network().name(), "good");
  EXPECT_EQ(contents->quarantined.size(), 2u);
  EXPECT_EQ(access((dir_ + "/networks/.x.json.tmp1-1").c_str(), F_OK), -1);
  EXPECT_EQ(access((dir_ + "/quarantine/networks-bad.json").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace diyc::server
