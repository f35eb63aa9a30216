#include "daemon/teaching_chains.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"

namespace sebpf::daemon {

void TeachingChains::record(const net::IpAddress& host, std::string_view chain) {
  const uint64_t hash =
      absl::Hash<absl::string_view>{}(absl::string_view(chain.data(), chain.size()));
  chains_.try_emplace(hash, chain);
  auto& hashes = by_host_[host];
  if (std::find(hashes.begin(), hashes.end(), hash) != hashes.end()) return;
  if (hashes.size() == kMaxChainsPerHost) hashes.erase(hashes.begin());
  hashes.push_back(hash);
}

void TeachingChains::forget(const net::IpAddress& host) { by_host_.erase(host); }

std::vector<net::IpAddress> TeachingChains::refused(
    const std::function<bool(std::span<const std::string_view> names)>& refused) const {
  // Each chain judged once, however many hosts it taught.
  absl::flat_hash_set<uint64_t> chain_refused;
  for (const auto& [hash, chain] : chains_) {
    if (refused(dns::decode_chain(chain))) chain_refused.insert(hash);
  }
  std::vector<net::IpAddress> hosts;
  if (chain_refused.empty()) return hosts;
  for (const auto& [host, hashes] : by_host_) {
    if (std::all_of(hashes.begin(), hashes.end(),
                    [&](uint64_t hash) { return chain_refused.contains(hash); })) {
      hosts.push_back(host);
    }
  }
  return hosts;
}

void TeachingChains::for_each_chain(
    const std::function<void(uint64_t id, std::string_view chain)>& visit) const {
  for (const auto& [hash, chain] : chains_) visit(hash, chain);
}

void TeachingChains::for_each_host(
    const std::function<void(const net::IpAddress& host, std::span<const uint64_t> chain_ids)>&
        visit) const {
  for (const auto& [host, hashes] : by_host_) visit(host, hashes);
}

void TeachingChains::compact_if_sparse() {
  if (chains_.size() <= 2 * by_host_.size() + 64) return;
  absl::flat_hash_set<uint64_t> used;
  for (const auto& [host, hashes] : by_host_) used.insert(hashes.begin(), hashes.end());
  absl::erase_if(chains_, [&](const auto& chain) { return !used.contains(chain.first); });
}

}  // namespace sebpf::daemon
