#!/bin/sh
# tests/families.sh for mamba2 alone: one test per family, so make -j runs them side by side
exec sh "$(dirname "$0")/families.sh" mamba2
