#!/usr/bin/env bash
# Installs Microsoft's Azurite storage emulator (npm package `azurite`, 3.x) into the project-local
# prefix .tools/azurite, used by the Azure Blob tests (tests/helpers/azurite.py starts it).
# Idempotent: prints nothing and touches nothing when a 3.x Azurite is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

PREFIX=.tools/azurite
BIN="$PREFIX/node_modules/.bin/azurite-blob"
PKG="$PREFIX/node_modules/azurite/package.json"

if [ -x "$BIN" ] && [ -f "$PKG" ] && grep -q '"version": *"3\.' "$PKG"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: npm is missing; install nodejs and npm to run the Azure Blob tests" >&2
  exit 1
fi
echo "setup: installing Azurite (npm azurite@3) into $PREFIX"
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error 'azurite@^3' >/dev/null
