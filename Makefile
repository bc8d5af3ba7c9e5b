# Two commands for a fresh machine: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CATALOGUES := $(wildcard consent_widget/translations/*/LC_MESSAGES/messages.po)
COMPILED := $(CATALOGUES:.po=.mo)

.PHONY: run test bench install translations extract-messages clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

install: $(STAMP) $(COMPILED)

%.mo: %.po $(STAMP)
	$(BIN)/pybabel compile --use-fuzzy -i $< -o $@

instance/config.py:
	mkdir -p instance
	$(BIN)/python -c "import secrets; print('SECRET_KEY = %r' % secrets.token_urlsafe(48))" > $@

# `make run PORT=5100 HOST_PORT=5101` when the default ports are taken.
PORT ?= 5000
HOST_PORT ?= 5001

run: install instance/config.py
	$(BIN)/consent-widget db upgrade
	CONSENT_WEBHOOK_ALLOW_PRIVATE=1 CONSENT_BASE_URL=http://127.0.0.1:$(PORT) $(BIN)/consent-widget demo setup --host-port $(HOST_PORT)
	CONSENT_WEBHOOK_ALLOW_PRIVATE=1 CONSENT_BASE_URL=http://127.0.0.1:$(PORT) CONSENT_DEV_WORKER=1 \
		$(BIN)/consent-widget demo serve --port $(PORT) --host-port $(HOST_PORT)

# axe-core, for the browser tests' accessibility checks, from the npm registry (git-ignored).
AXE := tests/browser/node_modules/axe-core/axe.min.js
$(AXE):
	@command -v npm >/dev/null || { echo "npm not found: the browser tests will not run"; exit 0; }; \
	npm install --no-save --no-package-lock --no-audit --no-fund --prefix tests/browser axe-core@4.14.1

test: install $(AXE)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Sizes of the loader and of a widget's first load, beside other consent tools' packages.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/bench_embed.py

extract-messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -o consent_widget/translations/messages.pot .
	$(BIN)/pybabel update -i consent_widget/translations/messages.pot -d consent_widget/translations

translations: $(COMPILED)

clean:
	rm -rf $(VENV) instance *.egg-info
