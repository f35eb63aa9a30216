// A domain name in the parser's presentation form (lowercase, no trailing
// dot, "" for the root), held inline when it is short. The endpoint parses
// the names of every query and every answer it relays; as std::string,
// each one over 15 characters was a heap allocation (three per query in
// bench/dns_bench.sh). Names of up to kInline characters, nearly all of
// them, need none.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>

#include "absl/container/inlined_vector.h"

namespace sebpf::dns {

class Name {
 public:
  static constexpr size_t kInline = 80;

  Name() = default;
  Name(std::string_view text) : chars_(text.begin(), text.end()) {}  // NOLINT: a name is text

  std::string_view view() const { return {chars_.data(), chars_.size()}; }
  operator std::string_view() const { return view(); }  // NOLINT: read as text anywhere
  std::string str() const { return std::string(view()); }

  bool empty() const { return chars_.empty(); }
  size_t size() const { return chars_.size(); }
  char* data() { return chars_.data(); }
  void push_back(char c) { chars_.push_back(c); }
  void append(const char* text, size_t length) { chars_.insert(chars_.end(), text, text + length); }

  friend bool operator==(const Name& a, const Name& b) { return a.view() == b.view(); }
  friend bool operator==(const Name& a, std::string_view b) { return a.view() == b; }
  friend bool operator==(const Name& a, const char* b) { return a.view() == b; }
  friend std::ostream& operator<<(std::ostream& out, const Name& name) {
    return out << name.view();
  }

 private:
  absl::InlinedVector<char, kInline> chars_;
};

}  // namespace sebpf::dns
