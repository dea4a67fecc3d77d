"""A node: the model, its data and optimizer, the round protocol, checkpoints and signals, composed."""
