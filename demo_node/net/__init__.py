"""The network layer: a libp2p peer (hivemind's p2pd) with hivemind's DHT, framed streams and byte accounting.

It moves bytes between peer ids and knows nothing of torch, models or the DeMo math.
"""
