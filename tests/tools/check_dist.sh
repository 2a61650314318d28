#!/bin/sh
# check_dist.sh SRCDIR DISTDIR -- run by `make dist` (dist-hook): every file
# git tracks must be in the tarball, except the few listed below that only a
# git checkout needs.  So a file a test, the demo or `make install` needs can
# never be forgotten in EXTRA_DIST: `make dist` (and CI's `make distcheck`)
# fails naming it.  Outside a git checkout (building from a tarball) there is
# nothing to compare with, and the check says so and passes.
set -eu
srcdir=$1
distdir=$2
# tracked files that are deliberately not shipped (a pattern per line)
not_shipped='^\.gitignore$
^\.gitattributes$
^build-aux/\.gitkeep$
^m4/\.gitkeep$'
top=$(git -C "$srcdir" rev-parse --show-toplevel 2>/dev/null || true)
if [ -z "$top" ] || [ "$(cd "$top" && pwd -P)" != "$(cd "$srcdir" && pwd -P)" ]; then
    echo "check_dist: $srcdir is not a git checkout: nothing to compare the tarball with"
    exit 0
fi
missing=$(git -C "$srcdir" ls-files | grep -v -e "$not_shipped" | while IFS= read -r f; do
    [ -e "$distdir/$f" ] || printf '%s\n' "$f"
done)
if [ -n "$missing" ]; then
    echo "check_dist: tracked files missing from the tarball (add them to EXTRA_DIST in Makefile.am," >&2
    echo "or to not_shipped in tests/tools/check_dist.sh if they must not ship):" >&2
    printf '  %s\n' $missing >&2
    exit 1
fi
echo "check_dist: all $(git -C "$srcdir" ls-files | wc -l) tracked files are in the tarball"
