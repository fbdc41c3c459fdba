#!/bin/sh
# The benchmark of an earlier commit and of this tree, on the same machine, side by side.
#
#   benchmarks/before_after.sh [COMMIT] [-- python -m benchmarks options]
#   benchmarks/before_after.sh 15766d1 -- --duration 60 --plain
#   ROUNDS=3 PYTHON=/work/main/.venv/bin/python benchmarks/before_after.sh
#
# COMMIT (default 15766d1, the commit before daq.data/2: one unsigned message per device
# poll, PUBACK deletes the outbox row) is checked out as a detached git worktree in
# /tmp/daq-before-COMMIT (removed at the end unless it was there before) and its OWN
# benchmarks run from there with PYTHONPATH set to it; then this tree's. Both use the same
# interpreter and packages ($PYTHON, default .venv/bin/python). Each run writes
# $OUT/before-N.json and $OUT/after-N.json (OUT default var/bench-compare); ROUNDS (default
# 1) alternates before and after that many times. Then `python -m benchmarks.compare` prints
# each pair side by side with the issue's verdicts (readme: benchmarks/README.md).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
commit=15766d1
if [ $# -gt 0 ] && [ "$1" != "--" ]; then commit=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
py=${PYTHON:-$here/.venv/bin/python}
out=${OUT:-$here/var/bench-compare}
rounds=${ROUNDS:-1}
wt=/tmp/daq-before-$commit
mkdir -p "$out"
made=
if [ ! -d "$wt" ]; then
    git -C "$here" worktree add --detach "$wt" "$commit" >/dev/null
    made=1
fi
cleanup() { if [ -n "$made" ]; then git -C "$here" worktree remove --force "$wt"; fi; }
trap cleanup EXIT INT TERM
echo "before: $(git -C "$wt" log --oneline -1 | cut -c1-100)" >&2
echo "after:  $(git -C "$here" log --oneline -1 | cut -c1-100)$(git -C "$here" diff --quiet HEAD || echo ' (+ uncommitted changes)')" >&2
i=1
while [ "$i" -le "$rounds" ]; do
    (cd "$wt" && PYTHONPATH="$wt" "$py" -m benchmarks --json "$out/before-$i.json" "$@")
    (cd "$here" && PYTHONPATH="$here" "$py" -m benchmarks --json "$out/after-$i.json" "$@")
    i=$((i + 1))
done
i=1
while [ "$i" -le "$rounds" ]; do
    echo "=== round $i ==="
    PYTHONPATH="$here" "$py" -m benchmarks.compare "$out/before-$i.json" "$out/after-$i.json"
    i=$((i + 1))
done
