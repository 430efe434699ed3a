# Sourced by the Python suites' run.sh: `ensure_venv VENV REQUIREMENTS` creates the virtualenv when missing and
# installs the pinned requirements when they changed since the last install (a sha256 stamp in the venv).
ensure_venv() {
    local venv="$1" requirements="$2"
    local stamp="$venv/.requirements.sha256" want
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [[ ! -x "$venv/bin/python" ]]; then
        python3 -m venv "$venv"
    fi
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        echo "$want" > "$stamp"
    fi
}
