#!/bin/sh
# /init of the test guest: mounts the kernel's file systems, loads the kernel modules,
# runs the guest test programs, and powers off. Kernel parameters of the form KEY=VALUE
# arrive here as environment variables and are inherited by the programs.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# The console is a terminal to the guest but a log file to the host: no colour codes.
export RUST_LOG_STYLE=never
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Huge pages are the guest's physically contiguous DMA memory.
echo 8 >/proc/sys/vm/nr_hugepages

for module in $(cat /etc/guest/modules); do
    insmod "/lib/modules/$module.ko" || echo "guest: insmod $module failed"
done

for program in $(cat /etc/guest/tests); do
    echo "guest: running $program"
    "$program" </dev/null || echo "guest: $program exited with status $?"
done

poweroff -f
