#include "daemon/teaching_chains_file.h"

#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "superebpf/state/v1/state.pb.h"

namespace sebpf::daemon {

namespace {

namespace state_v1 = ::superebpf::state::v1;

constexpr uint32_t kLearnedChainsFormat = 1;

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

std::string encode_learned_chains(const TeachersByAttachment& teachers) {
  state_v1::LearnedChains out;
  out.set_format(kLearnedChainsFormat);
  for (const auto& [number, chains] : teachers) {
    state_v1::AttachmentTeachers* attachment = out.add_attachments();
    attachment->set_attachment(number);
    chains.for_each_chain([&](uint64_t id, std::string_view names) {
      state_v1::TaughtChain* chain = attachment->add_chains();
      chain->set_id(id);
      chain->set_names(std::string(names));
    });
    chains.for_each_host([&](const net::IpAddress& address, std::span<const uint64_t> ids) {
      state_v1::TaughtHost* host = attachment->add_hosts();
      const size_t size = address.family() == net::Family::kIPv4 ? 4 : 16;
      host->set_address(reinterpret_cast<const char*>(address.bytes().data()), size);
      for (uint64_t id : ids) host->add_chains(id);
    });
  }
  return out.SerializeAsString();
}

Result<TeachersByAttachment> decode_learned_chains(std::string_view bytes) {
  state_v1::LearnedChains in;
  if (!in.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return invalid("not a LearnedChains message");
  }
  if (in.format() != kLearnedChainsFormat) {
    return invalid("format " + std::to_string(in.format()) + " (this build reads " +
                   std::to_string(kLearnedChainsFormat) + ")");
  }
  TeachersByAttachment teachers;
  for (const state_v1::AttachmentTeachers& attachment : in.attachments()) {
    absl::flat_hash_map<uint64_t, std::string_view> names_by_id;
    for (const state_v1::TaughtChain& chain : attachment.chains()) {
      if (chain.names().empty()) return invalid("an empty chain");
      names_by_id[chain.id()] = chain.names();
    }
    TeachingChains& chains = teachers[attachment.attachment()];
    for (const state_v1::TaughtHost& host : attachment.hosts()) {
      SEBPF_ASSIGN_OR_RETURN(const net::IpAddress address, address_from_bytes(host.address()));
      for (uint64_t id : host.chains()) {
        const auto names = names_by_id.find(id);
        if (names == names_by_id.end()) {
          return invalid(address.to_string() + " names chain " + std::to_string(id) +
                         ", which is not in the file");
        }
        chains.record(address, names->second);
      }
    }
  }
  return teachers;
}

}  // namespace sebpf::daemon
