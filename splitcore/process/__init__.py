"""How a SplitRTC process runs: its event loop, its CPUs, its child processes."""
