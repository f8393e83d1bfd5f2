#!/usr/bin/env bash
# Runs Bazel on pose3d-zoo without network access (Debian's bazel-bootstrap
# 4.2, or any Bazel 4-6), e.g.
#
#   . .venv/bin/activate     # the interpreter with requirements.txt installed
#   tools/bazel_offline.sh build //...
#   tools/bazel_offline.sh test //tests/...
#   tools/bazel_offline.sh test //tests:zoo/test_metrics
#   tools/bazel_offline.sh run //trainers:run -- --model=c2f_volumetric --preset=smoke
#
# Why: the BUILD files use only native Python rules, but Bazel's own tools
# package still loads @rules_cc, @rules_java, @rules_proto and (for tests)
# @remote_coverage_tools, which it would download. This script writes
# minimal local stand-ins (they forward to the native rules; coverage is a
# no-op) under $POSE3D_BAZEL_SHIMS (default ~/.cache/pose3d_zoo/bazel_shims)
# and passes them as --override_repository. Python comes from the first
# `python3` on PATH (Bazel's autodetecting toolchain), so PATH is forwarded
# to actions and tests.
set -euo pipefail

if [ "$#" -lt 1 ]; then
  echo "usage: $0 COMMAND [ARGS...]   (COMMAND: build, test, run, query...)" >&2
  exit 2
fi
command -v bazel >/dev/null || {
  echo "bazel not found (Debian: apt-get install bazel-bootstrap)" >&2; exit 1; }

shims="${POSE3D_BAZEL_SHIMS:-${HOME}/.cache/pose3d_zoo/bazel_shims}"

forward() {  # forward FILE RULE... : a .bzl whose RULEs call the native ones
  local file="$1"; shift
  : > "${file}.tmp"
  for rule in "$@"; do
    printf 'def %s(**kwargs):\n    native.%s(**kwargs)\n\n' "$rule" "$rule" \
      >> "${file}.tmp"
  done
  mv "${file}.tmp" "$file"
}

mkdir -p "$shims"/rules_cc/cc "$shims"/rules_java/java \
  "$shims"/rules_proto/proto "$shims"/remote_coverage_tools
for repo in rules_cc rules_java rules_proto remote_coverage_tools; do
  echo "workspace(name = \"$repo\")" > "$shims/$repo/WORKSPACE"
done
touch "$shims"/rules_cc/BUILD "$shims"/rules_cc/cc/BUILD \
  "$shims"/rules_java/BUILD "$shims"/rules_java/java/BUILD \
  "$shims"/rules_proto/BUILD "$shims"/rules_proto/proto/BUILD
forward "$shims/rules_cc/cc/defs.bzl" cc_binary cc_import cc_library \
  cc_proto_library cc_test cc_toolchain cc_toolchain_suite objc_library
forward "$shims/rules_java/java/defs.bzl" java_binary java_import \
  java_library java_plugin java_runtime java_test java_toolchain
forward "$shims/rules_proto/proto/defs.bzl" proto_lang_toolchain proto_library
printf '#!/bin/sh\nexit 0\n' > "$shims/remote_coverage_tools/noop.sh"
chmod +x "$shims/remote_coverage_tools/noop.sh"
cat > "$shims/remote_coverage_tools/BUILD" <<'BUILD'
package(default_visibility = ["//visibility:public"])

sh_binary(name = "coverage_report_generator", srcs = ["noop.sh"])

sh_binary(name = "lcov_merger", srcs = ["noop.sh"])
BUILD

cmd="$1"; shift
overrides=()
for repo in rules_cc rules_java rules_proto remote_coverage_tools; do
  overrides+=("--override_repository=$repo=$shims/$repo")
done
case "$cmd" in
  build|test|run|coverage|cquery|aquery|query|fetch|sync)
    extra=("${overrides[@]}")
    case "$cmd" in build|test|run|coverage)
      extra+=(--action_env=PATH --test_env=PATH);; esac
    ;;
  *) extra=();;
esac
cd "$(dirname "$0")/.."
exec bazel "$cmd" "${extra[@]}" "$@"
