#!/usr/bin/env bash
# Placeholder: the namespace demo of the relay is filled in by another engineer.
echo "demo: not yet"
exit 0
