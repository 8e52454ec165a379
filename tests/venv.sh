# Sourced by tests/run and notebooks/open: makes and updates the project's virtualenvs.
#
# ensure_venv DIR KIND PIP-ARGS...  creates DIR if needed and runs `pip install PIP-ARGS`
# when the stamp (a hash of pyproject.toml, the interpreter, this recipe and PIP-ARGS)
# differs from the last successful install, so re-runs cost nothing. A `--then` among
# PIP-ARGS splits them into several `pip install` commands run in order (an existing
# stack first, then the project into it, as a user would).
#
# OLLAMA_NB_PYTHON picks the interpreter for new venvs (default python3); a caller may
# set PYTHON for one call (`PYTHON=python3.11 ensure_venv ...`).

PYTHON="${OLLAMA_NB_PYTHON:-python3}"
# Bump when the install commands change, so existing venvs are re-installed.
VENV_RECIPE=2
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say() { printf '[%s] %s\n' "${VENV_LOG_PREFIX:-setup}" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "${VENV_LOG_PREFIX:-setup}" "$*" >&2; }

_venv_stamp() {
    local dir="$1" kind="$2"
    shift 2
    {
        cat pyproject.toml
        "$dir/bin/python" -c 'import sys; print(sys.version)'
        echo "recipe=$VENV_RECIPE kind=$kind args=$*"
    } | sha256sum | cut -d' ' -f1
}

# venv_current DIR KIND PIP-ARGS...  true when DIR's last successful install was exactly
# this one and pyproject.toml has not changed since (nothing is installed).
venv_current() {
    local dir="$1"
    [[ -x "$dir/bin/python" && -f "$dir/.ollama-nb-stamp" ]] &&
        [[ "$(_venv_stamp "$@" 2>/dev/null)" == "$(cat "$dir/.ollama-nb-stamp")" ]]
}

_pip_filter() {
    if [[ "${VENV_PROGRESS:-}" == 1 ]]; then
        awk -v p="${VENV_LOG_PREFIX:-setup}" '/^Collecting /{ printf "[%s]   %s\n", p, $2; fflush() }
            /^Successfully installed/{ printf "[%s]   installed %d packages\n", p, NF - 2 }
            /^(ERROR|error)/{ print }'
    else
        grep -v 'is ignored: it is neither a file nor a directory' || true
    fi
}

ensure_venv() {
    local dir="$1" kind="$2"
    shift 2
    local stamp_file="$dir/.ollama-nb-stamp" want have=""
    if [[ -e "$dir" ]] && ! "$dir/bin/python" -c 'import sys' >/dev/null 2>&1; then
        warn "$dir is broken (its python does not run): re-creating it"
        rm -rf "$dir"
    fi
    if [[ ! -e "$dir/bin/python" ]]; then
        say "creating $dir ($("$PYTHON" --version 2>&1))"
        "$PYTHON" -m venv "$dir"
    fi
    want="$(_venv_stamp "$dir" "$kind" "$@")"
    [[ -f "$stamp_file" ]] && have="$(cat "$stamp_file")"
    if [[ "$want" == "$have" ]]; then
        say "$dir is up to date"
        return 0
    fi
    say "installing into $dir: $*"
    rm -f "$stamp_file"
    local group=() arg
    for arg in "$@" --then; do
        if [[ "$arg" != --then ]]; then
            group+=("$arg")
            continue
        fi
        # (this machine's pip config names local indexes that may be absent: drop that noise)
        # With VENV_PROGRESS=1 each package is named as pip collects it (a first install
        # takes a minute: say what is happening); otherwise pip is quiet.
        "$dir/bin/python" -m pip install $([[ "${VENV_PROGRESS:-}" == 1 ]] || echo --quiet) \
            "${group[@]}" 2>&1 | _pip_filter
        [[ "${PIPESTATUS[0]}" == 0 ]] || { warn "pip install ${group[*]} failed"; return 1; }
        group=()
    done
    echo "$want" >"$stamp_file"
}
