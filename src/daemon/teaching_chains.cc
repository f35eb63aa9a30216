#include "daemon/teaching_chains.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"

namespace sebpf::daemon {

uint64_t TeachingChains::add(std::string_view chain) {
  const uint64_t hash =
      absl::Hash<absl::string_view>{}(absl::string_view(chain.data(), chain.size()));
  chains_.try_emplace(hash, chain);
  return hash;
}

std::vector<net::IpAddress> TeachingChains::refused(
    const LearnedHosts& hosts,
    const std::function<bool(std::span<const std::string_view> names)>& refused) const {
  // Each chain judged once, however many hosts it taught.
  absl::flat_hash_set<uint64_t> chain_refused;
  for (const auto& [hash, chain] : chains_) {
    if (refused(dns::decode_chain(chain))) chain_refused.insert(hash);
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

void TeachingChains::compact_if_sparse(const LearnedHosts& hosts) {
  if (chains_.size() <= 2 * hosts.size() + 64) return;
  absl::flat_hash_set<uint64_t> used;
  for (const auto& [address, host] : hosts)
    used.insert(host.taught_by.begin(), host.taught_by.end());
  absl::erase_if(chains_, [&](const auto& chain) { return !used.contains(chain.first); });
}

void TeachingChains::for_each_chain(
    const std::function<void(uint64_t id, std::string_view chain)>& visit) const {
  for (const auto& [hash, chain] : chains_) visit(hash, chain);
}

}  // namespace sebpf::daemon
