"""One small app module per stack; every app serves the routes of :mod:`bench.content`."""
