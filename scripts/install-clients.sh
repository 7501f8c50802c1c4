#!/usr/bin/env bash
# Installs the real clients the client tests (proxy/tests/clients.rs) drive through the proxy,
# into <repo>/.local/clients/ (git-ignored), and the browser the dashboard test
# (admin-api/tests/dashboard.rs) drives, and nginx, which the benchmark measures beside the proxy
# (bench/tests/smoke.rs runs it). Idempotent: what is already installed is kept.
#
#   .local/clients/claude-code/   npm prefix of @anthropic-ai/claude-code (exact pin below)
#   .local/clients/bin/claude     symlink to its native `claude` executable
#   .local/clients/py/            Python venv with tests/python/requirements.txt (Anthropic SDK;
#                                 kubernetes-validate, the Kubernetes JSON schemas the manifest
#                                 test validates deploy/kubernetes/ against, offline)
#   .local/clients/k8s-models/    npm prefix of @kubernetes-models/prometheus-operator (exact pin
#                                 below): the ServiceMonitor CRD's schema, for the same test
#   .local/clients/oidc/          npm prefix of oidc-provider (exact pin below): the OpenID
#                                 provider the single sign-on tests run (tests/oidc/idp.mjs)
#   /usr/bin/chromium, /usr/bin/chromedriver, /usr/sbin/nginx   Debian packages chromium +
#                                 chromium-driver + nginx-light (apt, as root or through sudo;
#                                 skipped when all are there)
#
# Needs node + npm (node 20 is fine: the package is a native binary; its `engines` warning is
# harmless) and python3 with venv. Set CLAUDE_CODE_VERSION to try another pinned version.
# The tests find the clients there, or where CCP_TEST_CLAUDE_BIN / CCP_TEST_PYTHON point.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

# Plain `npm install @anthropic-ai/claude-code` on node 20 resolves an older release: pin it.
CLAUDE_CODE_VERSION=${CLAUDE_CODE_VERSION:-2.1.332}
CLIENTS=$ROOT/.local/clients
NPM_PREFIX=$CLIENTS/claude-code
BIN_DIR=$CLIENTS/bin
VENV=$CLIENTS/py
K8S_MODELS=$CLIENTS/k8s-models
K8S_MODELS_PACKAGE=@kubernetes-models/prometheus-operator@6.0.0
OIDC=$CLIENTS/oidc
OIDC_PACKAGE=oidc-provider@9.13.3
REQUIREMENTS=$ROOT/tests/python/requirements.txt

say() { printf 'install-clients: %s\n' "$*"; }
die() {
    printf 'install-clients: error: %s\n' "$*" >&2
    exit 1
}

# Prints the first candidate executable whose `--version` reports $CLAUDE_CODE_VERSION.
find_claude() {
    local pkg=$NPM_PREFIX/node_modules/@anthropic-ai
    local candidates=(
        # The native binary of the platform package (what the wrapper's postinstall copies).
        "$pkg"/claude-code-linux-x64/claude
        "$pkg"/claude-code-linux-arm64/claude
        "$pkg"/claude-code-linux-x64-musl/claude
        "$pkg"/claude-code-linux-arm64-musl/claude
        "$pkg"/claude-code-darwin-arm64/claude
        "$pkg"/claude-code-darwin-x64/claude
        # The wrapper's bin (the native binary once postinstall ran, else a placeholder).
        "$pkg"/claude-code/bin/claude.exe
        "$NPM_PREFIX"/node_modules/.bin/claude
    )
    local c out
    for c in "${candidates[@]}"; do
        [[ -x "$c" ]] || continue
        out=$("$c" --version 2>/dev/null </dev/null) || continue
        if [[ "$out" == "$CLAUDE_CODE_VERSION"* ]]; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    return 1
}

# Prints the warnings and errors of the npm debug logs in directory $1 written since $2 (epoch
# seconds).
print_npm_log() {
    local log lines
    for log in "$1"/*-debug-*.log; do
        [[ -f $log && $(stat -c %Y "$log") -ge $2 ]] || continue
        lines=$(grep -E '^[0-9]+ (warn|error) ' "$log" | grep -v EBADENGINE | tail -n 20) || true
        [[ -n $lines ]] && printf 'install-clients: from %s:\n%s\n' "$log" "$lines" >&2
    done
    return 0
}

install_claude_code() {
    command -v npm >/dev/null || die "npm not found (install node + npm)"
    local claude
    if claude=$(find_claude); then
        say "Claude Code $CLAUDE_CODE_VERSION already installed"
    else
        say "installing @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION into $NPM_PREFIX (npm) ..."
        mkdir -p "$NPM_PREFIX"
        # --save-exact keeps the pin in the prefix's package.json; the engines warning
        # (node >= 22) does not matter for the native binary.
        # Warnings are hidden (the engines one is noise), so a failed install prints its log's
        # warnings and errors: a tar error such as ENOSPC is only a warning there.
        local logs since
        logs=$(npm config get cache 2>/dev/null)/_logs || logs=$HOME/.npm/_logs
        since=$(date +%s)
        if ! npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --save-exact --loglevel=error \
            "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"; then
            print_npm_log "$logs" "$since"
            die "npm install @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION failed"
        fi
        if ! claude=$(find_claude); then
            # npm may not have run the wrapper's postinstall (install scripts not allowed);
            # run it by hand, then look again.
            say "running the package's postinstall by hand ..."
            (cd "$NPM_PREFIX/node_modules/@anthropic-ai/claude-code" && node install.cjs) || true
            claude=$(find_claude) ||
                die "no \`claude\` in $NPM_PREFIX reports version $CLAUDE_CODE_VERSION"
        fi
    fi
    mkdir -p "$BIN_DIR"
    ln -sfn "$claude" "$BIN_DIR/claude"
    local version
    version=$("$BIN_DIR/claude" --version </dev/null)
    [[ "$version" == "$CLAUDE_CODE_VERSION"* ]] ||
        die "$BIN_DIR/claude --version printed '$version', expected $CLAUDE_CODE_VERSION"
    say "claude --version: $version"
}

install_python_sdk() {
    command -v python3 >/dev/null || die "python3 not found"
    local stamp=$VENV/.requirements.txt
    if [[ -x "$VENV/bin/python" ]] && cmp -s "$REQUIREMENTS" "$stamp" &&
        "$VENV/bin/python" -c 'import anthropic' 2>/dev/null; then
        say "Python venv with $(tr '\n' ' ' <"$REQUIREMENTS")already installed"
    else
        if [[ ! -x "$VENV/bin/python" ]]; then
            say "creating Python venv $VENV ..."
            python3 -m venv "$VENV" ||
                die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
        fi
        say "pip install -r tests/python/requirements.txt into $VENV ..."
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
        cp "$REQUIREMENTS" "$stamp"
    fi
    say "anthropic SDK: $("$VENV/bin/python" -c 'import anthropic; print(anthropic.__version__)')"
}

# install_npm_package PREFIX PACKAGE@VERSION FILE: npm-installs the exact version into PREFIX
# unless FILE (relative to PREFIX) is there from the same version.
install_npm_package() {
    local prefix=$1 package=$2 probe=$1/$3 stamp=$1/.package
    if [[ -f $probe && "$(cat "$stamp" 2>/dev/null)" == "$package" ]]; then
        say "$package already installed"
        return 0
    fi
    command -v npm >/dev/null || die "npm not found (install node + npm)"
    say "installing $package into $prefix (npm) ..."
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --save-exact --loglevel=error "$package" ||
        die "npm install $package failed"
    [[ -f $probe ]] || die "$probe is missing after installing $package"
    printf '%s' "$package" >"$stamp"
}

install_k8s_models() {
    install_npm_package "$K8S_MODELS" "$K8S_MODELS_PACKAGE" \
        node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js
}

install_oidc_provider() {
    install_npm_package "$OIDC" "$OIDC_PACKAGE" node_modules/oidc-provider/lib/index.js
}

install_packages() {
    if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver && -x /usr/sbin/nginx ]] && command -v tmux >/dev/null; then
        say "chromium, chromedriver, nginx and tmux already installed"
    else
        command -v apt-get >/dev/null ||
            die "chromium, chromedriver or nginx is missing and there is no apt-get: install Chromium, its chromedriver and nginx"
        local sudo=()
        if [[ $(id -u) -ne 0 ]]; then
            command -v sudo >/dev/null || die "installing chromium and nginx needs root (or sudo)"
            sudo=(sudo)
        fi
        # tmux: the status-line test runs the real Claude Code interactively in it.
        local packages=(chromium chromium-driver nginx-light tmux)
        say "installing ${packages[*]} (apt) ..."
        local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
        # A fresh machine may not have the package lists yet.
        "${apt[@]}" install -y "${packages[@]}" ||
            { "${apt[@]}" update && "${apt[@]}" install -y "${packages[@]}"; } ||
            die "apt-get could not install ${packages[*]}"
    fi
    say "$(/usr/bin/chromedriver --version 2>/dev/null | head -n1); $(/usr/sbin/nginx -v 2>&1); $(tmux -V)"
}

install_claude_code
install_python_sdk
install_k8s_models
install_oidc_provider
install_packages

say "done:"
printf '  CCP_TEST_CLAUDE_BIN=%s  (-> %s)\n' "$BIN_DIR/claude" "$(readlink -f "$BIN_DIR/claude")"
printf '  CCP_TEST_PYTHON=%s\n' "$VENV/bin/python"
printf '  CCP_TEST_K8S_MODELS=%s\n' "$K8S_MODELS"
printf '  CCP_TEST_OIDC_MODULES=%s\n' "$OIDC/node_modules"
