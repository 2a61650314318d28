#!/bin/sh
# tests/families.sh for falcon_mamba alone: one test per family, so make -j runs them side by side
exec sh "$(dirname "$0")/families.sh" falcon_mamba
