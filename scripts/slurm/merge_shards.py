#!/usr/bin/env python3
"""Merges the run files of a sharded `ziprerank batch` (shard-K-of-N.jsonl, K = 1..N) into one.

Checks that every query id of the queries file is present exactly once across the shards (no
query missing, none twice, none that the queries file lacks, no torn line), then writes the
records in shard order, which is the queries file's order. Failed queries (records with
"error") are kept and counted. Exits 1 with the problems listed when a check fails.

    merge_shards.py QUERIES.jsonl OUT_DIR N MERGED.jsonl
"""
import json
import os
import sys


def main(argv):
    if len(argv) != 5:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    queries, out_dir, n, merged = argv[1], argv[2], int(argv[3]), argv[4]
    expected = []
    with open(queries, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                expected.append(json.loads(line)["query_id"])
    wanted = set(expected)
    problems, records, seen = [], [], {}
    for k in range(1, n + 1):
        path = os.path.join(out_dir, f"shard-{k}-of-{n}.jsonl")
        if not os.path.exists(path):
            problems.append(f"{path}: missing (did task {k} run?)")
            continue
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    qid = record["query_id"]
                except (ValueError, KeyError):
                    problems.append(f"{path}:{number}: not a run record (torn line?)")
                    continue
                if qid not in wanted:
                    problems.append(f"{path}:{number}: query '{qid}' is not in {queries}")
                elif qid in seen:
                    problems.append(f"{path}:{number}: query '{qid}' again (first in {seen[qid]})")
                else:
                    seen[qid] = f"{path}:{number}"
                    records.append(line if line.endswith("\n") else line + "\n")
    missing = [q for q in expected if q not in seen]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        problems.append(f"{len(missing)} quer{'y' if len(missing) == 1 else 'ies'} missing: {shown}")
    if problems:
        for p in problems:
            print(f"merge_shards: {p}", file=sys.stderr)
        return 1
    tmp = merged + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(records)
    os.replace(tmp, merged)
    failed = sum(1 for r in records if "error" in json.loads(r))
    print(f"merge_shards: {len(records)} queries from {n} shards -> {merged}"
          f" ({failed} failed)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
