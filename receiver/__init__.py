"""The tail side of SplitRTC: answers senders, runs the tail, replies with labels."""
