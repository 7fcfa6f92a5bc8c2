.PHONY: demo test regress bench chaos package

# Local Postgres + extension + poller + receiver; prints real deliveries and the log.
demo:
	bash scripts/demo.sh

# Everything: fmt, clippy, cargo pgrx test, end-to-end tests.
test:
	bash scripts/test.sh

# SQL regression tests (tests/regress) against the installed extension, on PostgreSQL 15 and 18.
regress:
	bash scripts/regress.sh

# Throughput and latency with release builds, next to baselines measured in the same run.
bench:
	bash scripts/bench.sh

# Kills, restarts, failing receivers, three pollers: does any guarantee break?
chaos:
	bash scripts/chaos.sh

# Debian packages (target/debian/): the extension for PostgreSQL 15 and the poller.
package:
	bash scripts/package.sh
