#!/usr/bin/env bash
# Builds `tandem` with llama.cpp's run-time choice of CPU kernels (`--features cpu-variants`) and
# installs it where it finds what it needs: the binary, llama.cpp's shared libraries and the CPU
# variant modules (libggml-cpu-haswell.so, -skylakex, -zen4, -sapphirerapids, ...) in one directory,
# with a link on the PATH. The binary looks for its libraries beside itself (rpath $ORIGIN, set by
# crates/cli/build.rs) and so does the variant loader (crates/llama/src/cpu.rs).
#
# Usage: scripts/install.sh [PREFIX]
#   PREFIX  default: /usr/local as root, ~/.local otherwise
#   installs PREFIX/lib/tandem/{tandem, libllama.so*, libggml*.so*} and PREFIX/bin/tandem -> ../lib/tandem/tandem
# Environment:
#   TANDEM_PROFILE  cargo profile to build (default: release)
#   TANDEM_FEATURES extra features for the `tandem` package, comma-separated (e.g. cuda)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if [[ $# -gt 0 ]]; then
    prefix=$1
elif [[ $(id -u) -eq 0 ]]; then
    prefix=/usr/local
else
    prefix=$HOME/.local
fi
profile=${TANDEM_PROFILE:-release}
features=tandem/cpu-variants
extra=${TANDEM_FEATURES:-}
for feature in ${extra//,/ }; do
    features+=",tandem/$feature"
done

# Cargo's JSON messages name the binary it built and the build directory of llama-cpp-sys-2, where
# the shared libraries (out/lib) and the variant modules (out/backends) are.
messages=$(mktemp)
trap 'rm -f "$messages"' EXIT
cargo build --workspace --profile "$profile" --features "$features" \
    --message-format=json-render-diagnostics >"$messages"
exe=$(grep '"reason":"compiler-artifact"' "$messages" |
    sed -n 's/.*"executable":"\([^"]*\/tandem\)".*/\1/p' | tail -n 1)
out_dir=$(grep '"reason":"build-script-executed"' "$messages" | grep 'llama-cpp-sys-2@' |
    sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)
if [[ -z $exe || -z $out_dir ]]; then
    echo "could not find the built binary or llama.cpp's build directory in cargo's output" >&2
    exit 1
fi
shopt -s nullglob
libs=("$out_dir"/lib/lib*.so*)
variants=("$out_dir"/backends/libggml-cpu-*.so)
if [[ ${#libs[@]} -eq 0 || ${#variants[@]} -eq 0 ]]; then
    echo "no shared libraries or CPU variants in $out_dir" >&2
    exit 1
fi

dest=$prefix/lib/tandem
mkdir -p "$dest" "$prefix/bin"
# Old libraries and variants go: a stale variant could outscore the new ones.
rm -f "$dest"/tandem "$dest"/lib*.so*
cp "$exe" "$dest/tandem"
cp -P "${libs[@]}" "$dest/" # the soname links with the files they name
cp "${variants[@]}" "$dest/"
ln -sfn ../lib/tandem/tandem "$prefix/bin/tandem"

echo "installed $prefix/bin/tandem -> $dest/tandem with ${#variants[@]} CPU variants"
"$prefix/bin/tandem" --version
case ":$PATH:" in
    *":$prefix/bin:"*) ;;
    *) echo "add $prefix/bin to your PATH" ;;
esac
