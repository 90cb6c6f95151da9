#!/bin/sh
# /init of the test guest: prepares it (prepare.sh: file systems, kernel modules,
# huge pages, the scheme folder), starts the daemons as root (as init does on
# Redox), runs the guest programs, reports whether each daemon survived the run,
# and powers off. Kernel parameters of the form KEY=VALUE arrive here as
# environment variables and are inherited by the programs.
. /etc/guest/prepare.sh

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
