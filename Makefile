# Two commands do everything on a fresh machine:
#   make demo   sets up the virtual environment and runs the local closed-loop demo
#   make test   sets up the virtual environment and runs the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: setup browser demo serve test check-template lint openapi bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,analysis,train,dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's Chromium for the report's browser test (as root, as on CI; others: apt-get install chromium).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is not installed: the browser test will be skipped (sudo apt-get install chromium)"; fi; }

demo: $(STAMP)
	$(BIN)/feedback-loop demo

serve: $(STAMP)
	$(BIN)/feedback-loop serve

test: $(STAMP) browser
	$(BIN)/python -m pytest

# checkov on the template as CloudFormation receives it (the SAM transform, offline); skips and their
# reasons in .checkov.yaml. checkov has its own virtual environment: its pins are not the project's.
CHECKOV = .venv-checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --upgrade pip
	.venv-checkov/bin/python -m pip install --quiet 'checkov>=3.3,<3.4'

# the AWS SAM CLI's own validation (with cfn-lint), offline: no credentials, telemetry off
SAM = .venv-sam/bin/sam
$(SAM):
	$(PYTHON) -m venv .venv-sam
	.venv-sam/bin/python -m pip install --quiet --upgrade pip
	.venv-sam/bin/python -m pip install --quiet 'aws-sam-cli==1.170.0'

check-template: $(STAMP) $(CHECKOV) $(SAM)
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 $(SAM) validate --lint --template template.yaml
	mkdir -p build
	$(BIN)/python -m tests.deployed_template > build/template.json
	$(CHECKOV) --config-file .checkov.yaml -f build/template.json

openapi: $(STAMP)
	$(BIN)/feedback-loop openapi > docs/openapi.json

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/analysis.py
	$(BIN)/python benchmarks/bundle.py

clean:
	rm -rf $(VENV) .venv-checkov .venv-sam .pytest_cache .feedback-loop build *.egg-info
