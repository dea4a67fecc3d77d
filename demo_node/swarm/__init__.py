"""The round protocol: coordinator-free averaging rounds over the network layer, in the wire format.

Every round the model's blocks are split among the round's owners (its members that accept connections). Each
node sends each owner its contribution for the owner's blocks and gets that shard's result back; an owner closes
its shard when every member has reached it or at a deadline after the first arrival, so late and dead peers never
stall the rest, and every node gets the very same result bytes for a shard, so replicas stay identical.
"""
