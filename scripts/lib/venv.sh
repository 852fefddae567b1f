# Sourced by the scripts in scripts/: the project's own virtualenv, created or reused, with
# one of the locks (requirements/NAME.txt) installed into it. Nothing is installed into,
# or taken from, the machine's own Python but the interpreter itself.
#
#   project_venv NAME   sets VENV and puts $VENV/bin first on PATH
#
# The virtualenv is ./.venv beside pyproject.toml ($VISIONWATCH_VENV to choose another).
# A lock is installed again only when it or pyproject.toml has changed since.

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.11 python3 python; do
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "visionwatch needs Python 3.11 or newer (set PYTHON to its path)" >&2
    return 1
}

project_venv() {
    local name=$1 lock=requirements/$1.txt python digest stamp
    VENV=${VISIONWATCH_VENV:-$PWD/.venv}
    if "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "virtualenv: $VENV (reused)" >&2
    else
        python=$(find_python)
        echo "virtualenv: $VENV (created with $("$python" --version 2>&1))" >&2
        rm -rf "$VENV"
        "$python" -m venv "$VENV"
    fi
    digest=$("$VENV/bin/python" -c '
import hashlib, sys
print(hashlib.sha256(b"".join(open(p, "rb").read() for p in sys.argv[1:])).hexdigest())
' "$lock" pyproject.toml)
    stamp=$VENV/.installed-$name
    if [[ ! -f $stamp || $(<"$stamp") != "$digest" ]]; then
        echo "virtualenv: installing $lock (exact versions, hashes checked)" >&2
        local pip=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
        # --no-deps: the lock is complete, so nothing unlocked can slip in; pip check
        # then proves it is consistent.
        "${pip[@]}" install --require-hashes --no-deps -r "$lock"
        "${pip[@]}" install --no-deps --no-build-isolation -e .
        "${pip[@]}" check >&2
        echo "$digest" >"$stamp"
    fi
    export VIRTUAL_ENV=$VENV PATH="$VENV/bin:$PATH"
}
