#!/usr/bin/env bash
# The same run from the command line, then a KD run reusing its teacher.
set -euo pipefail
neurokd distill --name cli-example --epochs 5 --teacher-epochs 10
neurokd distill --name cli-example-kd --method kd --epochs 5 \
    --teacher runs/cli-example/teacher.pt
