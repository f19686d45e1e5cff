# Installs what the README's commands need on Debian when it is missing; sourced by ./run,
# ./test and .ci/run.

# Debian packages, with apt (through sudo when not root).
need_packages() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "netwatch: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  # Through env: sudo drops DEBIAN_FRONTEND, and tshark's setup would stop to ask.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# cargo on PATH: a rustup toolchain in ~/.cargo if there is one, else the stable toolchain
# installed with rustup (Debian's packaged Rust is older than the 1.89 this crate needs), with
# rustfmt and clippy for ./test. Also the C compiler that libmimalloc and the linker need.
need_rust() {
  need_packages gcc libc6-dev
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null && return 0
  need_packages curl ca-certificates
  local dir
  dir="$(mktemp -d)"
  echo "netwatch: installing the Rust toolchain with rustup into $HOME/.cargo" >&2
  # Named rustup-init: rustup decides what to be by the name it runs under.
  curl --proto '=https' --tlsv1.2 -sSfL -o "$dir/rustup-init" \
    "https://static.rust-lang.org/rustup/dist/$(uname -m)-unknown-linux-gnu/rustup-init"
  chmod +x "$dir/rustup-init"
  "$dir/rustup-init" -y --no-modify-path --profile minimal --component rustfmt,clippy >&2
  rm -rf "$dir"
  export PATH="$HOME/.cargo/bin:$PATH"
}
