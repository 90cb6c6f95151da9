#!/usr/bin/env bash
# Type-checks the Redox side of every daemon and driver crate for
# x86_64-unknown-redox. Redox binaries cannot be linked here (that needs relibc
# and the Redox toolchain), but everything up to linking is checked.
#
# Usage: scripts/redox-check.sh CRATE...
set -euo pipefail
target=x86_64-unknown-redox

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    if ! command -v rustup >/dev/null 2>&1; then
        echo "redox-check: SKIPPED: rustup is not installed, so the $target target cannot be added"
        exit 0
    fi
    if ! out=$(rustup target add "$target" 2>&1); then
        echo "redox-check: SKIPPED: 'rustup target add $target' failed: $(echo "$out" | tail -n 1)"
        exit 0
    fi
fi

packages=()
for crate in "$@"; do packages+=(-p "$crate"); done
# redox-scheme 0.12 needs the nightly-feature switch; .cargo/config.toml sets it
# for cargo, and it is set here too for anyone running this from elsewhere.
RUSTC_BOOTSTRAP=1 cargo check --target "$target" "${packages[@]}"
echo "redox-check: $target type-check passed for: $*"
