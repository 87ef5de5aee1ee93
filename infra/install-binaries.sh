#!/usr/bin/env bash
# Builds the pinned Temporal CLI (dev server) and MinIO with `go install` into a cache folder, reusing what is
# already there. Prints the two paths. A binary named by TEMPORAL_CLI_PATH / MINIO_BIN, or found on PATH, wins.
set -euo pipefail

TEMPORAL_CLI_VERSION=v1.5.1 # later tags add a `replace` directive that `go install` refuses
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
BIN_DIR=${DPOFLOW_BIN_DIR:-$HOME/.cache/dpoflow/bin}
mkdir -p "$BIN_DIR"

build() { # name, module@version, target file
  local name=$1 module=$2 target=$3
  if [ -x "$target" ]; then echo "$name: using cached $target" >&2; return; fi
  command -v go >/dev/null || { echo "$name: not found and Go is not installed; install Go or set the binary's env var" >&2; exit 1; }
  local gobin
  gobin=$(mktemp -d)
  echo "$name: building $module with go install (first time only, several minutes)…" >&2
  GOBIN=$gobin go install "$module"
  mv "$gobin/$(basename "${module%%@*}")" "$target.partial" && mv "$target.partial" "$target"
  rmdir "$gobin"
}

resolve() { # env var value, PATH name, module@version, cache file
  local from_env=$1 name=$2 module=$3 cached=$4
  if [ -n "$from_env" ]; then echo "$from_env"; return; fi
  if command -v "$name" >/dev/null; then command -v "$name"; return; fi
  build "$name" "$module" "$cached"
  echo "$cached"
}

temporal=$(resolve "${TEMPORAL_CLI_PATH:-}" temporal "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION" "$BIN_DIR/temporal-$TEMPORAL_CLI_VERSION")
minio=$(resolve "${MINIO_BIN:-}" minio "github.com/minio/minio@$MINIO_VERSION" "$BIN_DIR/minio-$MINIO_VERSION")
echo "TEMPORAL_CLI_PATH=$temporal"
echo "MINIO_BIN=$minio"
