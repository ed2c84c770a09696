// The drift check: compares the kernel's text listing of diyc's table with
// the ruleset model, piece by piece, and names the network each difference
// belongs to.
//
// Text rather than JSON: the model holds every rule exactly as `nft list`
// prints it, so comparing normalised lines needs no JSON library and no
// mirror of nft's expression tree. The kernel test checks that a fresh
// Apply() lists back exactly as modelled.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "diyc/netcore/errors.h"
#include "diyc/netcore/firewall.h"
#include "nft_ruleset.h"

namespace diyc::netcore {
namespace {

// A set, chain or any other object of the table, with its body as logical lines.
struct Block {
  std::string kind;  // "set", "chain", "map", "ct helper", ...
  std::string name;
  std::vector<std::string> lines;
};

struct Listing {
  bool has_table = false;
  std::vector<std::string> table_lines;  // the table's own attributes (flags, comment)
  std::vector<Block> blocks;
};

// A listed line for a message: escaped like Quote(), but long enough for a rule.
std::string Shown(absl::string_view text) {
  std::string shown = "'";
  for (unsigned char c : text.substr(0, 200)) {
    if (c < ' ' || c >= 0x7f || c == '\'' || c == '\\') {
      absl::StrAppend(&shown, "\\x", absl::Hex(c, absl::kZeroPad2));
    } else {
      shown.push_back(static_cast<char>(c));
    }
  }
  if (text.size() > 200) shown += "...";
  return shown + "'";
}

// '{' minus '}' outside double quotes (nft strings have no escapes).
int BraceBalance(absl::string_view line) {
  int balance = 0;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') quoted = !quoted;
    if (quoted) continue;
    if (c == '{') ++balance;
    if (c == '}') --balance;
  }
  return balance;
}

// "chain forward {", "set bridges {", "ct helper ftp {": opens an object, as
// opposed to a statement nft wrapped over lines ("elements = { "a",").
bool IsBlockOpener(absl::string_view line) {
  if (!absl::EndsWith(line, "{")) return false;
  const absl::string_view first = line.substr(0, line.find(' '));
  for (absl::string_view kind : {"table", "chain", "set", "map", "flowtable", "counter", "quota", "limit", "ct",
                                 "secmark", "synproxy"}) {
    if (first == kind) return true;
  }
  return false;
}

// Trimmed, non-empty lines, with statements nft wrapped over several lines
// (long element lists) joined back into one.
std::vector<std::string> LogicalLines(absl::string_view text) {
  std::vector<std::string> lines;
  std::string pending;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    const absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty()) continue;
    absl::StrAppend(&pending, pending.empty() ? "" : " ", line);
    if (BraceBalance(pending) > 0 && !IsBlockOpener(pending)) continue;
    lines.push_back(std::move(pending));
    pending.clear();
  }
  if (!pending.empty()) lines.push_back(std::move(pending));
  return lines;
}

Listing ParseListing(absl::string_view text, absl::string_view table) {
  const std::string table_opener = absl::StrCat("table inet ", table, " {");
  Listing listing;
  int depth = 0;   // 1 inside the table, 2 inside one of its objects
  int block = -1;  // index of the object being read, -1 for the table itself
  for (std::string& line : LogicalLines(text)) {
    if (line == "}") {
      if (depth > 0) --depth;
      if (depth <= 1) block = -1;
      continue;
    }
    if (depth == 0) {
      if (line == table_opener) {
        listing.has_table = true;
        depth = 1;
      }
      continue;
    }
    if (depth == 1 && IsBlockOpener(line)) {
      std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
      words.pop_back();  // "{"
      Block object;
      if (!words.empty()) {
        object.name = words.back();
        words.pop_back();
      }
      object.kind = absl::StrJoin(words, " ");
      listing.blocks.push_back(std::move(object));
      block = static_cast<int>(listing.blocks.size()) - 1;
      depth = 2;
      continue;
    }
    if (IsBlockOpener(line)) ++depth;  // deeper nesting: kept as a line, balanced by its "}"
    if (block >= 0) {
      listing.blocks[block].lines.push_back(std::move(line));
    } else {
      listing.table_lines.push_back(std::move(line));
    }
  }
  return listing;
}

const Block* FindBlock(const Listing& listing, absl::string_view kind, absl::string_view name) {
  for (const Block& block : listing.blocks) {
    if (block.kind == kind && block.name == name) return &block;
  }
  return nullptr;
}

// The elements of `elements = { "a", "b" }`, unquoted.
std::vector<std::string> ParseElements(absl::string_view line) {
  std::vector<std::string> elements;
  const size_t open = line.find('{');
  const size_t close = line.rfind('}');
  if (open == absl::string_view::npos || close == absl::string_view::npos || close < open) return elements;
  const absl::string_view inside = line.substr(open + 1, close - open - 1);
  for (absl::string_view element : absl::StrSplit(inside, ',', absl::SkipWhitespace())) {
    element = absl::StripAsciiWhitespace(element);
    if (element.size() >= 2 && element.front() == '"' && element.back() == '"') {
      element = element.substr(1, element.size() - 2);
    }
    elements.emplace_back(element);
  }
  return elements;
}

// One named set against the elements the model wants in it. `what`
// describes an element for the missing-element line ("bridge", "VXLAN peer").
void DiffSet(absl::string_view name, absl::string_view type, absl::string_view what,
             const std::vector<nft::SetElement>& want, const Block* got, std::vector<std::string>& drift) {
  const std::string set = absl::StrCat("set ", name);
  if (got == nullptr) {
    drift.push_back(absl::StrCat(set, " is missing"));
    return;
  }
  const std::string want_type = absl::StrCat("type ", type);
  bool has_type = false;
  std::vector<std::string> elements;
  for (const std::string& line : got->lines) {
    if (line == want_type) {
      has_type = true;
    } else if (absl::StartsWith(line, "elements = ")) {
      elements = ParseElements(line);
    } else {
      drift.push_back(absl::StrCat(set, " has unexpected ", Shown(line)));
    }
  }
  if (!has_type) drift.push_back(absl::StrCat(set, " is not of ", Shown(want_type)));
  for (const nft::SetElement& element : want) {
    auto it = std::find(elements.begin(), elements.end(), element.value);
    if (it == elements.end()) {
      drift.push_back(absl::StrCat(what, " ", Quote(element.value), " (network ", Quote(element.network),
                                   ") is missing from ", set));
    } else {
      elements.erase(it);
    }
  }
  for (const std::string& extra : elements) {
    drift.push_back(absl::StrCat(set, " has unexpected element ", Shown(extra)));
  }
}

// " (network 'a')" from a rule's diyc comment, or "" for a rule that has none.
std::string RuleOwner(absl::string_view rule) {
  const std::string marker = absl::StrCat("comment \"", nft::NetworkComment(""));
  const size_t at = rule.find(marker);
  if (at == absl::string_view::npos) return "";
  absl::string_view name = rule.substr(at + marker.size());
  name = name.substr(0, name.find('"'));
  return absl::StrCat(" (network ", Quote(name), ")");
}

void DiffChain(const nft::ChainSpec& spec, const nft::Ruleset& want, const Block* got,
               std::vector<std::string>& drift) {
  const std::string chain = absl::StrCat("chain ", spec.name);
  std::vector<const nft::Rule*> expected;
  for (const nft::Rule& rule : want.rules) {
    if (rule.chain == spec.name) expected.push_back(&rule);
  }
  if (got == nullptr) {
    if (!(spec.only_with_rules && expected.empty())) drift.push_back(absl::StrCat(chain, " is missing"));
    return;
  }
  std::vector<bool> matched(expected.size(), false);
  bool has_declaration = false;
  for (const std::string& line : got->lines) {
    if (absl::StartsWith(line, "type ")) {
      has_declaration = true;
      if (line != spec.declaration) {
        drift.push_back(absl::StrCat(chain, " is declared ", Shown(line), ", want ", Shown(spec.declaration)));
      }
      continue;
    }
    bool duplicate = false;
    bool found = false;
    for (size_t i = 0; i < expected.size() && !found; ++i) {
      if (expected[i]->text != line) continue;
      if (matched[i]) {
        duplicate = true;
      } else {
        matched[i] = true;
        found = true;
      }
    }
    if (!found) {
      drift.push_back(absl::StrCat(duplicate ? "duplicate" : "unexpected", " rule in ", chain, RuleOwner(line), ": ",
                                   Shown(line)));
    }
  }
  if (!has_declaration) {
    drift.push_back(absl::StrCat(chain, " has no hook (want ", Shown(spec.declaration), ")"));
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    if (!matched[i]) drift.push_back(absl::StrCat(expected[i]->description, " is missing"));
  }
}

}  // namespace

std::vector<std::string> DiffNftTable(absl::string_view table, const std::vector<FirewallNetwork>& networks,
                                      const std::optional<std::string>& listing) {
  const std::string table_label = absl::StrCat("table inet ", table);
  if (!listing) {
    if (networks.empty()) return {};
    return {absl::StrCat(table_label, " is missing")};
  }
  if (networks.empty()) return {absl::StrCat(table_label, " exists although there are no diyc networks")};

  const Listing got = ParseListing(*listing, table);
  if (!got.has_table) return {absl::StrCat(table_label, " is missing from its own listing")};
  std::vector<std::string> drift;
  for (const std::string& line : got.table_lines) {
    drift.push_back(absl::StrCat(table_label, " has unexpected ", Shown(line)));
  }
  const nft::Ruleset want = nft::BuildRuleset(networks);
  DiffSet(nft::kBridgeSet, nft::kBridgeSetType, "bridge", want.bridges, FindBlock(got, "set", nft::kBridgeSet), drift);
  for (const nft::PeerSet& set : want.peer_sets) {
    const std::string name = nft::PeerSetName(set.port);
    DiffSet(name, "ipv4_addr", "VXLAN peer", set.peers, FindBlock(got, "set", name), drift);
  }
  for (const nft::ChainSpec& spec : nft::kChains) DiffChain(spec, want, FindBlock(got, "chain", spec.name), drift);
  auto wanted_set = [&](absl::string_view name) {
    return name == nft::kBridgeSet || std::any_of(want.peer_sets.begin(), want.peer_sets.end(), [&](const nft::PeerSet& s) {
             return nft::PeerSetName(s.port) == name;
           });
  };
  auto wanted_chain = [&](const Block& block) {
    return std::any_of(std::begin(nft::kChains), std::end(nft::kChains), [&](const nft::ChainSpec& spec) {
      return block.name == spec.name &&
             (!spec.only_with_rules || std::any_of(want.rules.begin(), want.rules.end(), [&](const nft::Rule& r) {
               return r.chain == spec.name;
             }));
    });
  };
  for (const Block& block : got.blocks) {
    const bool expected = (block.kind == "set" && wanted_set(block.name)) || (block.kind == "chain" && wanted_chain(block));
    if (!expected) {
      drift.push_back(absl::StrCat("unexpected ", block.kind, " ", Shown(block.name), " in ", table_label));
    }
  }
  return drift;
}

}  // namespace diyc::netcore
