#!/usr/bin/env bash
# What the suite needs from the system, beside the virtualenv: Debian's chromium at the major
# version playwright drives (tests/ui), and PostgreSQL's initdb with its `postgres` user
# (tests/servers). `make test` runs this first. As root it installs what is missing with apt;
# otherwise it fails naming the command that would.
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python

want=$("$python" - <<'PY'
import json, pathlib, playwright
browsers = pathlib.Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
print(next(b["browserVersion"] for b in json.loads(browsers.read_text())["browsers"]
           if b["name"] == "chromium"))
PY
)
chromium_version() {
    { /usr/bin/chromium --version 2>/dev/null || true; } | grep -oE '[0-9]+(\.[0-9]+){3}' | head -n1 \
        || true
}
have_postgres() { ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1; }

have=$(chromium_version)
missing=()
[ "${have%%.*}" = "${want%%.*}" ] || missing+=(chromium)
have_postgres || missing+=(postgresql)
root=$([ "$(id -u)" -eq 0 ] && echo yes || echo no)

if [ ${#missing[@]} -gt 0 ]; then
    echo "test parts: missing ${missing[*]} (chromium ${want%%.*} for playwright; found: ${have:-none})"
    if [ "$root" = no ]; then
        echo "test parts: installing needs root: run 'sudo scripts/test_parts.sh', then 'make test'" >&2
        exit 1
    fi
    # chromium's matching build comes from the security suite (bookworm's main suite is older)
    log=$(mktemp)
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        "${missing[@]}"; } > "$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "test parts: apt-get install ${missing[*]} failed (log above)" >&2
        exit 1
    fi
    have=$(chromium_version)
    if [ "${have%%.*}" != "${want%%.*}" ]; then
        echo "test parts: Debian's chromium is ${have:-missing}, playwright expects Chromium $want" >&2
        exit 1
    fi
fi

# postgres refuses to run as root: as root, tests/servers run it as the `postgres` OS user,
# which the package creates; an image without it gets it here.
if [ "$root" = yes ] && ! id postgres > /dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
echo "test parts: /usr/bin/chromium $have (playwright expects $want), $(ls -d /usr/lib/postgresql/*/bin/initdb | head -n1)"
