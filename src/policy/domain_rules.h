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
  // parent), or none when no rule covers it. `qname` is a query name as it
  // arrives: any case, trailing dot or not.
  std::optional<datapath::Action> match(std::string_view qname) const;

  size_t size() const { return rules_.size(); }

 private:
  struct Sides {
    bool allow = false;
    bool deny = false;
  };
  std::unordered_map<std::string, Sides> rules_;
};

}  // namespace sebpf::policy
