#!/bin/sh
# Provisions what the QEMU guest harness needs, idempotently:
#   - the Debian packages (qemu-system-x86, busybox-static, libc6-dev, and fonts-dejavu-core
#     for the plots' text), installed only when missing;
#   - the Debian cloud kernel and the modules the guest loads, unpacked into CACHE_DIR
#     WITHOUT installing the kernel package (installing it would pull in initramfs-tools
#     and change the host).
# A provisioned machine with a filled cache does nothing and touches no network; delete
# CACHE_DIR to pick up a newer kernel.
#
# usage: [KERNEL_PACKAGE=META] provision.sh CACHE_DIR MODULE...
# KERNEL_PACKAGE names the kernel's meta package: linux-image-cloud-amd64 unless set
# (linux-image-amd64, the generic kernel, has the e1000 module the baseline loads).
# Afterwards CACHE_DIR holds: vmlinuz, kernel-release, modules/<MODULE>.ko
set -eu

[ $# -ge 1 ] || { echo "usage: $0 CACHE_DIR MODULE..." >&2; exit 2; }
cache=$1
shift
modules=$*
packages="qemu-system-x86 busybox-static libc6-dev fonts-dejavu-core"

export DEBIAN_FRONTEND=noninteractive
# Another apt run (a second harness, an engineer's install) must make us wait, not fail.
apt_opts="-o DPkg::Lock::Timeout=600 -q"

log() { echo "provision: $*" >&2; }

updated=no
apt_update_once() {
    if [ "$updated" = no ]; then
        log "apt-get update"
        apt-get $apt_opts update >&2
        updated=yes
    fi
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=""
for p in $packages; do
    installed "$p" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt_update_once
    log "apt-get install -y$missing"
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get $apt_opts install -y --no-install-recommends $missing >&2
else
    log "packages present: $packages"
fi

kernel_cached() {
    [ -f "$cache/vmlinuz" ] && [ -f "$cache/kernel-release" ] || return 1
    for m in $modules; do
        [ -f "$cache/modules/$m.ko" ] || return 1
    done
}

if kernel_cached; then
    log "kernel cached: $(cat "$cache/kernel-release")"
    exit 0
fi

apt_update_once
meta=${KERNEL_PACKAGE:-linux-image-cloud-amd64}
# The meta package only depends on the current versioned image package.
package=$(apt-cache depends "$meta" |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
[ -n "$package" ] || { echo "provision: cannot resolve $meta" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/guest-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "apt-get download $package"
# Root downloads into our private temporary folder, which apt's sandbox user cannot enter.
(cd "$work" && apt-get $apt_opts -o APT::Sandbox::User=root download "$package" >&2)
mkdir "$work/root"
dpkg-deb --fsys-tarfile "$work"/*.deb | tar -x -C "$work/root"

vmlinuz=$(ls "$work"/root/boot/vmlinuz-*)
release=${vmlinuz##*/vmlinuz-}
stage="$work/cache"
mkdir -p "$stage/modules"
cp "$vmlinuz" "$stage/vmlinuz"
for m in $modules; do
    found=$(find "$work/root" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n 1)
    [ -n "$found" ] || { echo "provision: module $m not in $package" >&2; exit 1; }
    case "$found" in
        *.ko.xz) xz -dc "$found" >"$stage/modules/$m.ko" ;;
        *.ko.zst) zstd -qdc "$found" >"$stage/modules/$m.ko" ;;
        *) cp "$found" "$stage/modules/$m.ko" ;;
    esac
done
echo "$release" >"$stage/kernel-release"

# Replace the cache in one step so an interrupted run never leaves half a kernel behind.
mkdir -p "$(dirname "$cache")"
rm -rf "$cache"
mv "$stage" "$cache"
log "kernel $release unpacked into $cache"
