#!/usr/bin/env bash
# From a commit to production, through staging, with no hand in between: the steps every CI
# example here runs (github-actions.yml, gitlab-ci.yml, the git server hook post-receive).
#
#   deliver.sh SPEC SAMPLE [more `mlops pipeline test` options, e.g. --expect roc_auc=0.75]
#
# 1. `mlops pipeline test`: the spec, the data checks on SAMPLE, training on it, the gates on its
#    holdout, the model served and reproduced; no platform needed. A failure stops here.
# 2. Apply the spec (and its code) to staging, which retrains on its production-like data.
# 3. Wait for staging's verdict on that revision: its gates against staging's serving model.
# 4. Promote exactly that revision to production (refused unless staging passed it).
# 5. Wait for production's verdict: it retrains on its own data, through its own gates.
#
# Needs: `mlops` on PATH (or $MLOPS); an environments file naming `staging` and `production`
# ($MLOPS_ENVIRONMENTS, else ~/.config/mlops/environments.yaml; see environments.yaml here).
# Optional: $MLOPS_COMMIT (else GITHUB_SHA, CI_COMMIT_SHA or the work tree's HEAD), $MLOPS_REPORTS
# (where the JUnit XML goes, default `reports`), $MLOPS_WAIT_SECS (each wait's limit, default 1800).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 SPEC SAMPLE [pipeline test options]" >&2; exit 2; }
spec=$1 sample=$2
shift 2
mlops=${MLOPS:-mlops}
reports=${MLOPS_REPORTS:-reports}
wait_secs=${MLOPS_WAIT_SECS:-1800}
mkdir -p "$reports"

echo "== 1/5 pipeline test $spec on $sample"
"$mlops" pipeline test "$spec" --data "$sample" --junit "$reports/pipeline-test.xml" "$@"

echo "== 2/5 apply to staging"
applied=$("$mlops" --env staging pipeline apply "$spec" ${MLOPS_COMMIT:+--commit "$MLOPS_COMMIT"} --json)
echo "$applied"
name=$(sed -n 's/.*"name":"\([^"]*\)".*/\1/p' <<<"$applied")
revision=$(sed -n 's/.*"revision":\([0-9]*\).*/\1/p' <<<"$applied")

echo "== 3/5 staging's verdict on $name revision $revision"
"$mlops" --env staging pipeline wait "$name" --revision "$revision" --timeout "$wait_secs"

echo "== 4/5 promote $name revision $revision to production"
promoted=$("$mlops" pipeline promote "$name" --from staging --to production --revision "$revision" --json)
echo "$promoted"
target=$(sed -n 's/.*"to_revision":\([0-9]*\).*/\1/p' <<<"$promoted")

echo "== 5/5 production's verdict on $name revision $target"
"$mlops" --env production pipeline wait "$name" --revision "$target" --timeout "$wait_secs"
