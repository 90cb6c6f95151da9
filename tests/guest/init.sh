#!/bin/sh
# /init of the test guest: mounts the kernel's file systems, loads the kernel modules,
# starts the daemons as root (as init does on Redox), runs the guest programs, reports
# whether each daemon survived the run, and powers off. Kernel parameters of the form
# KEY=VALUE arrive here as environment variables and are inherited by the programs.
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

# Each line: a daemon and its arguments. The programs wait until the daemons serve.
daemons=""
while read -r daemon args; do
    echo "guest: starting $daemon $args"
    # shellcheck disable=SC2086 # the arguments are words
    "$daemon" $args </dev/null &
    daemons="$daemons $daemon:$!"
done </etc/guest/daemons

for program in $(cat /etc/guest/programs); do
    echo "guest: running $program"
    "$program" </dev/null || echo "guest: $program exited with status $?"
done

# A daemon that died during the run is gone (the shell reaped it) or a zombie.
for entry in $daemons; do
    daemon=${entry%%:*}
    pid=${entry#*:}
    if [ -r "/proc/$pid/status" ] && ! grep -q '^State:.*zombie' "/proc/$pid/status"; then
        echo "guest-daemon $daemon ... ok"
    else
        echo "guest-daemon $daemon ... FAILED: exited during the run"
    fi
done

poweroff -f
