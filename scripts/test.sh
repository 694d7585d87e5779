#!/usr/bin/env bash
# The whole test suite (README command 2). Creates or reuses .venv itself.
source "$(dirname "$0")/env.sh"
exec python -m pytest -q "$@"
