// libFuzzer target: one line of a `ziprerank batch` input file (JSONL). Parsing must only ever
// fail with an InputError; an accepted record has what the batch run relies on.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "fuzz_util.hpp"
#include "ziprerank/batch.hpp"
#include "ziprerank/errors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string line(reinterpret_cast<const char*>(data), size);
  ziprerank::BatchQuery q;
  try {
    q = ziprerank::parse_batch_query(line, "/data/queries", "queries.jsonl:1");
  } catch (const ziprerank::InputError&) {
    return 0;
  }
  FUZZ_CHECK(!q.query_id.empty());
  FUZZ_CHECK(q.query.find_first_not_of(" \t\r\n") != std::string::npos);
  FUZZ_CHECK(!q.candidates.empty());
  std::set<std::string> ids;
  for (const auto& c : q.candidates) {
    FUZZ_CHECK(ids.insert(c.id).second);
    FUZZ_CHECK(c.pdf_page >= 0);
  }
  return 0;
}
