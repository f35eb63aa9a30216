#include "dns_proxy_fixture.h"

namespace sebpf::dns {

std::optional<std::vector<uint8_t>> answer_to(std::span<const uint8_t> query) {
  if (query.size() < 12) return std::nullopt;
  size_t question_end = 12;
  while (question_end < query.size() && query[question_end] != 0) {
    question_end += 1 + query[question_end];
  }
  question_end += 5;  // the root label, type and class
  if (question_end > query.size()) return std::nullopt;
  std::vector<uint8_t> answer(query.begin(), query.begin() + static_cast<long>(question_end));
  answer[2] |= 0x80;  // QR
  answer[3] = 0x80;   // RA, NOERROR
  answer[7] = 1;      // ANCOUNT
  answer[11] = 0;     // ARCOUNT (an OPT the query had is not answered)
  const uint8_t record[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7};
  answer.insert(answer.end(), std::begin(record), std::end(record));
  return answer;
}

std::shared_ptr<const NamePolicy> allowlist(std::vector<std::pair<const char*, Action>> rules) {
  auto policy = std::make_shared<NamePolicy>();
  policy->mode = Mode::kAllowlist;
  for (const auto& [name, action] : rules) EXPECT_TRUE(policy->rules.add(name, action).ok());
  return policy;
}

}  // namespace sebpf::dns
