#!/bin/sh
# The first container of the Docker chapter: print today's date and exit.
set -eu
DATE=$(date +%Y-%m-%d)
echo "Today's date is $DATE"
