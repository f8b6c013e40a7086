"""The sender: captures frames, runs the head of the split model, sends latents."""
