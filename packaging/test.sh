#!/bin/sh
# Install what is missing, build, and run the whole test suite (unit, fuzz
# corpora, integration with real namespaces).  Needs root.
# The integration tests drive real clients through the sandbox.
PCL_EXTRA_PACKAGES="${PCL_EXTRA_PACKAGES:-} git nodejs python3-pip"
export PCL_EXTRA_PACKAGES
. "$(dirname "$0")/common.sh"
cd "$BUILD"
ctest --output-on-failure ${CTEST_ARGS:-}
