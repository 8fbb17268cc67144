#!/usr/bin/env bash
# Routing review for any CI: the plain-shell twin of routing-review.yml.
#
#   1. archc check      the config is valid (diagnostics with file:line:col)
#   2. archc build      --locked: the bundle compiles and archc.lock is up to date
#   3. archc diff       the config of the base branch against this one, with --impact: every golden
#                       conversation whose route or model changes (markdown, ready for a PR comment)
#   4. archc test       golden cases replayed through the router; JUnit XML for the CI's test view
#
# Every step runs even when an earlier one fails, so the reports are complete; the script exits 1
# if any step failed. Settings (environment):
#   ARCHC_CONFIG      config file, relative to the repository root   (default: config.yaml)
#   ARCHC_GOLDEN      golden files or folders, space-separated        (default: golden)
#   ARCHC_BASE_REF    git ref of the reviewed-against config          (default: origin/main)
#   ARCHC_REPORTS     output folder for bundle, impact.md, golden.xml (default: archc-reports)
#   ARCHC_MODEL_DIR   router model folder; unset: the model cache ($ARCHC_MODEL_CACHE or
#                     ~/.cache/archc/models), filled by `archc model pull` when empty; cache that folder
#   ARCHC_FORMAT      text | github (annotations on GitHub Actions)   (default: github on Actions)
#   ARCHC_FAIL_ON_BREAKING=1   also fail when the diff is breaking (exit 4: e.g. an alias removed)
#   ARCHC             the archc command                               (default: archc)
set -uo pipefail

config=${ARCHC_CONFIG:-config.yaml}
golden=${ARCHC_GOLDEN:-golden}
base_ref=${ARCHC_BASE_REF:-origin/main}
reports=${ARCHC_REPORTS:-archc-reports}
archc=${ARCHC:-archc}
if [ -n "${ARCHC_FORMAT:-}" ]; then fmt=$ARCHC_FORMAT
elif [ "${GITHUB_ACTIONS:-}" = "true" ]; then fmt=github
else fmt=text; fi

cd "$(git rev-parse --show-toplevel)" || exit 1
mkdir -p "$reports" || exit 1
rm -f "$reports/bundle.json" "$reports/impact.md" "$reports/golden.xml"
status=0
step() { printf '\n== %s\n' "$*"; }
fail() { echo "routing-review: $*" >&2; status=1; }

# The router model: pulled once into the cache, which CI keeps between runs.
if [ -z "${ARCHC_MODEL_DIR:-}" ] && [ "$($archc model list --format json 2>/dev/null)" = "[]" ]; then
  step "archc model pull"
  $archc model pull --no-progress || fail "could not install the router model"
fi

step "archc check $config"
$archc check "$config" --format "$fmt" || fail "archc check found errors"

step "archc build $config --locked"
$archc build "$config" --locked -o "$reports/bundle.json" --format "$fmt" || fail "archc build --locked failed (run archc build and commit archc.lock)"

# read -a: golden paths are space-separated in ARCHC_GOLDEN.
read -r -a golden_paths <<< "$golden"

step "archc diff $base_ref:$config $config --impact $golden"
if git rev-parse --verify --quiet "$base_ref^{commit}" >/dev/null && git cat-file -e "$base_ref:$config" 2>/dev/null; then
  base_tree=$(mktemp -d)
  # A detached worktree of the base branch: its config compiles with its own lock and includes.
  git worktree add --quiet --detach "$base_tree/tree" "$base_ref" || fail "cannot check out $base_ref"
  $archc diff "$base_tree/tree/$config" "$config" --format markdown \
    --impact "${golden_paths[@]}" ${ARCHC_MODEL_DIR:+--model-dir "$ARCHC_MODEL_DIR"} > "$reports/impact.md"
  rc=$?
  git worktree remove --force "$base_tree/tree" && rm -rf "$base_tree"
  cat "$reports/impact.md"
  case $rc in
    0|3) ;;
    4) [ "${ARCHC_FAIL_ON_BREAKING:-0}" = "1" ] && fail "breaking change against $base_ref" ;;
    *) fail "archc diff --impact failed (exit $rc)" ;;
  esac
else
  echo "no $config at $base_ref: nothing to compare (new config?)" | tee "$reports/impact.md"
fi

# The bundle just built is what gets deployed; if the build failed, test the config itself.
test_input="$reports/bundle.json"
[ -f "$test_input" ] || test_input=$config
step "archc test $test_input $golden"
$archc test "$test_input" "${golden_paths[@]}" --format "$fmt" --junit "$reports/golden.xml" \
  ${ARCHC_MODEL_DIR:+--model-dir "$ARCHC_MODEL_DIR"} || fail "golden routing cases do not match (archc test --update accepts new decisions)"

exit $status
