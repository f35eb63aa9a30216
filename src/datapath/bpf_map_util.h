// Small typed helpers over the BPF map syscalls, so the callers read as
// "look up this key" and get a Result, not an errno dance.
#pragma once

#include <bpf/bpf.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace sebpf::datapath {

// A map's "full" errors differ by map type (E2BIG for hash, ENOSPC for LPM).
inline Error map_error(int err, const std::string& what, const std::string& full_hint) {
  if (err < 0) err = -err;
  if (err == E2BIG || err == ENOSPC || err == ENOMEM) {
    return Error(Errc::kResourceExhausted, what + ": " + full_hint);
  }
  return Error::from_errno(err, what);
}

template <typename K, typename V>
Result<std::optional<V>> map_lookup(int fd, const K& key) {
  V value{};
  if (bpf_map_lookup_elem(fd, &key, &value) == 0) return std::optional<V>(value);
  if (errno == ENOENT) return std::optional<V>();
  return Error::from_errno(errno, "bpf map lookup");
}

// All keys of a map. Collected before the caller acts, because deleting
// while walking with get_next_key can restart the walk.
template <typename K>
Result<std::vector<K>> map_keys(int fd) {
  std::vector<K> keys;
  K key{};
  const K* prev = nullptr;
  while (true) {
    K next{};
    if (bpf_map_get_next_key(fd, prev, &next) != 0) {
      if (errno == ENOENT) break;
      return Error::from_errno(errno, "bpf map iteration");
    }
    keys.push_back(next);
    key = next;
    prev = &key;
  }
  return keys;
}

}  // namespace sebpf::datapath
