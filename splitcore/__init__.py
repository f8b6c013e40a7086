"""Code both sides of SplitRTC need: wire format, codecs, models, stats, signaling client."""
