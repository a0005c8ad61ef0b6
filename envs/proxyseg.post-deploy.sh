#!/usr/bin/env bash
# Run by Snakemake (--use-conda) inside the new environment: install this checkout's proxyseg package
# (editable, dependencies already installed from proxyseg.yaml), so that rules can call `proxyseg`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python -m pip install --no-deps -e "$repo"
