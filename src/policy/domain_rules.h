// Domain rules of one attachment: allow or deny a name and all its
// subdomains. The matching rule with the most labels wins; allow and deny
// on the same name means deny. Used by the DNS endpoint to decide a query.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/result.h"
#include "datapath/types.h"

namespace sebpf::policy {

class DomainRules {
 public:
  // `name` is normalized (see normalize_domain); errors on an invalid one.
  Status add(std::string_view name, datapath::Action action);
  // Errc::kNotFound when there was no such rule.
  Status remove(std::string_view name, datapath::Action action);

  // The action of the most specific rule covering `qname` (itself or a
  // parent), or none when no rule covers it. `qname` is a query name in
  // presentation form as the DNS parser writes it (a dot inside a label
  // escaped as \046): any case, trailing dot or not. It is not validated:
  // a name with labels no rule could hold (escaped bytes, '*', over 253
  // characters) is still a subdomain of its parents, and their rules decide.
  // Allocates nothing: it runs for every query.
  std::optional<datapath::Action> match(std::string_view qname) const;

  size_t size() const { return rules_.size(); }

 private:
  struct Sides {
    bool allow = false;
    bool deny = false;
  };
  // ASCII case-insensitive, and looked up by string_view (no copy of the
  // name per lookup). Stored names are already lowercase.
  struct FoldedHash {
    using is_transparent = void;
    size_t operator()(std::string_view name) const noexcept;
  };
  struct FoldedEqual {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const noexcept;
  };
  std::unordered_map<std::string, Sides, FoldedHash, FoldedEqual> rules_;
};

}  // namespace sebpf::policy
