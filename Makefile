# Switchboard: `make run` and `make test` set up everything they need on a fresh
# Debian machine (Java, Maven, Redis, Dovecot, the virtualenv, Kafka's jars).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# what this checkout starts, by PID file (router/pidfile.py): `make stop` stops exactly these
RUN_DIR := .local/run
PID_FILES := $(RUN_DIR)/router.pid $(RUN_DIR)/desk.pid

.PHONY: setup compile run stop test test-clocks lint typecheck unit integration bench faults fuzz schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	SWITCHBOARD_COMPILE=0 $(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# the demo's settings, for `make run` only (the tests set up their own): a token, the
# agents' desk's webhook secrets, and a reply-token key (`run` and `worker` refuse the
# built-in development one)
run: export SB_API_TOKENS ?= ["demo-token"]
run: export SB_WEBHOOK_SECRET ?= demo-webhook-secret
run: export SB_PAGER_SECRET ?= demo-pager-secret
run: export SB_REPLY_TOKEN_KEY ?= make-run-demo-reply-token-key
# the local mail system, for `make run` only: the email channel
# reads support@example.com in the stack's Dovecot and answers through the stack's SMTP
# relay, which delivers any address into Dovecot
run: export SB_EMAIL ?= {"accounts": [{"name": "support", "host": "127.0.0.1", "port": 10143, "username": "support@example.com", "password": "support-secret", "tls": "none"}], "smtp": {"host": "127.0.0.1", "port": 10025, "tls": "none", "from_address": "support@example.com", "from_name": "Example Support", "message_id_domain": "support.example.com"}}
run: export SB_OUR_DOMAINS ?= support.example.com

# the brain's decision path compiled with mypyc, again whenever its sources change
# (SWITCHBOARD_COMPILE=0: pure Python; docs/decisions/0023)
setup: $(STAMP)
	bash deploy/local/install.sh
	$(BIN)/python -m devtools.compile

compile: $(STAMP)
	$(BIN)/python -m devtools.compile

run: setup
	$(BIN)/switchboard stack up --with-imap
	@echo
	@echo "Switchboard is starting on http://127.0.0.1:18080 (Ctrl-C stops the router and the desk; 'make stop' the stack)."
	@echo "1. Mail support as a customer (any client works: SMTP 127.0.0.1:10025 delivers every address locally):"
	@echo "     $(BIN)/switchboard mail send --from ada@example.com 'My order never arrived'"
	@echo "     (or: swaks --server 127.0.0.1:10025 --from ada@example.com --to support@example.com)"
	@echo "   or through the HTTP API; an email sender is answered by email:"
	@echo "     curl -s -H 'Authorization: Bearer demo-token' -H 'Content-Type: application/json' \\"
	@echo "          -d '{\"sender\":\"ada@example.com\",\"text\":\"My order never arrived\"}' http://127.0.0.1:18080/v1/messages"
	@echo "2. The desk (lines marked 'desk |') prints it routed with a curl line to answer it: paste it."
	@echo "3. Read the answer in Ada's mailbox (IMAP 127.0.0.1:10143, user ada@example.com, password customer):"
	@echo "     $(BIN)/switchboard mail read ada@example.com"
	@echo "See every routed event: $(BIN)/switchboard tail routed --from-beginning"
	@echo
	@mkdir -p $(RUN_DIR)
	$(BIN)/switchboard desk --pid-file $(RUN_DIR)/desk.pid > >(sed -u 's/^/desk | /') 2>&1 & \
	  trap '$(BIN)/switchboard stop $(RUN_DIR)/desk.pid >/dev/null' EXIT; \
	  $(BIN)/switchboard run --pid-file $(RUN_DIR)/router.pid

# stops exactly what this checkout started: its router and desk by PID file, then its stack
stop:
	@if [ -x $(BIN)/switchboard ]; then $(BIN)/switchboard stop $(PID_FILES); $(BIN)/switchboard stack down; fi

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
	rm -rf $(VENV) .local build
	find processors schemas -name '*.so' -delete
