"""What trains: the paper's networks, the speedrun's net, the LightningModule, and the layers' CPU kernels."""
