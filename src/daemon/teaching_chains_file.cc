#include "daemon/teaching_chains_file.h"

#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "superebpf/state/v1/state.pb.h"

namespace sebpf::daemon {

namespace {

namespace state_v1 = ::superebpf::state::v1;

constexpr uint32_t kLearnedChainsFormat = 2;

Error invalid(const std::string& what) {
  return Error(Errc::kFailedPrecondition, "learned-chains file content is invalid: " + what);
}

Result<net::IpAddress> address_from_bytes(const std::string& bytes) {
  if (bytes.size() == 4) {
    uint32_t network_order = 0;
    std::memcpy(&network_order, bytes.data(), 4);
    return net::IpAddress::v4(network_order);
  }
  if (bytes.size() == 16) {
    std::array<uint8_t, 16> v6{};
    std::memcpy(v6.data(), bytes.data(), 16);
    return net::IpAddress::v6(v6);
  }
  return invalid("an address of " + std::to_string(bytes.size()) + " bytes");
}

}  // namespace

std::string encode_learned_chains(const TeachersByAttachment& teachers,
                                  const std::map<uint64_t, LearnedHosts>& learned) {
  state_v1::LearnedChains out;
  out.set_format(kLearnedChainsFormat);
  for (const auto& [number, chains] : teachers) {
    const auto hosts = learned.find(number);
    if (hosts == learned.end()) continue;
    state_v1::AttachmentTeachers* attachment = out.add_attachments();
    attachment->set_attachment(number);
    chains.for_each_chain([&](uint64_t id, std::string_view names) {
      state_v1::TaughtChain* chain = attachment->add_chains();
      chain->set_id(id);
      chain->set_names(std::string(names));
    });
    for (const auto& [address, held] : hosts->second) {
      // A host not yet written has no expiry to check it by when read back.
      if (held.taught_by.empty() || held.until == datapath::BootClock::time_point{}) continue;
      state_v1::TaughtHost* host = attachment->add_hosts();
      const size_t size = address.family() == net::Family::kIPv4 ? 4 : 16;
      host->set_address(reinterpret_cast<const char*>(address.bytes().data()), size);
      for (uint64_t id : held.taught_by) host->add_chains(id);
      host->set_until_boot_ns(static_cast<uint64_t>(held.until.time_since_epoch().count()));
    }
  }
  return out.SerializeAsString();
}

Result<std::map<uint64_t, SavedTeachers>> decode_learned_chains(std::string_view bytes) {
  state_v1::LearnedChains in;
  if (!in.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return invalid("not a LearnedChains message");
  }
  if (in.format() != kLearnedChainsFormat) {
    return invalid("format " + std::to_string(in.format()) + " (this build reads " +
                   std::to_string(kLearnedChainsFormat) + ")");
  }
  std::map<uint64_t, SavedTeachers> saved;
  for (const state_v1::AttachmentTeachers& attachment : in.attachments()) {
    SavedTeachers& teachers = saved[attachment.attachment()];
    // Ids are the writer's hashes; this process hashes with its own seed.
    absl::flat_hash_map<uint64_t, uint64_t> id_now;
    for (const state_v1::TaughtChain& chain : attachment.chains()) {
      if (chain.names().empty()) return invalid("an empty chain");
      id_now[chain.id()] = teachers.chains.add(chain.names());
    }
    for (const state_v1::TaughtHost& host : attachment.hosts()) {
      SEBPF_ASSIGN_OR_RETURN(const net::IpAddress address, address_from_bytes(host.address()));
      LearnedHost& taught = teachers.hosts[address];
      if (host.until_boot_ns() == 0) return invalid(address.to_string() + " has no expiry");
      taught.until = datapath::BootClock::time_point(
          datapath::BootClock::duration(static_cast<int64_t>(host.until_boot_ns())));
      for (uint64_t id : host.chains()) {
        const auto now = id_now.find(id);
        if (now == id_now.end()) {
          return invalid(address.to_string() + " names chain " + std::to_string(id) +
                         ", which is not in the file");
        }
        taught.taught(now->second);
      }
    }
  }
  return saved;
}

}  // namespace sebpf::daemon
