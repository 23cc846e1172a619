"""What is measured, one callback per figure: the training clock, inference, FLOPs and peaks, memory and energy,
GPU busy time."""
