# Set-up and everyday commands. `make run` and `make test` are all a fresh
# machine needs (Debian/Ubuntu with Python >= 3.11; `make test` installs the
# system packages the integration tests use, with apt-get, as root or via sudo).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := prometheus golang-go golang-github-robfig-cron-dev golang-google-protobuf-dev protoc-gen-go

.PHONY: run test system-deps install install-test bench lint proto clean lock deploy/install.yaml

$(PY):
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
		echo "$(PYTHON) -m venv needs ensurepip: install python3-venv (apt-get install python3-venv)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# constraints.txt pins every run-time dependency, transitive ones too, to the
# versions the tests ran with; the container image installs the same.
install: $(PY)
	$(PY) -m pip install --quiet -c constraints.txt .

install-test: $(PY)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'

# Pin again after changing pyproject.toml's dependencies: pins that still satisfy
# it are kept; `make lock LOCK_FLAGS=--upgrade` moves every pin to the newest.
lock: $(PY)
	$(PY) -m pip install --quiet pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" $(PY) -m piptools compile --quiet --strip-extras \
		--no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(LOCK_FLAGS) \
		--output-file constraints.txt pyproject.toml

# prometheus + promtool: the real Prometheus the tests start on loopback.
# golang + robfig/cron: the reference KEDA's cron scaler uses, for parity tests.
# protobuf-go + protoc-gen-go: the bytes a Go client (KEDA) sends, for the request cache.
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null && command -v promtool >/dev/null || missing="yes"; \
	command -v go >/dev/null || missing="yes"; \
	[ -d /usr/share/gocode/src/github.com/robfig/cron ] || missing="yes"; \
	[ -d /usr/share/gocode/src/google.golang.org/protobuf ] || missing="yes"; \
	command -v protoc-gen-go >/dev/null || missing="yes"; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi

# The main job on a laptop: a cost-versus-latency simulation on the bundled trace.
run: install
	$(VENV)/bin/tidescaler simulate

test: system-deps install-test
	$(PY) -m pytest -q --durations=15

bench: system-deps install-test
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	$(PY) benchmarks/bench_grpc.py
	$(PY) benchmarks/bench_telemetry.py
	$(PY) benchmarks/bench_policy.py
	$(PY) benchmarks/bench_kube_events.py
	$(PY) benchmarks/bench_forecast.py
	$(PY) benchmarks/bench_forecast_memory.py
	$(PY) benchmarks/bench_sim.py
	$(PY) benchmarks/bench_frontier.py --jobs 2
	$(PY) benchmarks/bench_forecast_action.py
	$(PY) benchmarks/bench_fleet.py

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy scaler benchmarks simulations

proto: install-test
	$(PY) -m grpc_tools.protoc -Iscaler/proto=protos --python_out=. --grpc_python_out=. \
		--pyi_out=. protos/externalscaler.proto

# The kustomize base rendered for `kubectl apply -f` (tests fail when it is stale).
deploy/install.yaml: install-test
	$(PY) tests/kustomize_render.py deploy > $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis tests/.oracle
