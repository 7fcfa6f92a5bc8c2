.PHONY: demo test

# Local Postgres + extension + poller + receiver; prints real deliveries and the log.
demo:
	bash scripts/demo.sh

# Everything: fmt, clippy, cargo pgrx test, end-to-end tests.
test:
	bash scripts/test.sh
