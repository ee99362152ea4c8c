#!/bin/sh
# Build the Debian package: packaging/debian is copied to debian/ in a
# scratch copy of the tree, so the checkout stays clean.  Output: ../*.deb
# next to that copy, moved to build-deb/.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
PCL_EXTRA_PACKAGES="debhelper dpkg-dev" "$SRC/packaging/install-deps.sh"
WORK=$(mktemp -d /tmp/pcl-deb.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/portcullis-0.1.0"
git -C "$SRC" ls-files -z | (cd "$SRC" && xargs -0 cp --parents -t "$WORK/portcullis-0.1.0")
cp -r "$SRC/packaging/debian" "$WORK/portcullis-0.1.0/debian"
(cd "$WORK/portcullis-0.1.0" && dpkg-buildpackage -us -uc -b >&2)
mkdir -p "$SRC/build-deb"
mv "$WORK"/*.deb "$SRC/build-deb/"
ls "$SRC"/build-deb/*.deb
