"""One job's life, from its config to its results.json: the config's schema and checks, its folder, what it is
built from (net, LightningModule, measuring callbacks, Trainer), the runner, and what it shows on the console."""
