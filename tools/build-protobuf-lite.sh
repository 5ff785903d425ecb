#!/usr/bin/env bash
# Builds a position-independent static protobuf-lite (OUT/libgfnlm-protobuf-lite.a) from Debian's source of the
# installed libprotobuf-dev, so that libgfnlm.so can carry the protobuf runtime inside it and need no libprotobuf
# at run time.
#
# Why not Debian's own /usr/lib/x86_64-linux-gnu/libprotobuf-lite.a: it is built for executables, not shared
# objects. Its arena.o uses the local-exec TLS model (R_X86_64_TPOFF32 against ThreadSafeArena::thread_cache_),
# which the linker refuses in a .so ("relocation R_X86_64_TPOFF32 ... can not be used when making a shared object;
# recompile with -fPIC"). The same source version, compiled with -fPIC, links.
#
# The source comes through apt (`apt-get source protobuf=<installed version>`, Debian's patches applied) with
# private apt state under OUT/apt: the machine's own apt configuration, lists and cache are not touched. The deb-src
# entries are the machine's own deb entries. Needs dpkg-dev (dpkg-source) and a C++ compiler.
#
#   tools/build-protobuf-lite.sh OUT [JOBS]
set -euo pipefail
OUT="$(mkdir -p "$1" && cd "$1" && pwd)"
JOBS="${2:-2}"
CXX="${CXX:-g++}"
version="$(dpkg-query -W -f='${Version}' libprotobuf-dev)"
upstream="${version#*:}"; upstream="${upstream%%-*}"
SRC="$OUT/protobuf-$upstream"
ARCHIVE="$OUT/libgfnlm-protobuf-lite.a"

if [ ! -f "$SRC/cmake/libprotobuf-lite.cmake" ] || [ "$(cat "$OUT/.source-version" 2>/dev/null)" != "$version" ]; then
    APT="$OUT/apt"
    rm -rf "$APT" "$SRC"
    mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/sources.list.d"
    # deb-src twins of the machine's deb entries (one-line and deb822 formats)
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && sed -n 's/^deb \(.*\)$/deb-src \1/p' "$f"
    done > "$APT/sources.list"
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && sed 's/^Types:.*$/Types: deb-src/' "$f" > "$APT/sources.list.d/$(basename "$f")"
    done
    opts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o "Dir::Etc::SourceParts=$APT/sources.list.d"
          -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "APT::Sandbox::User=root")
    echo "fetching Debian's protobuf $version source (apt-get source, private apt state in $APT)"
    apt-get "${opts[@]}" -qq update
    (cd "$OUT" && apt-get "${opts[@]}" -qq source "protobuf=$version")
    echo "$version" > "$OUT/.source-version"
fi

# The lite runtime's sources, as upstream's CMake build lists them.
mapfile -t SOURCES < <(sed -n 's|^ *${protobuf_SOURCE_DIR}/\(src/google/protobuf/.*\.cc\)$|\1|p' \
    "$SRC/cmake/libprotobuf-lite.cmake")
[ "${#SOURCES[@]}" -gt 10 ] || { echo "no protobuf-lite sources found in $SRC/cmake/libprotobuf-lite.cmake" >&2; exit 1; }
OBJ="$OUT/obj"
rm -rf "$OBJ"; mkdir -p "$OBJ"
echo "compiling ${#SOURCES[@]} protobuf-lite sources with -fPIC ($JOBS jobs)"
printf '%s\n' "${SOURCES[@]}" | xargs -P "$JOBS" -I{} sh -c \
    'f="$1"; o="$2/$(echo "${f#src/}" | tr / _ | sed "s/\.cc$/.o/")"; '"$CXX"' -std=c++17 -O2 -fPIC -DNDEBUG \
     -DHAVE_PTHREAD -fvisibility=hidden -fvisibility-inlines-hidden -w -I"$3/src" -c "$3/$f" -o "$o"' \
    _ {} "$OBJ" "$SRC"
rm -f "$ARCHIVE.tmp"
ar rcs "$ARCHIVE.tmp" "$OBJ"/*.o
mv "$ARCHIVE.tmp" "$ARCHIVE"
echo "built $ARCHIVE (protobuf-lite $version, PIC)"
