# Shared by the bench scripts: installs what they need, builds the image and the binaries, and
# defines `say` and `bin` for scripts/lib/local-net.sh.
say() { printf '\n== %s\n' "$*" >&2; }
scripts/setup.sh >&2
scripts/build-images.sh >&2
cargo build --quiet --workspace --bins --locked
bin=target/debug
