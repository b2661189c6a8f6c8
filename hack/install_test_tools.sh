#!/usr/bin/env bash
# Tools the test suite drives besides Python packages: headless Chromium for the report test.
# Idempotent: does nothing when the tools are already there.
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_test_tools: $CHROMIUM is missing and apt-get is not available; install Chromium and set CHROMIUM=/path/to/chromium" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
"$CHROMIUM" --version
