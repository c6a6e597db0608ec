#!/bin/bash
# Submits a sharded `ziprerank batch` to Slurm: an array of N tasks (batch_array.sbatch), then a
# merge job that runs once they have all ended and writes OUT_DIR/run.jsonl after checking that
# every query is present exactly once (merge_shards.py). Prints the two job ids.
#
#   submit.sh [-n N] [--wait] [--sbatch "extra sbatch options"] QUERIES.jsonl OUT_DIR \
#             [-- ziprerank batch options...]
#
# Paths are made absolute (tasks may start in another folder). ZIPRERANK_BIN names the binary.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
n=4
wait_flag=()
extra_sbatch=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n=$2; shift 2 ;;
    --wait) wait_flag=(--wait); shift ;;
    --sbatch) extra_sbatch=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then sed -n '2,9p' "$0" >&2; exit 2; fi
case "$n" in ''|*[!0-9]*|0) echo "submit.sh: -n must be a positive whole number" >&2; exit 2 ;; esac
input=$(realpath "$1")
out_dir=$(realpath -m "$2")
shift 2
[ "${1:-}" = "--" ] && shift
[ -f "$input" ] || { echo "submit.sh: '$input' is not a file" >&2; exit 2; }
mkdir -p "$out_dir"
export ZIPRERANK_BIN=${ZIPRERANK_BIN:-$(command -v ziprerank || echo ziprerank)}
# shellcheck disable=SC2086
array=$(sbatch --parsable --array="1-$n" --chdir="$out_dir" \
  --output="$out_dir/task-%a.log" --export=ALL $extra_sbatch \
  "$here/batch_array.sbatch" "$input" "$out_dir" "$@")
array=${array%%;*}
# shellcheck disable=SC2086
merge=$(sbatch --parsable "${wait_flag[@]}" --dependency="afterany:$array" \
  --job-name=ziprerank-merge --chdir="$out_dir" --output="$out_dir/merge.log" $extra_sbatch \
  --wrap="python3 '$here/merge_shards.py' '$input' '$out_dir' $n '$out_dir/run.jsonl'")
merge=${merge%%;*}
echo "array job $array ($n tasks), merge job $merge -> $out_dir/run.jsonl"
