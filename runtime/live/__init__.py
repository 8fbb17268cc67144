"""The live bundle: ``generation`` (the typed state one bundle generation serves with: keys, limiter,
resilience, and the middleware that hands it to each request) and ``watcher`` (the file watcher and
SIGHUP that swap generations on a hot reload), ``costs`` (the model prices a ``cheapest`` pool ranks by,
read off the request path) and ``pins`` (pinned sessions in Redis, shared by every replica)."""
