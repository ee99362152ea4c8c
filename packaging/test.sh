#!/bin/sh
# Install what is missing, build, and run the whole test suite (unit, fuzz
# corpora, integration with real namespaces).  Needs root.
. "$(dirname "$0")/common.sh"
cd "$BUILD"
ctest --output-on-failure ${CTEST_ARGS:-}
