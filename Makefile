# The README's two commands: `make demo` and `make test`. Both set up .venv from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch is installed first and explicitly, so that pip takes the wheel this machine has
# instead of resolving a newer build over the network. Override for other machines, e.g.
#   make test TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint format bench bench-quick bench-retention bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e '.[dev,export,coco,tiff,report,timm,mlflow,wandb]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/segkit train configs/quickstart.yaml --overwrite

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything but the tests marked slow (over 5 s each on 2 cores): the inner loop of development,
# under 3 minutes on 2 cores.
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# ruff, configured in pyproject.toml: the linter and the formatter's check (CI runs this).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python benchmarks/run_all.py

bench-quick: install
	$(BIN)/python benchmarks/run_all.py --quick

# The segmentation retention alone (PSPNet's bf16 gain over a ResNet-50 classifier's), a few
# minutes on 2 cores: the before/after figure of docs/benchmarks.md. One thread, so that the
# CPU-time figure holds when other jobs share the cores.
bench-retention: install
	$(BIN)/python benchmarks/training.py --parts retention --threads 1 --out benchmarks/results/retention.json

# The GPU figures (PSPNet-R50-D8 at 512x1024: training time and memory per precision, inference
# fps; the quickstart's it/s), under 8 minutes on one GPU; without CUDA, tiny CPU rows only.
bench-gpu: install
	$(BIN)/python benchmarks/gpu.py

clean:
	rm -rf $(VENV) build *.egg-info
