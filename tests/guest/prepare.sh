# Sourced by the guest's /init (tests and `make run` alike): mounts the kernel's
# file systems, loads the kernel modules, and prepares what the daemons need of
# Linux. Kernel parameters of the form KEY=VALUE arrive as environment variables.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# The console is a terminal to the guest but a log file to the host: no colour codes.
export RUST_LOG_STYLE=never
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Loopback, which programs in the guest reach their own services through.
ip link set lo up
# Huge pages are the dma: daemon's physically contiguous DMA memory (2 MiB each).
# A fault campaign restarts the e1000 group (2 pages) many times a second, and
# dma: keeps each freed page in quarantine for 2 s (1 s, and 1 more poisoned).
echo 48 >/proc/sys/vm/nr_hugepages

for module in $(cat /etc/guest/modules); do
    insmod "/lib/modules/$module.ko" || echo "guest: insmod $module failed"
done

# Scheme sockets: drivers run unprivileged and serve schemes too, so anyone may add a
# socket here; the sticky bit keeps each one its owner's, as in /tmp.
mkdir -p /run/schemes && chmod 1777 /run/schemes
