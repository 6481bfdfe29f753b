# Two commands do everything on a fresh machine:
#   make demo   sets up the virtual environment and runs the local closed-loop demo
#   make test   sets up the virtual environment and runs the whole test suite
# Both install the exact versions of requirements.lock (`make lock` refreshes it; `make test-latest`
# runs the suite on the newest versions pyproject.toml allows, without the lock).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
LOCK    = requirements.lock
EXTRAS  = local,analysis,train,dev

.PHONY: setup browser demo serve test test-latest lock check-template images check-images lint openapi bench clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) -e '.[$(EXTRAS)]'
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

# The whole suite on the newest versions that pyproject.toml allows, in a virtual environment of its
# own, without the lock: run it before `make lock` and whenever boto3, moto or another dependency
# releases, to see a change before users who install today do. Not part of CI's default path.
LATEST = .venv-latest
test-latest: browser
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[$(EXTRAS)]'
	$(LATEST)/bin/python scripts/lock_versions.py --lock $(LOCK) --differences
	$(LATEST)/bin/python -m pytest

# Refreshes requirements.lock: the newest versions pyproject.toml allows (pip-tools' resolver, with
# this machine's pip configuration: torch is the CPU build kept on disk, locked without its +cpu
# label), then the whole suite with them. Commit the lock only if the suite passed.
LOCK_TOOL = .venv-lock/bin/pip-compile
$(LOCK_TOOL):
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet 'pip-tools==7.7.0'

lock: $(LOCK_TOOL)
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOL) --quiet --upgrade --all-extras --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml
	sed -i 's/==\(.*\)+cpu$$/==\1/' $(LOCK)
	$(MAKE) test

# checkov on the template as CloudFormation receives it (the SAM transform, offline); skips and their
# reasons in .checkov.yaml. checkov has its own virtual environment: its pins are not the project's.
CHECKOV = .venv-checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --upgrade pip
	.venv-checkov/bin/python -m pip install --quiet 'checkov>=3.3,<3.4'

# the AWS SAM CLI, in its own virtual environment (its pins are not the project's)
SAM = .venv-sam/bin/sam
$(SAM):
	$(PYTHON) -m venv .venv-sam
	.venv-sam/bin/python -m pip install --quiet --upgrade pip
	.venv-sam/bin/python -m pip install --quiet 'aws-sam-cli==1.170.0'

# the SageMaker Python SDK, only to look up the evaluator's image URIs (scripts/evaluator_images.py)
SAGEMAKER_PY = .venv-sagemaker/bin/python
$(SAGEMAKER_PY):
	$(PYTHON) -m venv .venv-sagemaker
	.venv-sagemaker/bin/python -m pip install --quiet --upgrade pip
	.venv-sagemaker/bin/python -m pip install --quiet 'sagemaker>=2.257,<3'

images: $(SAGEMAKER_PY)
	$(SAGEMAKER_PY) scripts/evaluator_images.py

check-images: $(SAGEMAKER_PY)
	$(SAGEMAKER_PY) scripts/evaluator_images.py --check

# What CI checks before a deploy, offline (no credentials, telemetry off): sam validate --lint
# (cfn-lint); sam build (make and pip only: Lambda's arm64 wheels, no python3.13 needed) and every
# function's unzipped size against Lambda's 250 MB; the layers' versions against requirements.lock; no route that `sam deploy --guided` would ask
# about; the evaluator's image map as the SageMaker SDK gives it; checkov on the template as
# CloudFormation receives it (the SAM transform, offline).
SAM_ENV = SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1
check-template: $(STAMP) $(CHECKOV) $(SAM) check-images
	$(SAM_ENV) $(SAM) validate --lint --template template.yaml
	$(SAM_ENV) PIP="$(CURDIR)/$(BIN)/python -m pip" $(SAM) build --template template.yaml --build-dir build/sam
	$(BIN)/python benchmarks/bundle.py --built build/sam
	$(BIN)/python scripts/lock_versions.py --folder build/sam/AnalysisLayer/python --folder build/sam/DependenciesLayer/python
	$(SAM_ENV) .venv-sam/bin/python tests/guided_auth.py template.yaml
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
	rm -rf $(VENV) $(LATEST) .venv-lock .venv-checkov .venv-sam .venv-sagemaker .pytest_cache .feedback-loop build *.egg-info
