"""hwbench: how fast and how accurately does this machine train the paper's MNIST networks?"""

__version__ = "0.1.0"
