#!/usr/bin/env bash
# Creates (or brings up to date) one venv per official SDK version that tests/official runs against LocalServer:
# tinker==0.38.0 (today's dialect: client/config handshake, protobuf bodies) and tinker==0.16.1 (the JSON dialect).
#
# Each official SDK gets a venv of its own: it must not share one with tinkex (tinkex.compat stands in for `tinker`
# there) nor with the other version. Nothing of this checkout is installed into them: the test runs
# tests/official/recipe.py with the venv's python, against a LocalServer started by the test process.
#
# Idempotent: a stamp inside each venv records what was installed; a second run with nothing changed takes a second.
# Location: $TINKEX_OFFICIAL_VENVS, else tests/official/.venv (what tests/official/test_official_sdk.py looks for);
# the venv of version V is <location>/tinker-V.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${TINKEX_OFFICIAL_VENVS:-$here/.venv}"
versions=("0.38.0" "0.16.1")

pip_install() {
    # This machine's pip configuration names local index folders that may be absent; pip warns about each one on
    # every install. Those lines are dropped, everything else pip says is kept, and pip's own status is returned.
    local venv="$1"; shift
    local status=0
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } || status=$?
    return "$status"
}

mkdir -p "$root"
for version in "${versions[@]}"; do
    venv="$root/tinker-$version"
    want="tinker==$version"
    stamp_file="$venv/.tinkex-official-stamp"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want" ]; then
        echo "official SDK venv up to date: $venv"
        continue
    fi
    echo "setting up $want in $venv"
    rm -f "$stamp_file"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    pip_install "$venv" "$want"
    "$venv/bin/python" -c "import tinker, sys; sys.exit(0 if tinker.__version__ == '$version' else 1)" || {
        echo "$venv does not import tinker $version" >&2
        exit 1
    }
    echo "$want" > "$stamp_file"
    echo "official SDK venv ready: $venv"
done
