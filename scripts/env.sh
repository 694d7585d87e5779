# Sourced by the README's commands: create or reuse the project's virtual environment.
# The environment is rebuilt only when pyproject.toml or constraints.txt change.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${K3M_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
stamp_want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[k3m] creating virtual environment $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.k3m-stamp" 2>/dev/null)" != "$stamp_want" ]; then
  echo "[k3m] installing the project and pinned dependencies (constraints.txt)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT[dev,eval,scale]" >&2
  echo "$stamp_want" > "$VENV/.k3m-stamp"
fi
export PATH="$VENV/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cd "$ROOT"
