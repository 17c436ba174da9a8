#!/bin/sh
# tests/apps/chat/test_chat.sh: the chat end to end with real server
# processes and scripted clients (see chat_tests.py). $1 is the build dir.
set -eu
build=${1:-build}
exec python3 "$(dirname "$0")/chat_tests.py" "$build"
