"""One job, from its config to its results.json: the runner, its folders, signals, DDP, Hydra's callbacks and errors,
the console and the TensorBoard logger."""
