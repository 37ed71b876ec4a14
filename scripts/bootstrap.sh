# shellcheck shell=bash
# Shared bootstrap for scripts/serve and scripts/test. Source it, then call `bootstrap EXTRAS`.
# Idempotent: every step checks first and says what it did or skipped.
#
# Environment knobs:
#   XIAOZHI_PYTHON      python interpreter to build the venv with (default: python3.11, python3)
#   XIAOZHI_WHEELHOUSE  where the compiled llama-cpp-python wheel is cached
#                       (default: ~/.cache/xiaozhi-local/wheelhouse)

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
WHEELHOUSE="${XIAOZHI_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/xiaozhi-local/wheelhouse}"
LLAMA_VERSION="0.3.36"
# Portable x86-64 flags (AVX2/FMA, any CPU from ~2015 on). GGML_NATIVE=OFF alone would disable
# all SIMD; on aarch64 (Raspberry Pi 5) the defaults are already portable.
LLAMA_CMAKE_ARGS_X86="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
LLAMA_CMAKE_ARGS_ARM="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"

say() { printf '\033[1;34m[bootstrap]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[bootstrap] error:\033[0m %s\n' "$*" >&2; exit 1; }

pick_python() {
  local candidates=("${XIAOZHI_PYTHON:-}" python3.11 python3.12 python3.13 python3)
  for py in "${candidates[@]}"; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      PYTHON="$(command -v "$py")"
      return 0
    fi
  done
  return 1
}

# Debian packages this needs, as (package, test command) pairs.
missing_system_packages() {
  local missing=()
  ldconfig -p 2>/dev/null | grep 'libopus\.so\.0' >/dev/null || missing+=(libopus0)
  if [ -n "${PYTHON:-}" ]; then
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  else
    missing+=(python3 python3-venv)
  fi
  if ! have_llama_wheel; then
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    { command -v gcc >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1 && command -v make >/dev/null 2>&1; } ||
      missing+=(build-essential)
    if [ -n "${PYTHON:-}" ]; then
      "$PYTHON" -c 'import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' ||
        missing+=(python3-dev)
    fi
  fi
  echo "${missing[@]:-}"
}

ensure_system_packages() {
  local missing
  missing="$(missing_system_packages)"
  if [ -z "${missing// /}" ]; then
    say "system packages: all present"
    return
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages with apt: $missing"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
  else
    die "missing system packages: $missing
run this, then start again:
    sudo apt-get update && sudo apt-get install -y $missing"
  fi
}

have_llama_wheel() {
  compgen -G "$WHEELHOUSE/llama_cpp_python-${LLAMA_VERSION}-*.whl" >/dev/null
}

ensure_llama_wheel() {
  if have_llama_wheel; then
    say "llama-cpp-python $LLAMA_VERSION: cached wheel in $WHEELHOUSE"
    return
  fi
  local args="$LLAMA_CMAKE_ARGS_X86"
  case "$(uname -m)" in aarch64|arm64) args="$LLAMA_CMAKE_ARGS_ARM" ;; esac
  mkdir -p "$WHEELHOUSE"
  say "llama-cpp-python $LLAMA_VERSION: compiling once with portable flags (5-15 minutes)"
  say "  CMAKE_ARGS=\"$args\""
  local tmp
  tmp="$(mktemp -d)"
  CMAKE_ARGS="$args" "$VENV/bin/pip" wheel --no-cache-dir --no-deps --progress-bar off \
      -w "$tmp" "llama-cpp-python==$LLAMA_VERSION"
  mv "$tmp"/llama_cpp_python-*.whl "$WHEELHOUSE"/
  rmdir "$tmp" 2>/dev/null || true
  say "llama-cpp-python: wheel cached in $WHEELHOUSE"
}

ensure_venv() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    say "virtualenv: $VENV ($("$VENV/bin/python" -V 2>&1))"
    return
  fi
  say "virtualenv: creating $VENV with $PYTHON ($("$PYTHON" -V 2>&1))"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
}

# Install the project (editable) with its pinned dependencies; skipped when nothing changed.
ensure_project() {
  local extras="$1" stamp="$VENV/.xiaozhi-install-stamp" want
  want="$( { cat "$REPO/pyproject.toml"; echo "extras=$extras"; ls "$WHEELHOUSE"; "$VENV/bin/python" -V; } | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c 'import xiaozhi_local, llama_cpp' 2>/dev/null; then
    say "python packages: up to date (pyproject.toml unchanged)"
    return
  fi
  say "python packages: installing xiaozhi-local${extras:+[$extras]} and its pinned dependencies"
  "$VENV/bin/pip" install --quiet --progress-bar off --find-links "$WHEELHOUSE" \
      --only-binary llama-cpp-python -e "$REPO${extras:+[$extras]}"
  echo "$want" > "$stamp"
  say "python packages: installed"
}

bootstrap() {
  local extras="${1:-}"
  say "repository: $REPO"
  pick_python || { PYTHON=""; ensure_system_packages; pick_python || die "no Python >= 3.11 found (install python3.11)"; }
  ensure_system_packages
  ensure_venv
  ensure_llama_wheel
  ensure_project "$extras"
  export PATH="$VENV/bin:$PATH"
}
