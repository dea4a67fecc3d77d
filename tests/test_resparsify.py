"""The cut of an aggregate to its top K per block (core/resparsify.py): what it keeps, how it breaks ties, and what
goes back into a node's momentum."""

import torch

from demo_node.core.aggregate import AggregatePart
from demo_node.core.contribution import BucketPart, Contribution
from demo_node.core.optimizer import DeMo
from demo_node.core.quantize import quantize
from demo_node.core.resparsify import dense_blocks, dropped, top_per_block


def part(indices, coeff, start=0):
    return AggregatePart(start, torch.tensor(indices, dtype=torch.int64), torch.tensor(coeff, dtype=torch.float32))


def test_repeats_are_summed_before_the_largest_are_kept():
    # index 3 appears twice (two peers selected it): 0.3 + 0.3 beats 0.5
    agg = part([[3, 5, 3, 7]], [[0.3, -0.5, 0.3, 0.1]])
    top = top_per_block(agg, 8, 2)
    assert top.indices.tolist() == [[3, 5]]
    assert torch.allclose(top.coeff, torch.tensor([[0.6, -0.5]]))


def test_ties_go_to_the_smaller_index_and_rows_are_independent():
    agg = part([[6, 1, 4, 2], [0, 1, 2, 3]], [[1.0, -1.0, 1.0, 0.5], [0.1, 0.2, 0.2, -0.2]], start=5)
    top = top_per_block(agg, 8, 2)
    assert top.start == 5
    assert top.indices.tolist() == [[1, 4], [1, 2]]
    # the same aggregate with its entries in another order gives the same cut
    shuffled = part([[2, 4, 1, 6], [3, 2, 1, 0]], [[0.5, 1.0, -1.0, 1.0], [-0.2, 0.2, 0.2, 0.1]], start=5)
    assert top_per_block(shuffled, 8, 2).indices.tolist() == top.indices.tolist()


def test_a_cut_that_keeps_every_coefficient_is_the_aggregate():
    g = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(64, generator=g)[:10] for _ in range(4)])
    agg = AggregatePart(0, idx, torch.randn(4, 10, generator=g))
    top = top_per_block(agg, 64, 16)  # more than the 10 non-zero: some zeros are kept too
    assert torch.equal(dense_blocks(top, 64), dense_blocks(agg, 64))


def test_dropped_keeps_what_the_cut_left_out_and_zeroes_what_it_kept():
    p = BucketPart(2, torch.tensor([[1, 5, 9], [0, 2, 4]]), quantize(torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, 6.0]]),
                                                                     "fp32"))
    back = dropped(p, torch.tensor([[5, 7], [0, 4]]))
    assert back.start == 2 and torch.equal(back.indices, p.indices)
    assert back.values.dequantize().tolist() == [[1.0, 0.0, 3.0], [0.0, 5.0, 0.0]]


def test_what_the_cut_dropped_goes_back_into_the_momentum():
    """A node that gets back every entry of its contribution (the cut kept none of them) has the momentum of a node
    whose contribution was left out of the round; one whose entries were all kept has nothing to put back."""
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 64)
    model(torch.randn(8, 64)).square().mean().backward()
    opts = [DeMo(model.parameters(), lr=1e-3) for _ in range(3)]
    cs = [opt.prepare() for opt in opts]
    after_prepare = [s.momentum.clone() for s in opts[2]._state()]
    opts[0].restore(cs[0])
    none_kept = {b: torch.full((p.num_blocks, 1), -1, dtype=torch.int64) for b, p in cs[1].parts.items()}
    opts[1].restore(Contribution({b: dropped(p, none_kept[b]) for b, p in cs[1].parts.items()}))
    opts[2].restore(Contribution({b: dropped(p, p.indices) for b, p in cs[2].parts.items()}))
    for left_out, fed_back, kept, prepared in zip(opts[0]._state(), opts[1]._state(), opts[2]._state(),
                                                  after_prepare):
        assert torch.equal(fed_back.momentum, left_out.momentum)
        assert torch.equal(kept.momentum, prepared)
        assert not torch.equal(left_out.momentum, prepared)
