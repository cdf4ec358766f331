#!/bin/sh
# Re-evaluates every best design with coex eval (the sweep's mapper budget and seed).
cd "$(dirname "$0")"
coex eval --workload 100.workload.toml --accel 100.accel.toml --budget 60 --seed 1
