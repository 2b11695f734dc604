# Sourced by scripts/test and scripts/serve: make .venv and install the project
# (again only when pyproject.toml changed).
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.rpa-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "== installing (pip install -e '.[dev]')"
  .venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev]"
  touch "$stamp"
fi
