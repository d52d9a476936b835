# The README's two commands: `make demo` and `make test`. Both install the system packages the
# build needs first (scripts/install-deps.sh), so they work on a fresh Debian machine.

.PHONY: deps demo test build bench

deps:
	@scripts/install-deps.sh

# One optimised build serves the demo, the tests and the benchmarks. `--all-targets` resolves
# the features that the test-only dependencies switch on in shared crates, so `make test`
# afterwards compiles nothing again; `cargo run` would build those crates (HiGHS among them)
# a second time with the other feature set.
BIN = "$${CARGO_TARGET_DIR:-target}/release/archproof"

build: deps
	cargo build --release --all-targets

demo: build
	$(BIN) demo

test: deps
	cargo test --release

bench: deps
	cargo bench
