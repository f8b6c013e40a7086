"""Integration tests: real processes, real aiortc peers, a real Socket.IO server."""
