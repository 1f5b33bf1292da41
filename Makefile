# Switchboard: `make run` and `make test` set up everything they need on a fresh
# Debian machine (Java, Maven, Redis, Dovecot, the virtualenv, Kafka's jars).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SB_API_TOKENS ?= ["demo-token"]
export SB_WEBHOOK_SECRET ?= demo-webhook-secret
export SB_PAGER_SECRET ?= demo-pager-secret
# the demo's reply-token key; `run` and `worker` refuse the built-in development one
export SB_REPLY_TOKEN_KEY ?= make-run-demo-reply-token-key
# the agents' desk `make run` starts beside the router (switchboard desk)
DESK_PID := .local/run/desk.pid

.PHONY: setup run stop test test-clocks lint typecheck unit integration bench faults fuzz schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)
	bash deploy/local/install.sh

run: setup
	$(BIN)/switchboard stack up --with-imap
	@echo
	@echo "Switchboard is starting on http://127.0.0.1:18080 (Ctrl-C stops the router; 'make stop' the stack)."
	@echo "Send it a message:"
	@echo "  curl -s -H 'Authorization: Bearer demo-token' -H 'Content-Type: application/json' \\"
	@echo "       -d '{\"sender\":\"ada@example.com\",\"text\":\"My order never arrived\"}' \\"
	@echo "       http://127.0.0.1:18080/v1/messages"
	@echo "See it routed:  $(BIN)/switchboard tail routed --from-beginning"
	@echo "The agents' desk (switchboard desk, lines marked 'desk |') prints each delivery to the"
	@echo "helpdesk webhook and pager, with curl lines to answer; it stops with the router."
	@echo
	@mkdir -p $(dir $(DESK_PID))
	$(BIN)/switchboard desk > >(sed -u 's/^/desk | /') 2>&1 & echo $$! > $(DESK_PID); \
	  trap 'kill $$(cat $(DESK_PID)) 2>/dev/null; rm -f $(DESK_PID)' EXIT; \
	  $(BIN)/switchboard run

stop:
	-@pkill -f "$(BIN)/switchboard (run|worker)" || true
	-@if [ -f $(DESK_PID) ] && grep -qa 'switchboard.desk' /proc/$$(cat $(DESK_PID))/cmdline 2>/dev/null; \
	  then kill $$(cat $(DESK_PID)); fi; rm -f $(DESK_PID)
	@if [ -x $(BIN)/switchboard ]; then $(BIN)/switchboard stack down; fi

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

schemas: $(STAMP)
	$(BIN)/switchboard export-schemas

test: setup lint typecheck
	$(BIN)/switchboard stack up --with-imap
	$(BIN)/pytest -q

# the whole suite again under a faked weekday night and weekend, in other timezones
test-clocks: setup
	$(BIN)/switchboard stack up --with-imap
	$(BIN)/python -m tests.clocks -q

bench: setup
	$(BIN)/switchboard stack up
	$(BIN)/python -m bench.pipeline

# the fault suite on a stack of its own (the shared one is left alone); FAULTS_ARGS=--quick
faults: setup
	$(BIN)/python -m bench.faults $(FAULTS_ARGS)

# every parser of outside input under atheris, FUZZ_SECONDS each; new findings land in tests/fixtures/fuzz
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/python -m bench.fuzz --seconds $(FUZZ_SECONDS)

clean: stop
	rm -rf $(VENV) .local
