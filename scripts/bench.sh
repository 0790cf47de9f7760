#!/usr/bin/env bash
# Runs the benchmarks against a throwaway PostgreSQL and the AWS emulators, and rewrites their
# sections of BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh
source scripts/lib/aws_emulators.sh
source scripts/lib/kurrentdb_standin.sh
work=$(mktemp -d /tmp/ionroller-bench.XXXXXX)
chmod 755 "$work"
trap 'aws_emulators_stop "$work/aws"; pg_stop "$work/pg"; rm -rf "$work"' EXIT
pg_start "$work/pg"
kurrentdb_standin_install
cargo fetch --quiet
kurrentdb_standin_protos
cargo bench -p ionroller-store-tests --bench store -- --pg "$IONROLLER_TEST_PG_URL" --write "$PWD/BENCHMARKS.md"
cargo bench -p ionroller-roller --bench core -- --write "$PWD/BENCHMARKS.md"
cargo bench -p ionroller-roller --bench reads -- --write "$PWD/BENCHMARKS.md"
cargo bench -p ionroller-roller --bench scale -- --store-dir /dev/shm --write "$PWD/BENCHMARKS.md"
cargo bench -p ionroller-trail --bench trail -- --write "$PWD/BENCHMARKS.md"
# Against the emulators the times are the observation interval's and the emulators', not the
# code's: the debug build (the one the tests use) measures the same and saves a release
# build of the AWS SDK (about 9 minutes on 2 cores).
aws_emulators_install
aws_emulators_start "$work/aws"
cargo build --workspace
cargo bench --profile dev -p ionroller-e2e --bench aws -- --write "$PWD/BENCHMARKS.md"
cargo bench --profile dev -p ionroller-e2e --bench failover -- --write "$PWD/BENCHMARKS.md"
cargo bench --profile dev -p ionroller-e2e --bench failover -- --log kurrentdb --write "$PWD/BENCHMARKS.md"
