#!/usr/bin/env bash
# The whole test suite (README command 2). Creates or reuses .venv itself.
source "$(dirname "$0")/env.sh"
# the import direction of the house first (contracts in pyproject.toml), then the tests
lint-imports --no-cache
exec python -m pytest -q "$@"
