# The one list of project commands. README, CI and people use these recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Install what a fresh machine lacks: nats-server (Debian's package), and ONNX Runtime's library
# from the pinned onnxruntime wheel into target/onnxruntime/, where the services find it.
deps:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v nats-server >/dev/null; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq nats-server
    fi
    nats-server --version
    python3 scripts/install-onnxruntime.py target/onnxruntime

# What the tests need besides (Debian's packages): chromium, which the dashboard's test drives
# headless, strace, which records the files a trainer touches, and openssl for test certificates;
# and the S3 server the object-store tests run against (s3s-fs from crates.io, pinned, built
# once into target/tools).
deps-test: deps
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    for tool in chromium strace openssl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    if [ ${#missing[@]} -gt 0 ]; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq "${missing[@]}"
    fi
    if [ "$(target/tools/bin/s3s-fs --version 2>/dev/null)" != "s3s-fs 0.14.1" ]; then
        cargo install --quiet --locked --root target/tools s3s-fs --version 0.14.1 --features binary
    fi

# Build every binary (debug).
build:
    cargo build --workspace --bins --examples

# As the Dockerfile does (README: "Release builds and debug info"):
# Release binaries to ship in target/dist, each one's debug info split off beside it as <binary>.debug.
release:
    cargo build --release --locked --workspace --bins
    ./scripts/split-debuginfo.sh target/dist target/release/mlops target/release/mlops-{registry,ingest,validator,trainer,evaluator,deployer,monitor,step}
    ls -l target/dist

# Start nats-server and the seven services on their default ports; Ctrl-C stops all.
up: deps build
    ./target/debug/mlops up

# Run the whole cascade on the bundled example, narrated.
demo: deps build
    ./target/debug/mlops demo

# Unit tests and end-to-end tests (a private nats-server, the real service binaries).
test: deps-test build
    cargo test --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Kubernetes manifests: each overlay of deploy/k8s rendered as `kubectl kustomize` renders it, every object checked against the Kubernetes 1.30 (kubernetes-validate) and KEDA (@kubernetes-models/keda) schemas; both pinned, installed into target/k8s-check.
check-k8s:
    #!/usr/bin/env bash
    set -euo pipefail
    dir=target/k8s-check
    mkdir -p "$dir"
    [ -x "$dir/venv/bin/python" ] || python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet kubernetes-validate==1.37.0
    cp deploy/k8s/check/package.json deploy/k8s/check/package-lock.json deploy/k8s/check/keda.mjs "$dir/"
    (cd "$dir" && npm ci --silent --no-audit --no-fund)
    "$dir/venv/bin/python" deploy/k8s/check/check_k8s.py --self-test "$dir/keda.mjs"
    "$dir/venv/bin/python" deploy/k8s/check/check_k8s.py deploy/k8s "$dir/keda.mjs"

# Dependencies: licences (permissive only), banned crates (e.g. the unmaintained `backoff`) and sources, offline (deny.toml).
audit:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
    cargo deny check licenses bans sources

# Known advisories (RustSec). The database is cloned from GitHub: where GitHub is unreachable this says so and checks nothing.
advisories:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
    if ! timeout 20 git ls-remote https://github.com/RustSec/advisory-db HEAD >/dev/null 2>&1; then
        echo "advisories NOT checked: the RustSec database (github.com/RustSec/advisory-db) is unreachable from this machine"
        exit 0
    fi
    cargo deny check advisories

# Format the code.
fmt:
    cargo fmt --all

# Data arrival -> model serving on a release build: 10 demo runs each on 3,000 and 10,000 rows.
bench-cascade: deps
    cargo build --release --workspace --bins
    ./scripts/bench-cascade.sh 10 3000
    ./scripts/bench-cascade.sh 10 10000

# Read + validate + profile 1M x 20 from CSV and Parquet, against pandera in a throwaway venv.
bench-data:
    ./scripts/bench-data.sh 1000000

# Serving: single-row OIP REST and gRPC under load, against MLflow models serve and MLServer (throwaway venvs).
bench-serve: deps
    ./scripts/bench-serve.sh 10

# Batch scoring: 10M rows x 20 features by logistic regression and boosted trees, against scikit-learn and MLflow (a throwaway venv).
bench-batch:
    ./scripts/bench-batch.sh 10000000

# Training: logistic regression and boosted trees on 1M x 20 against scikit-learn and LightGBM (a throwaway venv).
bench-train:
    ./scripts/bench-train.sh 1000000

# A code step's overhead over its program's own run time, 1M rows x 20 (release build, the whole platform).
bench-code: deps
    cargo build --release --workspace --bins
    cargo bench -p mlops-integration-tests --bench code_step -- 1000000

# Feature store: online reads (1 and 100 entities x 30 features, 1M entities) and a point-in-time training set
# (1M entity rows x 10M history rows) against Feast's feature server and offline store (a throwaway venv).
bench-features: deps
    ./scripts/bench-features.sh 1000000 10000000 1000000 10

# Drift: every feature's test, 1M reference x 1M current rows x 20 features, against Evidently (a throwaway venv).
bench-drift:
    ./scripts/bench-drift.sh 1000000

# Monitor intake: logged predictions per second read, kept for labels and windowed (release build, the whole platform).
bench-monitor: deps
    cargo build --release --workspace --bins
    cargo bench -p mlops-integration-tests --bench monitor -- 200000

# The prediction archive: compaction rate, and lookup by id among 10M archived predictions (release build, the whole platform).
bench-archive: deps
    cargo build --release --workspace --bins
    cargo bench -p mlops-integration-tests --bench archive -- 10000000 1000000

# The soak (not a CI step): MINUTES of new data every minute and RATE predictions/s with labels, on release
# binaries; samples memory, backlogs and errors every 15 s; fails on 10 % memory growth, any error or dead letter.
soak minutes="30" rate="2000": deps
    cargo build --release --workspace --bins
    cargo bench -p mlops-integration-tests --bench soak -- {{minutes}} {{rate}}

# Install cargo-fuzz (libFuzzer) when missing.
deps-fuzz:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Fuzz one parser of outside input for SECONDS (`cargo fuzz list --fuzz-dir fuzz` names them); not a CI step.
# RUSTC_BOOTSTRAP lets stable rustc take the sanitizer flags. New inputs go to fuzz/target/corpus/, crashes to fuzz/artifacts/.
# Leak detection is off: LeakSanitizer reports the thread-local destructors of the CSV reader's threads; the soak measures memory.
fuzz target seconds="600": deps-fuzz
    mkdir -p fuzz/target/corpus/{{target}}
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O {{target}} target/corpus/{{target}} corpus/{{target}} -- \
        -max_total_time={{seconds}} -rss_limit_mb=4096 -max_len=262144 -timeout=20 -print_final_stats=1 -detect_leaks=0

# Every fuzz target for SECONDS each, two at a time; figures in fuzz/target/logs/.
fuzz-all seconds="600": deps-fuzz
    ./scripts/fuzz-all.sh {{seconds}}
