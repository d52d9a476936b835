# The README's two commands: `make demo` and `make test`. Both install the system packages the
# build needs first (scripts/install-deps.sh), so they work on a fresh Debian machine.

.PHONY: deps demo test build bench

deps:
	@scripts/install-deps.sh

build: deps
	cargo build --release

demo: deps
	cargo run --release -- demo

test: deps
	cargo test --release

bench: deps
	cargo bench
