#!/usr/bin/env bash
# The load harness: Portcullis (full pipeline) side by side with a bare nginx reverse proxy
# and the upstream itself, in one run, on this machine. Installs what it needs (nginx and
# wrk from Debian's packages), builds the release binaries, then runs bench/harness.py.
# Results: bench/results/latest.{md,json}. Options are harness.py's (--help).
set -euo pipefail
cd "$(dirname "$0")/.."

# Help is only help: nothing installed, nothing built.
for arg in "$@"; do
    case "$arg" in
    -h | --help)
        echo "usage: scripts/bench.sh [OPTIONS]"
        echo
        echo "Installs nginx and wrk if missing (Debian packages; as root), builds the release"
        echo "binaries, then runs bench/harness.py with OPTIONS; about 11 minutes from a clean"
        echo "clone on 2 cores. Results: bench/results/latest.{md,json}."
        echo
        exec python3 bench/harness.py --help
        ;;
    esac
done

need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need nginx || missing+=(nginx-light)
need wrk || missing+=(wrk)
need python3 || missing+=(python3)
need openssl || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bench: install ${missing[*]} (Debian packages) first" >&2
        exit 1
    fi
    echo "== installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# 10,000 held requests are 10,000 connections on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "== building release binaries"
cargo build --release --locked -q -p portcullis -p azure-sim --bin portcullis --bin azure-sim --example held_scale
exec python3 bench/harness.py "$@"
