#include "daemon/teaching_chains.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"

namespace sebpf::daemon {

namespace {

uint64_t hash_of(std::string_view chain) {
  return absl::Hash<absl::string_view>{}(absl::string_view(chain.data(), chain.size()));
}

}  // namespace

uint64_t TeachingChains::add(std::string_view chain) {
  const uint64_t hash = hash_of(chain);
  if (const auto [it, added] = chains_.try_emplace(hash, Span{text_.size(), 0}); added) {
    text_.append(chain);
    it->second.size = static_cast<uint32_t>(chain.size());
  }
  return hash;
}

std::vector<net::IpAddress> TeachingChains::refused(
    const LearnedHosts& hosts,
    const std::function<bool(std::span<const std::string_view> names)>& refused) const {
  // Each chain judged once, however many hosts it taught.
  absl::flat_hash_set<uint64_t> chain_refused;
  for (const auto& [hash, span] : chains_) {
    if (refused(dns::decode_chain(text_of(span)))) chain_refused.insert(hash);
  }
  std::vector<net::IpAddress> refused_hosts;
  if (chain_refused.empty()) return refused_hosts;
  for (const auto& [address, host] : hosts) {
    if (!host.taught_by.empty() &&
        std::all_of(host.taught_by.begin(), host.taught_by.end(),
                    [&](uint64_t hash) { return chain_refused.contains(hash); })) {
      refused_hosts.push_back(address);
    }
  }
  return refused_hosts;
}

bool TeachingChains::knows(std::string_view chain) const {
  return chains_.contains(hash_of(chain));
}

void TeachingChains::compact_if_sparse(const LearnedHosts& hosts) {
  if (chains_.size() > 2 * hosts.size() + 64) compact(hosts);
}

void TeachingChains::compact(const LearnedHosts& hosts) {
  absl::flat_hash_set<uint64_t> used;
  for (const auto& [address, host] : hosts)
    used.insert(host.taught_by.begin(), host.taught_by.end());
  absl::erase_if(chains_, [&](const auto& chain) { return !used.contains(chain.first); });
  std::string kept;
  for (auto& [hash, span] : chains_) {
    const std::string_view text = text_of(span);
    span.offset = kept.size();
    kept.append(text);
  }
  text_ = std::move(kept);
}

void TeachingChains::for_each_chain(
    const std::function<void(uint64_t id, std::string_view chain)>& visit) const {
  for (const auto& [hash, span] : chains_) visit(hash, text_of(span));
}

}  // namespace sebpf::daemon
