"""aiortc glue: the signaling client, peer connection set-up, getStats-style reports."""
