"""What a job trains on: MNIST's files, checked, and the data modules that serve them on the device."""
