#!/usr/bin/env bash
# The same run from the command line, then a KD run reusing its teacher. After `make demo`,
# from the repository's root: bash examples/distill_cli.sh (runs/cli-example*). It calls the
# neurokd that `make demo` installed in .venv, so it needs no activated environment;
# NEUROKD=neurokd uses the one on your PATH instead. A second run replaces the first's runs.
set -euo pipefail
neurokd=${NEUROKD:-"$(dirname "$0")/../.venv/bin/neurokd"}
"$neurokd" distill --name cli-example --epochs 5 --teacher-epochs 10 --overwrite
"$neurokd" distill --name cli-example-kd --method kd --epochs 5 --overwrite \
    --teacher runs/cli-example/teacher.pt
