#!/usr/bin/env bash
# Checks our Redox kernel patch (recipes/kernel/) against a checkout of the Redox
# kernel: the checkout has the commit the recipe pins, every patch the recipe names
# applies to that commit, and the patched kernel builds for x86_64 the way the
# kernel's own Makefile builds it.
#
# Run by hand, never by CI: the build needs the Redox kernel's sources and its git
# dependencies, which CI (without network) cannot fetch.
#
# Usage: scripts/check-kernel-patch.sh [OPTIONS] KERNEL_CHECKOUT
#
# KERNEL_CHECKOUT is a git clone of https://gitlab.redox-os.org/redox-os/kernel.git
# (or a mirror of it). It is left as it is: the patch is applied to a scratch clone
# of the pinned commit, unless --in-place is given.
#
# Options:
#   --no-build            only check that the patches apply
#   --in-place            apply the patches to KERNEL_CHECKOUT itself (which must be
#                         at the pinned commit, with no local changes) and build there
#   --allow-other-rev     if the pinned commit is not in KERNEL_CHECKOUT, check its
#                         HEAD instead (with a warning) rather than fail
#   --toolchain NAME      rustup toolchain to build with (default: the one the
#                         kernel's rust-toolchain.toml names if it is installed, else
#                         "nightly", with a warning)
#   --git-source URL=DIR  fetch the cargo git dependency URL (as the kernel's
#                         Cargo.toml spells it) from the local clone DIR instead;
#                         repeatable; for machines that cannot reach the git hosts
#   --work-dir DIR        the scratch clone (DIR/kernel, made anew each run), the
#                         cargo target directory and the build go here and are
#                         kept, so that a second run builds incrementally;
#                         default: a temporary directory, removed at the end
#                         unless the build fails
#   -h, --help            show this help
#
# Needs: git, make, nasm (the kernel's build script assembles its trampoline with
# it), objcopy, rustup with a nightly toolchain that has the rust-src component.
# The build runs at low priority (nice).
set -euo pipefail

prog=check-kernel-patch
die() {
    echo "$prog: error: $*" >&2
    exit 1
}
warn() { echo "$prog: warning: $*" >&2; }
note() { echo "$prog: $*"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

build=true
in_place=false
allow_other_rev=false
toolchain=
work_dir=
checkout=
git_sources=()

while [ $# -gt 0 ]; do
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    --no-build) build=false ;;
    --in-place) in_place=true ;;
    --allow-other-rev) allow_other_rev=true ;;
    --toolchain)
        [ $# -ge 2 ] || die "--toolchain needs a toolchain name"
        toolchain=$2
        shift
        ;;
    --git-source)
        [ $# -ge 2 ] || die "--git-source needs URL=DIR"
        case "$2" in
        *=*) git_sources+=("$2") ;;
        *) die "--git-source needs URL=DIR, got '$2'" ;;
        esac
        shift
        ;;
    --work-dir)
        [ $# -ge 2 ] || die "--work-dir needs a directory"
        work_dir=$2
        shift
        ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *)
        [ -z "$checkout" ] || die "only one KERNEL_CHECKOUT may be given (see --help)"
        checkout=$1
        ;;
    esac
    shift
done
[ -n "$checkout" ] || {
    usage >&2
    exit 2
}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
recipe_dir=$repo_root/recipes/kernel
recipe=$recipe_dir/recipe.toml
[ -f "$recipe" ] || die "no kernel recipe at $recipe"

# The recipe's `rev = "..."` and `patches = ["...", ...]` lines.
rev=$(sed -n 's/^rev *= *"\([0-9a-f]*\)".*/\1/p' "$recipe")
[ "${#rev}" -eq 40 ] || die "$recipe: no 40-hex-digit rev = \"...\" line"
mapfile -t patches < <(sed -n 's/^patches *= *\[\(.*\)\].*/\1/p' "$recipe" |
    tr ',' '\n' | sed -n 's/^ *"\(.*\)" *$/\1/p')
[ "${#patches[@]}" -gt 0 ] || die "$recipe: no patches = [\"...\"] line"
for p in "${patches[@]}"; do
    [ -s "$recipe_dir/$p" ] || die "$recipe names patch $p, which is missing or empty"
done

command -v git >/dev/null || die "git is not installed"
[ -d "$checkout" ] || die "$checkout is not a directory"
checkout=$(cd "$checkout" && pwd)
head=$(git -C "$checkout" rev-parse --verify HEAD 2>/dev/null) ||
    die "$checkout is not a git checkout"

# Which commit to check: the pinned one.
target=$rev
if [ "$head" != "$rev" ]; then
    if git -C "$checkout" cat-file -e "$rev^{commit}" 2>/dev/null; then
        $in_place && die "$checkout is at $head, not at the pinned $rev; check out $rev first (or drop --in-place)"
        warn "$checkout is at $head, not at the pinned $rev; checking the pinned commit"
    elif $allow_other_rev && ! $in_place; then
        warn "$checkout does not have the pinned commit $rev; checking its HEAD $head instead, which the recipe does not build"
        target=$head
    else
        die "$checkout does not have the pinned commit $rev (HEAD is $head); run 'git -C $checkout fetch origin' and retry, or pass --allow-other-rev"
    fi
fi
note "kernel checkout: $checkout"
note "checking commit: $target ($(git -C "$checkout" log -1 --format='%cs %s' "$target"))"

# The source tree to patch.
cleanup_dir=
cleanup() {
    if [ -n "$cleanup_dir" ]; then rm -rf "$cleanup_dir"; fi
}
trap cleanup EXIT
if $in_place; then
    git -C "$checkout" diff --quiet HEAD -- ||
        die "$checkout has local changes; --in-place needs a clean checkout"
    src=$checkout
    target_dir=$checkout/target
else
    if [ -z "$work_dir" ]; then
        work_dir=$(mktemp -d -t check-kernel-patch.XXXXXX)
        cleanup_dir=$work_dir
    fi
    mkdir -p "$work_dir"
    work_dir=$(cd "$work_dir" && pwd)
    src=$work_dir/kernel
    target_dir=$work_dir/target
    rm -rf "$src"
    # --shared borrows the checkout's objects and changes nothing in it.
    git clone --quiet --shared --no-checkout "$checkout" "$src"
    git -C "$src" -c advice.detachedHead=false checkout --quiet --detach "$target"
    # Submodules (rmm was one until 2026): take them from the checkout.
    while read -r _mode _type sub_commit sub_path; do
        [ -e "$checkout/$sub_path/.git" ] ||
            die "submodule $sub_path is not checked out in $checkout; run 'git -C $checkout submodule update --init'"
        rm -rf "${src:?}/$sub_path"
        git clone --quiet --shared --no-checkout "$checkout/$sub_path" "$src/$sub_path"
        git -C "$src/$sub_path" -c advice.detachedHead=false checkout --quiet --detach "$sub_commit" ||
            die "submodule $sub_path of $checkout lacks commit $sub_commit"
    done < <(git -C "$src" ls-tree -r "$target" | awk '$2 == "commit"')
fi

# Apply the patches as the cookbook does (patch --strip=1, in the recipe's order),
# after a strict check with git apply.
for p in "${patches[@]}"; do
    git -C "$src" apply --check "$recipe_dir/$p" ||
        die "$p does not apply to $target (git apply --check failed above)"
    if command -v patch >/dev/null; then
        patch --quiet --batch --forward --strip=1 --directory "$src" <"$recipe_dir/$p" ||
            die "$p: patch --strip=1 failed"
    else
        git -C "$src" apply "$recipe_dir/$p"
    fi
    note "applied $p"
done
git -C "$src" diff --stat | tail -n 1

if ! $build; then
    note "OK: the patches apply to $target (build skipped)"
    exit 0
fi

# The toolchain: the kernel's own if installed.
command -v rustup >/dev/null || die "rustup is not installed"
pinned_toolchain=$(sed -n 's/^channel *= *"\(.*\)".*/\1/p' "$src/rust-toolchain.toml" 2>/dev/null || true)
installed=$(rustup toolchain list | sed 's/ .*//')
if [ -z "$toolchain" ]; then
    if [ -n "$pinned_toolchain" ] && grep -q "^$pinned_toolchain\(-\|$\)" <<<"$installed"; then
        toolchain=$pinned_toolchain
    elif grep -q '^nightly\(-\|$\)' <<<"$installed"; then
        toolchain=nightly
        warn "the kernel names toolchain ${pinned_toolchain:-?}, which is not installed; building with 'nightly' ($(rustc +nightly --version))"
    else
        die "no nightly toolchain: run 'rustup toolchain install ${pinned_toolchain:-nightly} --component rust-src'"
    fi
fi
rustup component list --toolchain "$toolchain" --installed 2>/dev/null | grep -q '^rust-src' ||
    die "toolchain $toolchain lacks rust-src (build-std needs it): run 'rustup component add rust-src --toolchain $toolchain'"
for tool in make nasm objcopy; do
    command -v "$tool" >/dev/null || die "$tool is not installed (the kernel build needs it)"
done
note "toolchain: $toolchain ($(rustc "+$toolchain" --version))"

# Cargo fetches git dependencies with the git CLI, which the GIT_CONFIG_* variables
# redirect to local clones.
if [ "${#git_sources[@]}" -gt 0 ]; then
    export CARGO_NET_GIT_FETCH_WITH_CLI=true
    i=${GIT_CONFIG_COUNT:-0}
    for pair in "${git_sources[@]}"; do
        url=${pair%%=*}
        dir=${pair#*=}
        [ -d "$dir" ] || die "--git-source $pair: $dir is not a directory"
        export "GIT_CONFIG_KEY_$i=url.$(cd "$dir" && pwd).insteadOf"
        export "GIT_CONFIG_VALUE_$i=$url"
        i=$((i + 1))
    done
    export GIT_CONFIG_COUNT=$i
fi

# The kernel's Makefile, as the recipe runs it, with the host's objcopy (the kernel
# is an x86_64 ELF file) and the chosen toolchain.
if $in_place; then
    build_dir=$checkout/build/x86_64
else
    build_dir=$work_dir/build
fi
log=$build_dir.log
mkdir -p "$build_dir"
note "building (log: $log) ..."
if ! RUSTUP_TOOLCHAIN=$toolchain CARGO_TARGET_DIR=$target_dir nice -n 19 \
    make -C "$src" ARCH=x86_64 BUILD="$build_dir" OBJCOPY=objcopy all >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    cleanup_dir= # keep the log
    die "the patched kernel does not build (last lines above; whole log in $log)"
fi
grep -E '^(warning: .kernel. \(bin|    Finished)' "$log" || true
[ -s "$build_dir/kernel" ] || die "the build left no $build_dir/kernel"
note "OK: the patches apply to $target and the kernel builds: $build_dir/kernel ($(wc -c <"$build_dir/kernel") bytes)"
if [ -n "$cleanup_dir" ]; then
    note "(the scratch build is removed on exit; pass --work-dir DIR to keep it)"
fi
