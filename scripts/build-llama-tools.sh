#!/usr/bin/env bash
# Builds llama.cpp's own tools (llama-bench, llama-speculative, llama-speculative-simple, llama-lookup)
# against the very llama.cpp library that Tandem compiles, with the cmake flags llama-cpp-sys-2 derives
# from our rustflags, so that `tandem bench decode --llama-bench` compares like with like.
#
# Where the sources come from (say this whenever you quote a number measured with these tools):
#   - the library (ggml, llama, common) is the crate's own: the `llama.cpp/` directory of the
#     llama-cpp-sys-2 version pinned in Cargo.lock, from the cargo registry;
#   - the crate ships that tree with the sources of `tools/` and `examples/` removed, so the four tool
#     programs are taken from an OLDER llama.cpp release: the one vendored by the llama-cpp-python
#     0.3.36 sdist (ggml 0.25.3, where the crate has ggml 0.26.0). Only the tools' main programs are
#     older; they link the crate's library.
#
# Usage: scripts/build-llama-tools.sh [TARGET_CPU]
#   TARGET_CPU  a rustc target-cpu (x86-64-v3, x86-64-v4, ...); default: the one in .cargo/config.toml.
# Environment:
#   LLAMA_TOOLS        tools to build (default: llama-bench llama-speculative llama-speculative-simple llama-lookup)
#   LLAMA_TOOLS_DIR    where to build (default: target/llama-tools); binaries land in $LLAMA_TOOLS_DIR/$TARGET_CPU/bin
#   LLAMA_TOOLS_SDIST  a llama_cpp_python-0.3.36.tar.gz already downloaded (default: pip downloads it)
#   JOBS               parallel compile jobs (default: nproc)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

target_cpu=${1:-$(sed -n 's/.*"target-cpu=\([^"]*\)".*/\1/p' .cargo/config.toml | head -n 1)}
if [[ -z "$target_cpu" ]]; then
    echo "no target-cpu given and none found in .cargo/config.toml" >&2
    exit 2
fi
tools=${LLAMA_TOOLS:-llama-bench llama-speculative llama-speculative-simple llama-lookup}
out=${LLAMA_TOOLS_DIR:-$repo/target/llama-tools}
jobs=${JOBS:-$(nproc)}
sdist_version=0.3.36

# The crate's llama.cpp: the llama-cpp-sys-2 version Cargo.lock pins, from the cargo registry.
sys_version=$(awk '/^name = "llama-cpp-sys-2"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
crate_src=$(ls -d "$cargo_home"/registry/src/*/"llama-cpp-sys-2-$sys_version"/llama.cpp 2>/dev/null | head -n 1 || true)
if [[ -z "$crate_src" ]]; then
    echo "llama-cpp-sys-2 $sys_version is not in $cargo_home/registry/src: run 'cargo fetch' first" >&2
    exit 1
fi

work="$out/$target_cpu"
mkdir -p "$out"

# The tool sources: the llama.cpp vendored by the llama-cpp-python sdist.
sdist=${LLAMA_TOOLS_SDIST:-$out/sdist/llama_cpp_python-$sdist_version.tar.gz}
if [[ ! -f "$sdist" ]]; then
    python3 -m pip download --no-binary :all: --no-deps -d "$out/sdist" "llama-cpp-python==$sdist_version"
fi
sdist_root="llama_cpp_python-$sdist_version/vendor/llama.cpp"

echo "library: $crate_src (llama-cpp-sys-2 $sys_version)"
echo "tools:   $sdist ($sdist_root)"
echo "cpu:     $target_cpu -> $work"

# A fresh copy of the crate's tree with the tool directories put back under tools/.
rm -rf "$work/src"
mkdir -p "$work/src"
cp -r "$crate_src/." "$work/src/"
tool_dirs=(tools/llama-bench examples/speculative examples/speculative-simple examples/lookup)
tar -xzf "$sdist" -C "$work" "${tool_dirs[@]/#/$sdist_root/}"
{
    echo "# Reduced by scripts/build-llama-tools.sh to the tools taken from llama-cpp-python $sdist_version."
    echo "find_package(Threads REQUIRED)"
    echo "llama_add_compile_flags()"
    for dir in "${tool_dirs[@]}"; do
        name=$(basename "$dir")
        rm -rf "$work/src/tools/$name"
        cp -r "$work/$sdist_root/$dir" "$work/src/tools/$name"
        echo "add_subdirectory($name)"
    done
} >"$work/src/tools/CMakeLists.txt"
rm -rf "$work/llama_cpp_python-$sdist_version"

# The flags llama-cpp-sys-2's build.rs derives (no target-cpu=native): GGML_NATIVE off, -march set to the
# target cpu, and one GGML_* option per target feature it recognises. Ask rustc for the features so the
# mapping is the crate's, not a hand-kept list.
flags=(-DGGML_NATIVE=OFF "-DCMAKE_C_FLAGS=-march=$target_cpu" "-DCMAKE_CXX_FLAGS=-march=$target_cpu")
while read -r feature; do
    case "$feature" in
        avx) flags+=(-DGGML_AVX=ON) ;;
        avx2) flags+=(-DGGML_AVX2=ON) ;;
        avx512bf16) flags+=(-DGGML_AVX512_BF16=ON) ;;
        avx512vbmi) flags+=(-DGGML_AVX512_VBMI=ON) ;;
        avx512vnni) flags+=(-DGGML_AVX512_VNNI=ON) ;;
        avxvnni) flags+=(-DGGML_AVX_VNNI=ON) ;;
        bmi2) flags+=(-DGGML_BMI2=ON) ;;
        f16c) flags+=(-DGGML_F16C=ON) ;;
        fma) flags+=(-DGGML_FMA=ON) ;;
        sse4.2) flags+=(-DGGML_SSE42=ON) ;;
    esac
done < <(rustc --print cfg -C "target-cpu=$target_cpu" | sed -n 's/^target_feature="\(.*\)"$/\1/p')
# The rest of what the crate sets for a plain CPU build with the `openmp` feature, plus the tools.
flags+=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_OPENMP=ON -DGGML_BLAS=OFF
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF)
printf 'cmake flags:'
printf ' %s' "${flags[@]}"
echo

cmake -S "$work/src" -B "$work/build" "${flags[@]}" >"$work/configure.log"
read -ra targets <<<"$tools"
cmake --build "$work/build" --parallel "$jobs" --target "${targets[@]}"
mkdir -p "$work/bin"
for tool in "${targets[@]}"; do
    cp "$work/build/bin/$tool" "$work/bin/"
done
{
    echo "library: llama-cpp-sys-2 $sys_version ($crate_src)"
    echo "tools: llama-cpp-python $sdist_version sdist ($sdist_root)"
    printf 'cmake flags:'
    printf ' %s' "${flags[@]}"
    echo
} >"$work/bin/PROVENANCE"
echo "built: $(ls "$work/bin" | tr '\n' ' ')"
