#!/bin/sh
# /init of the `make run` guest: prepares it as the test guest's does, starts the
# image's own init units (written from filesystem.toml into /usr/lib/init.d) with
# image-init, as Redox's init would: mmio, dma, romain, and the e1000 driver as
# 3 voting replicas. Then it puts the guest's TCP/IP on that driver through
# tap-bridge, serves a web page and a TCP echo, and hands the console to a shell.
# Leaving the shell powers the guest off.
. /etc/guest/prepare.sh
: "${WEB_PORT:=8080}"
: "${ECHO_PORT:=8007}"
mkdir -p /var/log

echo "guest-run: starting the image's init units"
image-init || echo "guest-run: a unit failed; its log is in /var/log"

# The group's engine serves the NIC's scheme once the replicas have brought it up.
waited=0
while [ ! -e /run/schemes/network.e1000 ] && [ "$waited" -lt 1200 ]; do
    sleep 0.1
    waited=$((waited + 1))
done
tap-bridge --scheme network.e1000 >/var/log/tap-bridge.log 2>&1 &
waited=0
while ! ip -4 addr show dev tap0 2>/dev/null | grep -q inet && [ "$waited" -lt 600 ]; do
    sleep 0.1
    waited=$((waited + 1))
done
if ip -4 addr show dev tap0 2>/dev/null | grep -q inet; then
    httpd -p "$WEB_PORT" -h /www
    nc -ll -p "$ECHO_PORT" -e /bin/cat </dev/null >/dev/null 2>&1 &
    echo "guest-run: ready: web on port $WEB_PORT, TCP echo on port $ECHO_PORT, both through romain:e1000?replicas=3"
else
    echo "guest-run: FAILED: the network did not come up (see /var/log/tap-bridge.log and /var/log/03_romain-e1000.service.log)"
fi
cat /etc/motd
setsid cttyhack sh -l
poweroff -f
