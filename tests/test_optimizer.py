"""The DeMo optimizer against a plain re-statement of the reference's equations, and its own invariants."""

import io
import math

import pytest
import torch

from demo_node.core import DeMo
from demo_node.core.dct import chunk_size, dct_matrix
from demo_node.core.layout import matrix_shape

SHAPES = [(128, 192), (192,), (5, 7), (3, 4, 5), (), (64, 48)]


# -- the reference, re-stated: per tensor, momentum in the parameter domain, blocks by explicit matrices ---------
def ref_encode(x, h, w):
    """(R, C) -> (R/h, C/w, h*w) DCT coefficients of each block, flattened b*w + d."""
    r, c = x.shape
    blocks = x.reshape(r // h, h, c // w, w).permute(0, 2, 1, 3)
    return (dct_matrix(h) @ blocks @ dct_matrix(w).T).reshape(r // h, c // w, h * w)


def ref_decode(coeff, h, w):
    y, x, _ = coeff.shape
    blocks = dct_matrix(h).T @ coeff.reshape(y, x, h, w) @ dct_matrix(w)
    return blocks.permute(0, 2, 1, 3).reshape(y * h, x * w)


class ReferenceRanks:
    """World of N ranks running the reference DeMo step on replicated parameters."""

    def __init__(self, params, ranks, lr, beta=0.999, topk=32, chunk=64, wd=0.0):
        self.params = [p.detach().clone() for p in params]
        self.deltas = [[torch.zeros_like(p) for p in params] for _ in range(ranks)]
        self.lr, self.beta, self.topk, self.chunk, self.wd = lr, beta, topk, chunk, wd
        self.sent = []

    def step(self, grads_per_rank):
        self.sent = []
        for i, p in enumerate(self.params):
            rows, cols = matrix_shape(p.shape)
            h, w = chunk_size(rows, self.chunk), chunk_size(cols, self.chunk)
            p.mul_(1 - self.lr * self.wd)
            idxs, vals = [], []
            for rank, grads in enumerate(grads_per_rank):
                delta = self.deltas[rank][i]
                delta.mul_(self.beta).add_(grads[i], alpha=self.lr)
                coeff = ref_encode(delta.reshape(rows, cols), h, w)
                k = min(self.topk, h * w)
                idx = torch.topk(coeff.abs(), k, dim=-1).indices
                val = torch.gather(coeff, -1, idx)
                sparse = torch.zeros_like(coeff).scatter_reduce(-1, idx, val, "mean", include_self=False)
                delta.sub_(ref_decode(sparse, h, w).reshape(p.shape))
                idxs.append(idx)
                vals.append(val)
            self.sent.append((idxs, vals))
            agg = torch.zeros_like(coeff).scatter_reduce(
                -1, torch.cat(idxs, -1), torch.cat(vals, -1), "mean", include_self=False
            )
            p.sub_(self.lr * torch.sign(ref_decode(agg, h, w).reshape(p.shape)))


def make_params(shapes=SHAPES):
    return [torch.nn.Parameter(torch.randn(s)) for s in shapes]


def set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = g.clone()


def test_single_process_step_equals_reference_update():
    params = make_params()
    ref = ReferenceRanks(params, ranks=1, lr=0.01, topk=8, chunk=16, wd=0.1)
    opt = DeMo(params, lr=0.01, topk=8, chunk=16, weight_decay=0.1, values="fp32")
    for _ in range(6):
        grads = [torch.randn(p.shape) for p in params]
        set_grads(params, grads)
        opt.step()
        ref.step([grads])
        for ours, theirs in zip(params, ref.params):
            torch.testing.assert_close(ours.detach(), theirs, rtol=0, atol=1e-6)


def test_default_hyperparameters_are_the_reference_ones():
    cfg = DeMo([torch.nn.Parameter(torch.zeros(4))]).config
    assert (cfg.beta, cfg.topk, cfg.chunk, cfg.weight_decay) == (0.999, 32, 64, 0.0)
    assert (cfg.momentum, cfg.residual_alpha, cfg.aggregation) == ("reference", 1.0, "selected")


def test_three_peers_apply_the_reference_all_gather_update():
    ranks = 3
    base = make_params()
    replicas = [[torch.nn.Parameter(p.detach().clone()) for p in base] for _ in range(ranks)]
    opts = [DeMo(r, lr=0.01, topk=8, chunk=16, values="fp32") for r in replicas]
    ref = ReferenceRanks(base, ranks=ranks, lr=0.01, topk=8, chunk=16)
    for _ in range(4):
        grads = [[torch.randn(p.shape) for p in base] for _ in range(ranks)]
        contributions = []
        for r, opt, g in zip(replicas, opts, grads):
            set_grads(r, g)
            contributions.append(opt.prepare())
        for opt in opts:
            opt.apply(contributions)
        ref.step(grads)
        for r in replicas:
            for ours, theirs in zip(r, ref.params):
                torch.testing.assert_close(ours.detach(), theirs, rtol=0, atol=1e-6)


def coefficients(opt, p):
    """The momentum of p as (blocks, h*w) DCT coefficients, read from the optimizer's state."""
    m = opt.state[p]["momentum"]
    rows, cols = m.shape
    t = next(t for t in opt.layout.tensors if t.shape == tuple(p.shape))
    return m.reshape(rows // t.h, t.h, cols // t.w, t.w).permute(0, 2, 1, 3).reshape(-1, t.h * t.w), t


@pytest.mark.parametrize("values", ["fp32", "fp16", "bf16", "int8", "sign"])
@pytest.mark.parametrize("alpha", [1.0, 0.2])
def test_error_feedback_momentum_before_equals_after_plus_transmitted(values, alpha):
    p = torch.nn.Parameter(torch.randn(64, 128))
    opt = DeMo([p], lr=0.1, topk=16, chunk=32, values=values, residual_alpha=alpha)
    for _ in range(3):
        p.grad = torch.randn_like(p)
        before = None
        if opt.state[p]:
            before = coefficients(opt, p)[0].clone()
        contribution = opt.prepare()
        after, t = coefficients(opt, p)
        g = ref_encode(p.grad.reshape(64, 128), t.h, t.w).reshape(-1, t.h * t.w)
        expected = 0.1 * g if before is None else 0.999 * before + 0.1 * g
        part = contribution.parts[0]
        transmitted = torch.zeros_like(after).scatter_(1, part.indices, part.values.dequantize())
        torch.testing.assert_close(after + alpha * transmitted, expected, rtol=1e-5, atol=1e-6)


def test_selected_coefficients_are_the_top_k_of_each_block():
    p = torch.nn.Parameter(torch.randn(96, 64))
    opt = DeMo([p], lr=1.0, topk=5, chunk=32, values="fp32")
    p.grad = torch.randn_like(p)
    part = opt.prepare().parts[0]
    t = opt.layout.tensors[0]
    coeff = ref_encode(p.grad.reshape(96, 64), t.h, t.w).reshape(-1, t.h * t.w)
    expected = torch.topk(coeff.abs(), 5, dim=1).indices.sort(dim=1).values
    assert torch.equal(part.indices, expected)
    assert (part.indices.diff(dim=1) > 0).all()  # ascending, no repeats
    torch.testing.assert_close(part.values.dequantize(), torch.gather(coeff, 1, expected))


def test_ema_momentum_form():
    p = torch.nn.Parameter(torch.randn(32, 32))
    opt = DeMo([p], lr=0.1, beta=0.9, topk=4, chunk=32, momentum="ema", residual_alpha=0.2, values="fp32")
    p.grad = torch.randn_like(p)
    part = opt.prepare().parts[0]
    after, t = coefficients(opt, p)
    expected = 0.1 * ref_encode(p.grad, 32, 32).reshape(1, -1)  # (1 - beta) * g, lr not folded in
    transmitted = torch.zeros_like(after).scatter_(1, part.indices, part.values.dequantize())
    torch.testing.assert_close(after + 0.2 * transmitted, expected)


@pytest.mark.parametrize("rule", ["selected", "all"])
@pytest.mark.parametrize("topk", [3, 40])  # sparse inverse, and dense inverse (2k > h + w)
def test_multi_peer_aggregation_semantics(rule, topk):
    shape, chunk = (16, 32), 16
    weights = [1.0, 3.0, 0.5]
    base = torch.randn(shape)
    replicas = [torch.nn.Parameter(base.clone()) for _ in weights]
    opts = [DeMo([r], lr=0.01, topk=topk, chunk=chunk, values="fp32", aggregation=rule) for r in replicas]
    contributions = []
    for r, opt, w in zip(replicas, opts, weights):
        r.grad = torch.randn(shape)
        contributions.append(opt.prepare(samples=w))
    # brute force: dense per-peer coefficient blocks, combined by the rule
    nblocks, bs = contributions[0].parts[0].indices.shape[0], chunk * chunk
    num = torch.zeros(nblocks, bs, dtype=torch.float64)
    den = torch.zeros(nblocks, bs, dtype=torch.float64)
    for c, w in zip(contributions, weights):
        part = c.parts[0]
        num.scatter_add_(1, part.indices, w * part.values.dequantize().double())
        den.scatter_add_(1, part.indices, torch.full(part.indices.shape, w, dtype=torch.float64))
    coeff = num / den.clamp_min(1e-30) if rule == "selected" else num / sum(weights)
    agg = opts[0].aggregate(contributions)
    assert agg.peers == 3 and agg.samples == sum(weights)
    part = agg.parts[0]
    dense = torch.zeros(nblocks, bs, dtype=torch.float64).scatter_add_(1, part.indices, part.coeff.double())
    torch.testing.assert_close(dense, coeff)
    update = torch.sign(ref_decode(coeff.reshape(1, 2, bs).float(), chunk, chunk))
    for r, opt in zip(replicas, opts):
        opt.apply(agg)
        torch.testing.assert_close(r.detach(), base - 0.01 * update, rtol=0, atol=1e-6)


def test_checkpoint_round_trip_gives_identical_next_update():
    torch.manual_seed(1)
    params = make_params()
    opt = DeMo(params, lr=0.01, topk=8, chunk=16)
    for _ in range(3):
        set_grads(params, [torch.randn(p.shape) for p in params])
        opt.step()
    buf = io.BytesIO()
    torch.save({"params": [p.detach().clone() for p in params], "opt": opt.state_dict()}, buf)
    grads = [torch.randn(p.shape) for p in params]

    set_grads(params, grads)
    uninterrupted = opt.prepare()
    opt.apply([uninterrupted])

    buf.seek(0)
    saved = torch.load(buf)
    restored = [torch.nn.Parameter(t) for t in saved["params"]]
    opt2 = DeMo(restored, lr=0.01, topk=8, chunk=16)
    opt2.load_state_dict(saved["opt"])
    set_grads(restored, grads)
    resumed = opt2.prepare()
    opt2.apply([resumed])
    for a, b in zip(params, restored):
        assert torch.equal(a.detach(), b.detach())
    for k in uninterrupted.parts:
        assert torch.equal(uninterrupted.parts[k].indices, resumed.parts[k].indices)
        assert torch.equal(uninterrupted.parts[k].values.codes, resumed.parts[k].values.codes)
    for a, b in zip(params, restored):
        assert torch.equal(opt.state[a]["momentum"], opt2.state[b]["momentum"])


def test_state_dict_without_momentum_would_differ():
    """Guards the test above: a fresh optimizer (momentum lost, as in the reference) makes another update."""
    p = torch.nn.Parameter(torch.randn(32, 32))
    opt = DeMo([p], lr=0.01, topk=4, chunk=32)
    p.grad = torch.randn_like(p)
    opt.step()
    fresh = DeMo([p], lr=0.01, topk=4, chunk=32)
    g = torch.randn_like(p)
    p.grad = g
    a = opt.prepare().parts[0].indices
    p.grad = g
    b = fresh.prepare().parts[0].indices
    assert not torch.equal(a, b)


def test_restore_puts_a_left_out_contribution_back():
    p = torch.nn.Parameter(torch.randn(64, 64))
    opt = DeMo([p], lr=0.1, topk=8, chunk=32, values="int8")
    p.grad = torch.randn_like(p)
    opt.prepare()  # a first round, so the momentum is not zero
    before = coefficients(opt, p)[0].clone()
    p.grad = torch.randn_like(p)
    contribution = opt.prepare()
    opt.restore(contribution)
    got, _ = coefficients(opt, p)
    accumulated = 0.999 * before + 0.1 * ref_encode(p.grad, 32, 32).reshape(4, -1)
    torch.testing.assert_close(got, accumulated, rtol=1e-5, atol=1e-6)


def test_lr_scheduler_sets_the_step_size():
    p = torch.nn.Parameter(torch.zeros(64, 64))
    opt = DeMo([p], lr=0.1, topk=4, chunk=32)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step)
    for expected_lr in (0.1, 0.05, 0.025):
        before = p.detach().clone()
        p.grad = torch.randn_like(p)
        opt.step()
        sched.step()
        moved = (p.detach() - before).abs()
        assert torch.allclose(moved[moved > 0], torch.tensor(expected_lr))


def test_param_groups_have_their_own_lr_and_weight_decay():
    a, b = torch.nn.Parameter(torch.ones(8, 8)), torch.nn.Parameter(torch.ones(8, 8))
    opt = DeMo([{"params": [a]}, {"params": [b], "lr": 0.5, "weight_decay": 0.1}], lr=0.01, topk=2, chunk=8)
    assert len(opt.layout.buckets) == 2
    a.grad, b.grad = torch.randn(8, 8), torch.randn(8, 8)
    opt.step()
    torch.testing.assert_close((a.detach() - 1).abs(), torch.full((8, 8), 0.01))  # lr 0.01, no decay
    decayed = 1 - 0.5 * 0.1
    torch.testing.assert_close((b.detach() - decayed).abs(), torch.full((8, 8), 0.5))  # lr 0.5, decay 0.1


def test_gradient_clipping_changes_what_the_momentum_sees():
    p = torch.nn.Parameter(torch.randn(32, 32))
    opt = DeMo([p], lr=1.0, topk=4, chunk=32, values="fp32")
    g = torch.randn(32, 32) * 10
    p.grad = g.clone()
    norm = torch.nn.utils.clip_grad_norm_([p], max_norm=1.0)
    assert norm > 1.0
    part = opt.prepare().parts[0]
    coeff = ref_encode(g / g.norm(), 32, 32).reshape(1, -1)
    torch.testing.assert_close(part.values.dequantize(), torch.gather(coeff, 1, part.indices), rtol=1e-4, atol=1e-5)


def test_missing_gradient_counts_as_zero():
    a, b = torch.nn.Parameter(torch.randn(16, 16)), torch.nn.Parameter(torch.randn(16))
    opt = DeMo([a, b], lr=0.1, topk=4, chunk=16)
    a.grad = torch.randn(16, 16)
    before = b.detach().clone()
    opt.step()  # b has no gradient: zero momentum, zero update
    assert torch.equal(b.detach(), before)
    assert opt.state[b]["momentum"].abs().sum() == 0


def test_bf16_parameters_and_autocast():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 8))
    model_bf16 = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 8))
    model_bf16.load_state_dict(model.state_dict())
    model_bf16.to(torch.bfloat16)
    x = torch.randn(16, 32)
    for m in (model, model_bf16):
        opt = DeMo(m.parameters(), lr=1e-2, topk=8, chunk=32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = m(x.to(next(m.parameters()).dtype)).float().pow(2).mean()
        loss.backward()
        before = [p.detach().clone() for p in m.parameters()]
        opt.step()
        for p, b in zip(m.parameters(), before):
            assert p.dtype == b.dtype
            assert not torch.equal(p.detach(), b)
            assert torch.isfinite(p).all()
        assert all(opt.state[p]["momentum"].dtype == torch.float32 for p in m.parameters())


def test_grad_scaler_skips_steps_with_infinite_gradients():
    p = torch.nn.Parameter(torch.randn(16, 16))
    opt = DeMo([p], lr=0.1, topk=4, chunk=16)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    loss = (p * torch.randn(16, 16)).sum()
    scaler.scale(loss).backward()
    before = p.detach().clone()
    scaler.step(opt)
    scaler.update()
    assert not torch.equal(p.detach(), before)
    p.grad = torch.full_like(p, math.inf)
    before = p.detach().clone()
    scaler.step(opt)  # found inf: the scaler must not call step
    assert torch.equal(p.detach(), before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_matches_cpu():
    params = make_params()
    gpu = [torch.nn.Parameter(p.detach().cuda()) for p in params]
    opt_c = DeMo(params, lr=0.01, topk=8, chunk=16, values="fp32")
    opt_g = DeMo(gpu, lr=0.01, topk=8, chunk=16, values="fp32")
    grads = [torch.randn(p.shape) for p in params]
    set_grads(params, grads)
    set_grads(gpu, [g.cuda() for g in grads])
    opt_c.step()
    opt_g.step()
    for a, b in zip(params, gpu):
        torch.testing.assert_close(a.detach(), b.detach().cpu(), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "option,value",
    [("beta", 1.0), ("topk", 0), ("chunk", 0), ("momentum", "nesterov"), ("values", "int4"),
     ("aggregation", "median"), ("residual_alpha", 0.0), ("weight_decay", -1.0)],
)
def test_bad_options_name_themselves(option, value):
    with pytest.raises(ValueError, match=option):
        DeMo([torch.nn.Parameter(torch.zeros(4))], **{option: value})


def test_unknown_option_is_an_error():
    with pytest.raises(TypeError, match="topK"):
        DeMo([torch.nn.Parameter(torch.zeros(4))], topK=3)
