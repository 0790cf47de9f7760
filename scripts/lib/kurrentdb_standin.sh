# The KurrentDB protocol stand-in (tests/kurrentdb/standin.py): a strict single node speaking
# KurrentDB's gRPC API, which the KurrentDB backend's suites run against because no KurrentDB
# server installs on these machines. Sourced by scripts/test.sh.
#
#   kurrentdb_standin_install   # grpcio in a venv under $IONROLLER_KURRENTDB_VENV (reused);
#                               # exports IONROLLER_KURRENTDB_STANDIN_PYTHON
#   kurrentdb_standin_protos    # after a cargo build: exports IONROLLER_KURRENTDB_PROTOS, the
#                               # .proto files of the kurrentdb crate in Cargo.lock
#
# With IONROLLER_KURRENTDB_URL set (e.g. kurrentdb://admin:changeit@localhost:2113?tls=false
# for `docker run -p 2113:2113 docker.kurrent.io/kurrent-latest/kurrentdb:25.1 --insecure`),
# the same suites run against that server instead.

IONROLLER_KURRENTDB_VENV=${IONROLLER_KURRENTDB_VENV:-$HOME/.cache/ionroller/kurrentdb-standin}
GRPCIO_VERSION=1.85.1

kurrentdb_standin_install() {
  local v=$IONROLLER_KURRENTDB_VENV
  if ! "$v/bin/python" -c "import grpc, grpc_tools; assert grpc.__version__ == '$GRPCIO_VERSION'" 2>/dev/null; then
    echo "== installing grpcio $GRPCIO_VERSION into $v" >&2
    rm -rf "$v" && python3 -m venv "$v" &&
      "$v/bin/pip" install -q --disable-pip-version-check \
        "grpcio==$GRPCIO_VERSION" "grpcio-tools==$GRPCIO_VERSION" >&2 || return 1
  fi
  export IONROLLER_KURRENTDB_STANDIN_PYTHON="$v/bin/python"
}

kurrentdb_standin_protos() {
  local version dir
  version=$(awk '/^name = "kurrentdb"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
  dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"kurrentdb-$version"/protos 2>/dev/null | head -1)
  if [ -z "$dir" ]; then
    echo "the kurrentdb $version crate's protos are not in the cargo registry" >&2
    return 1
  fi
  export IONROLLER_KURRENTDB_PROTOS="$dir"
}
