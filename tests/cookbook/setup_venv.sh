#!/usr/bin/env bash
# Creates (or brings up to date) the venv in which tests/cookbook runs tinker-cookbook 0.6.1 on tinkex.
#
# The cookbook gets a venv of its own because it cannot share the main one: it declares `tinker>=0.38` (which would
# pull in the official SDK, the very package tinkex.compat stands in for) and `tml-renderers>=0.4.1` (which this
# machine's package index cannot satisfy). So it is installed with --no-deps on top of a pinned list of what it
# actually imports (tests/cookbook/requirements.txt), plus this checkout of tinkex, and never the official `tinker`.
#
# Idempotent: a stamp inside the venv records what was installed; a second run with nothing changed takes a second.
# Location: $TINKEX_COOKBOOK_VENV, else tests/cookbook/.venv (what tests/cookbook/test_cookbook.py looks for).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${TINKEX_COOKBOOK_VENV:-$here/.venv}"
cookbook_version="0.6.1"
# torch is pinned as .ci/run pins it: 2.13.0 is a CPU build already on disk here; an unpinned one is a multi-GB download.
torch_pin="torch==2.13.0"

stamp_of() {
    { echo "$cookbook_version $torch_pin $repo"; cat "$here/requirements.txt" "$repo/pyproject.toml"; } | sha256sum | cut -d' ' -f1
}
want="$(stamp_of)"
stamp_file="$venv/.tinkex-cookbook-stamp"
if [ -x "$venv/bin/python" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want" ]; then
    echo "cookbook venv up to date: $venv"
    exit 0
fi

echo "setting up the cookbook venv in $venv (tinker-cookbook==$cookbook_version, no official tinker)"
rm -f "$stamp_file"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip_install() {
    # This machine's pip configuration names local index folders that may be absent; pip warns about each one on
    # every install. Those lines are dropped, everything else pip says is kept, and pip's own status is returned.
    local status=0
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } || status=$?
    return "$status"
}
pip_install "$torch_pin"
pip_install -r "$here/requirements.txt"
pip_install --no-deps "tinker-cookbook==$cookbook_version"
# This checkout of tinkex, editable, without dependencies: requirements.txt already pins every one of them.
pip_install --no-deps -e "$repo"
# The official SDK must not be there: if it were, `import tinker` would no longer be a test of tinkex.compat.
if "$venv/bin/python" -m pip show -q tinker >/dev/null 2>&1; then
    echo "the official 'tinker' package is installed in $venv; remove it (pip uninstall tinker)" >&2
    exit 1
fi
echo "$want" > "$stamp_file"
echo "cookbook venv ready: $venv"
