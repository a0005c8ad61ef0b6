#!/usr/bin/env bash
# Re-resolve the locked environment after a change to pyproject.toml's dependencies (or to take newer
# releases): writes requirements.lock (every package, exact versions, sha256 hashes of every wheel and
# sdist, for every platform: a universal resolution) and the pip section of envs/proxyseg.yaml (the rules'
# runtime packages at the lock's versions). Needs uv (`pip install uv`) and the package registry.
# tests/workflow/test_envs.py fails when pyproject.toml, the lock and the conda environment disagree.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
uv="${UV:-uv}"

# Whole environment: the package's dependencies, every extra, and the build backend (installed with
# --no-build-isolation, so that building the editable install downloads nothing unlocked).
backend="$(python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml","rb"))["build-system"]["requires"])')"
# uv keeps the versions already in its output file where they still fit: start from the current lock, so
# that adding a dependency moves no other pin (delete requirements.lock first to take newer releases)
if [ -f requirements.lock ]; then grep -v '^#' requirements.lock > requirements.lock.new; fi
echo "$backend" | "$uv" pip compile pyproject.toml - --all-extras --universal --python-version 3.11 \
    --generate-hashes --no-header --quiet -o requirements.lock.new
{
    echo "# The whole environment of proxyseg, locked: refresh with 'bash envs/refresh-lock.sh' (docs/development.md)."
    echo "# Install: pip install -r requirements.lock && pip install --no-deps --no-build-isolation -e ."
    cat requirements.lock.new
} > requirements.lock.tmp
rm requirements.lock.new

# The rules' conda environment: the runtime dependencies (snakemake itself runs outside it), resolved with
# the lock as constraints so that every version is the lock's.
runtime="$(python3 -c 'import tomllib; print("\n".join(d for d in tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"] if not d.startswith("snakemake")))')"
pins="$(echo "$runtime" | "$uv" pip compile - --constraint requirements.lock.tmp --universal \
    --python-version 3.11 --no-header --no-annotate --quiet)"
python3 - "$pins" <<'EOF'
import re, sys
path = "envs/proxyseg.yaml"
head = open(path).read().split("  - pip:\n")[0]
lines = [l for l in sys.argv[1].splitlines() if l.strip() and not l.startswith("#")]
body = "".join(f'      - "{l.strip()}"\n' for l in lines)
tmp = path + ".tmp"
open(tmp, "w").write(head + "  - pip:\n" + body)
import os; os.replace(tmp, path)
EOF
mv requirements.lock.tmp requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) packages; envs/proxyseg.yaml: $(grep -c '==' envs/proxyseg.yaml)"
