#!/usr/bin/env bash
# Runs the benchmarks against a throwaway PostgreSQL and rewrites their sections of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh
work=$(mktemp -d /tmp/ionroller-bench.XXXXXX)
chmod 755 "$work"
trap 'pg_stop "$work/pg"; rm -rf "$work"' EXIT
pg_start "$work/pg"
cargo bench -p ionroller-shared --bench store -- --pg "$IONROLLER_TEST_PG_URL" --write "$PWD/BENCHMARKS.md"
