"""End-to-end relay benchmark: one lab, one generator, pluggable relay drivers (see bench/README.md)."""
