#!/usr/bin/env bash
# Checks, without a Docker engine, that the Dockerfile builds: the files it
# COPYs into its build stage are enough for the stage's cargo command.
#
# - The build context is what a fresh clone holds (git's tracked files),
#   less what .dockerignore leaves out.
# - The build stage's COPYs are replayed from that context into a scratch
#   directory, and the stage's `cargo build ...` runs there as `cargo check`
#   with the same flags (--locked included), the same manifest, lock and
#   files. A release build would take minutes here and needs no file that
#   check does not (check expands include_str! and runs build scripts; only
#   linking is left out). CARGO_TARGET_DIR is shared with the other cargo
#   commands, so only folio itself is checked again.
# - The other stages' COPY sources must be in the context, and the runtime
#   must copy the binary the build stage makes.
#
# It reads only the simple forms the Dockerfile uses and fails on any other,
# so it cannot pass by skipping a line it did not understand.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

fail() {
  echo "check-docker-context: $*" >&2
  exit 1
}

trim() {
  local text="$1"
  text="${text#"${text%%[![:space:]]*}"}"
  printf '%s' "${text%"${text##*[![:space:]]}"}"
}

# A relative path inside the context, no globs, no "..".
plain_path() {
  [[ "$1" =~ ^[A-Za-z0-9._][A-Za-z0-9._/-]*$ ]] && [[ "/$1/" != */../* ]]
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
context=$scratch/context
root=$scratch/image

# .dockerignore: `*`, then `!path` lines naming what the context keeps.
kept=()
rules=0
while IFS= read -r line || [ -n "$line" ]; do
  line=$(trim "$line")
  [ -z "$line" ] || [[ "$line" == \#* ]] && continue
  rules=$((rules + 1))
  if [ $rules -eq 1 ]; then
    [ "$line" = "*" ] || fail ".dockerignore: the first rule must be '*' (then '!path' lines), not '$line'"
    continue
  fi
  path=${line#!}
  path=${path%/}
  [[ "$line" == !* ]] && plain_path "$path" ||
    fail ".dockerignore: '$line' is not a '!path' line this check understands"
  kept+=("$path")
done < .dockerignore
[ ${#kept[@]} -gt 0 ] || fail ".dockerignore keeps nothing"

git ls-files -z >"$scratch/tracked" || fail "the build context is read from git: run this in a clone"
while IFS= read -r -d '' file; do
  [ -e "$file" ] || continue
  for path in "${kept[@]}"; do
    if [ "$file" = "$path" ] || [[ "$file" == "$path"/* ]]; then
      mkdir -p "$context/$(dirname "$file")"
      cp -P "$file" "$context/$file"
      break
    fi
  done
done <"$scratch/tracked"

# The Dockerfile, stage by stage.
stage=0
build_name=""
workdir=/
build_workdir=""
cargo_args=()
binary=""
runtime_binary=""
number=0
while IFS= read -r line || [ -n "$line" ]; do
  number=$((number + 1))
  line=$(trim "$line")
  [ -z "$line" ] || [[ "$line" == \#* ]] && continue
  where="Dockerfile:$number"
  [[ "$line" == *\\ ]] && fail "$where: line continuations are not understood: $line"
  read -r -a words <<<"$line"
  instruction=${words[0]^^}
  args=("${words[@]:1}")
  case "$instruction" in
    FROM)
      stage=$((stage + 1))
      workdir=/
      if [ $stage -eq 1 ]; then
        [ ${#args[@]} -eq 3 ] && [ "${args[1]^^}" = "AS" ] ||
          fail "$where: the build stage must be 'FROM image AS name'"
        build_name=${args[2]}
      fi
      ;;
    WORKDIR)
      [ ${#args[@]} -eq 1 ] && [[ "${args[0]}" == /* ]] || fail "$where: WORKDIR takes one absolute path"
      workdir=${args[0]%/}
      [ $stage -eq 1 ] && build_workdir=$workdir
      ;;
    COPY)
      [[ "${args[0]:-}" == \[* ]] && fail "$where: the JSON form of COPY is not understood"
      if [[ "${args[0]:-}" == --* ]]; then
        [ $stage -gt 1 ] && [ "${args[0]}" = "--from=$build_name" ] && [ ${#args[@]} -eq 3 ] ||
          fail "$where: the only COPY flag understood is --from=$build_name, in a later stage, with one source"
        expected="$build_workdir/target/release/$binary"
        [ -n "$binary" ] && [ "${args[1]}" = "$expected" ] ||
          fail "$where: the runtime copies ${args[1]}, but the build stage makes $expected"
        runtime_binary=${args[1]}
        continue
      fi
      [ ${#args[@]} -ge 2 ] || fail "$where: COPY needs a source and a destination"
      dest=${args[-1]}
      sources=("${args[@]:0:${#args[@]}-1}")
      [[ "$dest" == /* ]] || dest="$workdir/$dest"
      into_dir=false
      { [[ "$dest" == */ ]] || [ ${#sources[@]} -gt 1 ]; } && into_dir=true
      for source in "${sources[@]}"; do
        plain_path "${source%/}" || fail "$where: '$source' is not a plain relative path (no globs, no '..')"
        source=${source%/}
        [ -e "$context/$source" ] ||
          fail "$where: '$source' is not in the build context (untracked, or left out by .dockerignore)"
        [ $stage -eq 1 ] || continue
        target="$root${dest%/}"
        if [ -d "$context/$source" ]; then
          mkdir -p "$target"
          cp -a "$context/$source/." "$target/"
        elif $into_dir; then
          mkdir -p "$target"
          cp -a "$context/$source" "$target/"
        else
          mkdir -p "$(dirname "$target")"
          cp -a "$context/$source" "$target"
        fi
      done
      ;;
    RUN)
      [ $stage -eq 1 ] || continue
      [ ${#cargo_args[@]} -eq 0 ] || fail "$where: one RUN in the build stage, please"
      [ "${args[0]:-}" = cargo ] && [ "${args[1]:-}" = build ] ||
        fail "$where: the build stage's RUN must be 'cargo build ...', not '${args[*]}'"
      for ((i = 2; i < ${#args[@]}; i++)); do
        case "${args[$i]}" in
          --release) ;;
          --locked | --frozen | --offline) cargo_args+=("${args[$i]}") ;;
          --bin)
            i=$((i + 1))
            binary=${args[$i]:-}
            cargo_args+=(--bin "$binary")
            ;;
          *) fail "$where: the cargo flag '${args[$i]}' is not understood" ;;
        esac
      done
      [[ " ${cargo_args[*]} " == *" --locked "* || " ${cargo_args[*]} " == *" --frozen "* ]] ||
        fail "$where: build with --locked, so the image uses the committed Cargo.lock"
      [ -n "$binary" ] || fail "$where: name the binary with --bin"
      ;;
    ENV | ARG | ADD | SHELL | ONBUILD)
      [ $stage -gt 1 ] && [ "$instruction" = ENV ] ||
        fail "$where: $instruction is not understood here"
      ;;
    USER | EXPOSE | ENTRYPOINT | CMD | LABEL)
      [ $stage -gt 1 ] || fail "$where: $instruction is not expected in the build stage"
      ;;
    *)
      fail "$where: the instruction $instruction is not understood"
      ;;
  esac
done < Dockerfile
[ -n "$build_name" ] && [ -n "$binary" ] || fail "no build stage with a cargo build found"
[ -n "$runtime_binary" ] || fail "no stage copies the binary from the build stage"

echo "build context: ${kept[*]}"
echo "build stage: cargo check ${cargo_args[*]} in a copy of what it COPYs"
cd "$root$build_workdir"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}" cargo check --quiet "${cargo_args[@]}"
echo "the Docker build stage's files compile"
