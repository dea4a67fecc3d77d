"""The ``demo-node`` programs built on the public Python API: ``join`` (one node training the built-in GPT on a
text corpus) and ``swarm`` (several such nodes on this machine). They use nothing the API does not offer."""
