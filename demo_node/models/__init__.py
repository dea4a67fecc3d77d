"""Models a node can train: byte-level GPT presets, Llama presets and any causal LM of Hugging Face transformers
(built from a config), their memory needs, and the export of a checkpoint as a Hugging Face model."""
