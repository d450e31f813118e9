#!/bin/sh
# The Docker chapter's exercise: greet whoever GREETING_NAME names, and say which user runs it.
set -eu
echo "Hello, ${GREETING_NAME:-world}! (uid $(id -u))"
