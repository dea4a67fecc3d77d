"""Models a node can train: a small GPT with size presets from tiny to about 1B parameters."""
