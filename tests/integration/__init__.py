"""Integration tests: real processes, real sockets, real Mongrel2."""
