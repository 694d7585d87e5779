#!/usr/bin/env bash
# The main job end to end on the embedded defaults (README command 1).
source "$(dirname "$0")/env.sh"
exec python -m k3m.demo "$@"
