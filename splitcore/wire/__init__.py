"""The bytes between the peers: frames, codecs, messages (docs/wire-format.md)."""
