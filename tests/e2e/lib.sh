# Sourced first by the e2e scripts: the pass/fail counters, check, and make_tmp.
# A script ends with its summary line and `[ $fail -eq 0 ]` (its exit status).

pass=0 fail=0
# check DESCRIPTION COMMAND: COMMAND (eval'd) succeeding counts a pass; failing counts a
# failure and prints "FAIL: DESCRIPTION".
check() { if eval "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi; }
# make_tmp [MKTEMP_ARGS...]: $tmp, a fresh folder removed when the script exits; the script
# exits 1 when none can be made.
make_tmp() {
  tmp=$(mktemp -d "$@") || exit 1
  trap 'rm -rf "$tmp"' EXIT
}
