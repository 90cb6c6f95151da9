# The two commands a newcomer needs are `make demo` and `make test`; the rest are
# the pieces `make test` is made of. Every target installs what it needs.

# Crates with a Redox side: daemons, drivers and the libraries they share.
REDOX_CRATES := scheme-runtime driver-policy mmio-scheme dma-scheme romain-engine romain-stub romain-scheme e1000 uart16550

CARGO ?= cargo

.PHONY: run demo demo-host test test-host test-guest test-campaign lint bench bench-restart campaign redox-check toolchain

## run: boot the guest and leave it up: the image's init units bring up mmio:, dma:, romain: and the e1000 driver as 3 voting replicas; the guest's TCP/IP, a web page (127.0.0.1:8080) and a TCP echo (127.0.0.1:8007) go through it; the console is a shell (Ctrl-A X ends it)
run: toolchain
	$(CARGO) run --quiet -p guest-harness -- run

## demo: the system at work in about a minute and a half: the image boots in a QEMU guest with the e1000 driver as 3 voting replicas, the host's round trips go through it while a fault of each kind goes into a replica; ends with a table and a plot (target/demo/round-trips.png)
demo: toolchain
	$(CARGO) run --quiet -p guest-harness -- demo

## demo-host: the scheme runtime at work on this machine (a daemon and its clients)
demo-host: toolchain
	$(CARGO) run --quiet --release -p scheme-testbed --bin testbed -- demo

## test: everything: lint, host tests, the Redox type-check, the guest tests and a short fault campaign
test: lint test-host redox-check test-guest test-campaign

## test-host: unit and integration tests on this machine
test-host: toolchain
	$(CARGO) test --workspace

## test-guest: tests against QEMU's real devices inside a Linux guest, and TCP from the host through our e1000 driver; then `make run`'s guest, checked: its page and TCP echo through the forwards while faults go into a replica, and `romain top`
test-guest: toolchain
	$(CARGO) run --quiet -p guest-harness -- test
	$(CARGO) run --quiet -p guest-harness -- run --check --timeout 600

## test-campaign: a short fault campaign in the guest: 100 faults at each of N = 1, 2, 3 into the replicated e1000 driver under the host's TCP load
test-campaign: toolchain
	$(CARGO) run --quiet -p guest-harness -- campaign --replicas 1,2,3 --faults 100 --timeout 1200 --out target/campaign/short

## lint: formatting and clippy, warnings are errors
lint: toolchain
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench: benchmarks with ratios against baselines of the same run: host transport, the replication engine's cost per event (N = 1, 2, 3), mmio: in the guest, then TCP through our e1000 driver against Linux's own e1000 driver, and last Herder's table (bench-restart)
bench: toolchain
	$(CARGO) bench -p scheme-testbed
	$(CARGO) bench -p romain-scheme --bench engine
	$(CARGO) run --quiet -p guest-harness -- bench --timeout 600
	$(MAKE) bench-restart

## bench-restart: Herder's table: our e1000 driver under romain:, alone and as 3 replicas, killed every 1, 2, 4, 8 and 16 s during a 32 s bulk TCP stream from the host, throughput lost against the same group without kills and romain's restart-to-serving time, beside MINIX 3's figures (about 8 minutes)
bench-restart: toolchain
	$(CARGO) run --quiet -p guest-harness -- bench-restart --window 32 --kill-every 1,2,4,8,16 --replicas 1,3 --timeout 900

## campaign: seeded faults, each classified, with a table, a CSV and a plot per campaign: 10,000 into romain:e1000?replicas=3 under the host's TCP load in the guest (about 30 minutes), 500 each at N = 1 and 2 there, and 3,400 per N into the UART driver on a software chip; results under target/campaign/
campaign: toolchain
	$(CARGO) run --quiet -p guest-harness -- campaign --replicas 3 --faults 10000 --timeout 3000 --out target/campaign/e1000-x3
	$(CARGO) run --quiet -p guest-harness -- campaign --replicas 1,2 --faults 500 --timeout 2400 --out target/campaign/e1000-x1-x2
	$(CARGO) build --release -p romain-scheme -p romain-campaign -p uart16550
	target/release/romain campaign --replicas 1,2,3 --faults 3400 --out target/campaign/uart

## redox-check: type-check the Redox side (x86_64-unknown-redox)
redox-check: toolchain
	scripts/redox-check.sh $(REDOX_CRATES)

## toolchain: the Rust components the targets above use
toolchain:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust with rustup first"; exit 1; }
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
