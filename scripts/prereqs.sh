#!/usr/bin/env bash
# What building and running Agora needs from the system, checked before any build starts.
#
#   scripts/prereqs.sh run     the build: cargo, a C++ compiler, cmake, libclang (llama.cpp's
#                              bindings), python3 with pip (model downloads)
#   scripts/prereqs.sh test    the above, plus what the tests use: python3's venv, ip and
#                              iptables (network-namespace NAT lab), libfaketime (the chaos
#                              suite's clock skew), cargo-nextest, node, npm and chromium (the
#                              dashboard's browser test)
#
# On Debian or Ubuntu as root it installs what is missing with apt-get; anywhere else it prints
# the one command to run and exits with 2. AGORA_NO_INSTALL=1 only names what is missing.
# libclang is looked for in $LIBCLANG_PATH when set (bindgen's own variable), else in the usual
# system directories.
set -euo pipefail

mode="${1:-run}"
case "$mode" in run | test) ;; *) echo "usage: scripts/prereqs.sh run|test" >&2; exit 64 ;; esac

have_cmd() { command -v "$1" >/dev/null 2>&1; }

have_libclang() {
    local dirs=()
    if [[ -n "${LIBCLANG_PATH:-}" ]]; then
        dirs=("$LIBCLANG_PATH")
    else
        dirs=(/usr/lib/llvm-*/lib /usr/lib/*-linux-gnu /usr/lib64 /usr/lib /usr/local/lib
              /opt/homebrew/opt/llvm/lib /usr/local/opt/llvm/lib)
    fi
    local d f
    for d in "${dirs[@]}"; do
        for f in "$d"/libclang.so "$d"/libclang-*.so "$d"/libclang.so.* "$d"/libclang.dylib; do
            [[ -e "$f" ]] && return 0
        done
    done
    return 1
}

# missing: "what|debian package|other systems' hint"
missing=()
need() { missing+=("$1|$2|$3"); }

have_cmd cargo || need "cargo (Rust 1.95 or newer)" "" "install Rust with rustup (https://rustup.rs)"
have_cmd c++ || have_cmd g++ || have_cmd clang++ || need "a C++ compiler" g++ "a C++ compiler (g++ or clang++)"
have_cmd cmake || need "cmake" cmake "cmake"
have_libclang || need "libclang (for llama.cpp's bindings)" libclang-dev "libclang (LLVM; or set LIBCLANG_PATH)"
if ! have_cmd python3; then
    need "python3" python3 "python3 with pip"
elif ! python3 -m pip --version >/dev/null 2>&1; then
    need "python3's pip (model downloads)" python3-pip "pip for python3"
fi
if [[ "$mode" == test ]]; then
    if have_cmd python3 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        need "python3's venv (the OpenAI SDK test)" python3-venv "python3 venv"
    fi
    have_cmd ip || need "ip (network-namespace tests)" iproute2 "iproute2"
    have_cmd iptables || need "iptables (NAT lab tests)" iptables "iptables"
    have_cmd faketime || need "libfaketime (the chaos suite's clock skew)" faketime "libfaketime"
    have_cmd node || need "node (the dashboard's browser test)" nodejs "Node.js 18 or newer"
    have_cmd npm || need "npm (the dashboard's browser test)" npm "npm"
    [[ -n "${AGORA_CHROMIUM:-}" ]] || have_cmd chromium || need "chromium (the dashboard's browser test)" chromium "Chromium at /usr/bin/chromium (or set AGORA_CHROMIUM)"
fi

debian_root() {
    [[ -r /etc/debian_version ]] && have_cmd apt-get && [[ "$(id -u)" -eq 0 ]] \
        && [[ -z "${AGORA_NO_INSTALL:-}" ]]
}

if [[ "${#missing[@]}" -gt 0 ]]; then
    pkgs=()
    manual=()
    echo "prereqs: missing:" >&2
    for m in "${missing[@]}"; do
        IFS='|' read -r what pkg hint <<<"$m"
        echo "  - $what" >&2
        if [[ -n "$pkg" ]]; then pkgs+=("$pkg"); else manual+=("$hint"); fi
    done
    if [[ "${#manual[@]}" -eq 0 ]] && debian_root; then
        echo "prereqs: installing with apt-get: ${pkgs[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
        # Check again: an install that did not make them findable must not let a build start.
        AGORA_NO_INSTALL=1 exec bash "$0" "$mode"
    fi
    for h in "${manual[@]}"; do echo "prereqs: $h" >&2; done
    if [[ "${#pkgs[@]}" -gt 0 ]]; then
        if [[ -r /etc/debian_version ]]; then
            sudo=""; [[ "$(id -u)" -eq 0 ]] || sudo="sudo "
            echo "prereqs: run:  ${sudo}apt-get install -y ${pkgs[*]}" >&2
        elif have_cmd dnf; then
            echo "prereqs: run:  sudo dnf install -y cmake gcc-c++ clang-devel python3-pip iproute iptables libfaketime" >&2
        elif have_cmd brew; then
            echo "prereqs: run:  brew install cmake llvm python" >&2
        else
            echo "prereqs: install: ${pkgs[*]} (Debian package names)" >&2
        fi
    fi
    exit 2
fi

if [[ "$mode" == test ]] && ! have_cmd cargo-nextest; then
    echo "prereqs: installing cargo-nextest (cargo install --locked cargo-nextest)" >&2
    cargo install --locked cargo-nextest
fi
echo "prereqs: ok ($mode)" >&2
