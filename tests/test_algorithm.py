"""Tests of forkgrpo's ALGORITHM section: properties (hypothesis) and hand-computed cases."""

import math
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from forkgrpo import (  # noqa: E402
    micro_batches,
    forking_token_mask,
    group_advantages,
    informative_groups,
    logprobs_and_entropy,
    overlong_penalty,
    policy_loss,
    token_entropy,
)

FAST = settings(max_examples=40, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------
# token_entropy
# ------------------------------------------------------------------------------------


def test_entropy_hand_computed():
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)], [0.0, -1e4]])
    # p = (1/2, 1/2): log 2;  p = (1/4, 3/4): -(1/4 ln 1/4 + 3/4 ln 3/4);  one-hot: 0.
    expected = torch.tensor([math.log(2.0), 0.5623351446188083, 0.0])
    torch.testing.assert_close(token_entropy(logits), expected, rtol=1e-6, atol=1e-6)


@FAST
@given(seed=seeds, v=st.integers(1, 64), scale=st.floats(0.01, 50.0))
def test_entropy_between_zero_and_log_v(seed, v, scale):
    logits = torch.randn(5, v, generator=_gen(seed)) * scale
    h = token_entropy(logits)
    assert h.dtype == torch.float32 and h.shape == (5,)
    assert (h >= 0).all() and (h <= math.log(v) + 1e-5).all()


@FAST
@given(v=st.integers(1, 1000), value=st.floats(-100, 100), t=st.floats(0.1, 3.0))
@example(v=359, value=69.5, t=0.125)  # the case CI found before the shift by the max
@example(v=1000, value=-100.0, t=0.1)
def test_entropy_of_uniform_logits_is_log_v(v, value, t):
    # Large |value| / t (up to 1000) once cost 1e-4 through cancellation; the shift
    # by the max makes every logit 0, so only log(v)'s own float32 rounding is left.
    h = token_entropy(torch.full((v,), value), temperature=t)
    assert abs(h.item() - math.log(v)) < 1e-6


def test_entropy_leaves_its_input_unchanged():
    # token_entropy shifts its float32 copy in place; T = 1 must not make that copy the input itself.
    for dtype in (torch.float32, torch.bfloat16):
        logits = torch.randn(3, 17).to(dtype)
        before = logits.clone()
        token_entropy(logits, temperature=1.0)
        assert torch.equal(logits, before)


@FAST
@given(seed=seeds, shift=st.floats(-100, 100))
def test_entropy_invariant_to_adding_a_constant_to_logits(seed, shift):
    logits = torch.randn(3, 7, 11, generator=_gen(seed)) * 3
    # Tolerance: logits + shift is itself rounded to float32 (ulp 7.6e-6 at 100).
    torch.testing.assert_close(token_entropy(logits + shift), token_entropy(logits), atol=1e-4, rtol=0)


@FAST
@given(seed=seeds, t=st.floats(0.1, 4.0))
def test_entropy_applies_temperature_to_logits_before_softmax(seed, t):
    logits = torch.randn(4, 13, generator=_gen(seed)) * 2
    torch.testing.assert_close(token_entropy(logits, temperature=t), token_entropy(logits / t))
    p = torch.softmax(logits.double() / t, dim=-1)
    reference = -(p * p.log()).sum(-1)
    torch.testing.assert_close(token_entropy(logits, t).double(), reference, atol=1e-5, rtol=1e-5)


def test_entropy_is_float32_for_bf16_logits():
    assert token_entropy(torch.zeros(2, 8, dtype=torch.bfloat16)).dtype == torch.float32


# ------------------------------------------------------------------------------------
# logprobs_and_entropy
# ------------------------------------------------------------------------------------


def _naive_logprobs_and_entropy(hidden, weight, targets, temperature):
    logits = (hidden @ weight.T).float() / temperature  # (N, V)
    logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
    return logp, token_entropy(logits.detach())


def _inputs(seed, n, h, v, dtype=torch.float32):
    g = _gen(seed)
    hidden = torch.randn(n, h, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(v, h, generator=g) / math.sqrt(h) * 3).to(dtype).requires_grad_()
    targets = torch.randint(v, (n,), generator=g)
    upstream = torch.randn(n, generator=g)  # a random linear loss, so every row's grad counts
    return hidden, weight, targets, upstream


def _values_and_grads(fn, hidden, weight, targets, upstream, temperature):
    logp, entropy = fn(hidden, weight, targets, temperature)
    (logp * upstream).sum().backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    return logp.detach(), entropy, grads


@settings(max_examples=60, deadline=None)
@given(
    seed=seeds,
    n=st.integers(1, 40),
    h=st.integers(1, 12),
    v=st.integers(1, 60),
    chunk=st.integers(1, 17),
    t=st.sampled_from([0.6, 1.0, 1.3]),
)
def test_chunked_equals_naive_values_and_grads_float32(seed, n, h, v, chunk, t):
    hidden, weight, targets, upstream = _inputs(seed, n, h, v)
    chunked = lambda *a: logprobs_and_entropy(*a, chunk_size=chunk)  # noqa: E731
    logp, ent, (gh, gw) = _values_and_grads(chunked, hidden, weight, targets, upstream, t)
    logp0, ent0, (gh0, gw0) = _values_and_grads(
        _naive_logprobs_and_entropy, hidden, weight, targets, upstream, t
    )
    assert logp.dtype == ent.dtype == torch.float32 and logp.shape == ent.shape == (n,)
    assert not ent.requires_grad
    torch.testing.assert_close(logp, logp0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, ent0, rtol=1e-5, atol=1e-5)
    for g, g0 in ((gh, gh0), (gw, gw0)):
        assert (g - g0).abs().max() <= 1e-4 * g0.abs().max() + 1e-6


@settings(max_examples=15, deadline=None)
@given(seed=seeds, n=st.integers(1, 30), chunk=st.integers(1, 9))
def test_chunked_equals_naive_for_bf16_hidden_and_weight(seed, n, chunk):
    hidden, weight, targets, upstream = _inputs(seed, n, 16, 48, dtype=torch.bfloat16)
    chunked = lambda *a: logprobs_and_entropy(*a, chunk_size=chunk)  # noqa: E731
    logp, ent, (gh, gw) = _values_and_grads(chunked, hidden, weight, targets, upstream, 0.8)
    logp0, ent0, (gh0, gw0) = _values_and_grads(
        _naive_logprobs_and_entropy, hidden, weight, targets, upstream, 0.8
    )
    assert gh.dtype == gw.dtype == torch.bfloat16 and logp.dtype == torch.float32
    # Same bf16 logits, float32 softmax: values agree to float32 rounding.
    torch.testing.assert_close(logp, logp0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, ent0, rtol=1e-5, atol=1e-5)
    for g, g0 in ((gh, gh0), (gw, gw0)):  # bf16 gradients: 8 mantissa bits
        assert (g.float() - g0.float()).abs().max() <= 2e-2 * g0.float().abs().max() + 1e-3


def test_chunked_handles_zero_tokens():
    hidden, weight, targets, _ = _inputs(0, 0, 4, 10)
    logp, ent = logprobs_and_entropy(hidden, weight, targets)
    assert logp.shape == ent.shape == (0,)
    logp.sum().backward()
    assert hidden.grad.shape == (0, 4) and (weight.grad == 0).all()


@pytest.mark.parametrize("grad_hidden,grad_weight", [(True, False), (False, True), (False, False)])
def test_chunked_gradients_flow_only_to_inputs_that_require_them(grad_hidden, grad_weight):
    hidden, weight, targets, upstream = _inputs(1, 9, 5, 11)
    hidden.requires_grad_(grad_hidden)
    weight.requires_grad_(grad_weight)
    logp, _ = logprobs_and_entropy(hidden, weight, targets, chunk_size=4)
    assert logp.requires_grad == (grad_hidden or grad_weight)
    if logp.requires_grad:
        (logp * upstream).sum().backward()
        assert (hidden.grad is not None) == grad_hidden
        assert (weight.grad is not None) == grad_weight


def test_chunked_under_no_grad_builds_no_graph():
    hidden, weight, targets, _ = _inputs(2, 9, 5, 11)
    with torch.no_grad():
        logp, ent = logprobs_and_entropy(hidden, weight, targets, chunk_size=4)
    assert logp.grad_fn is None and not logp.requires_grad
    torch.testing.assert_close(
        logp, _naive_logprobs_and_entropy(hidden, weight, targets, 1.0)[0].detach()
    )


def test_chunked_hand_computed():
    # One token, H = 1, weight column (0, log 3): logits (0, log 3), softmax (1/4, 3/4).
    hidden = torch.tensor([[1.0]], requires_grad=True)
    weight = torch.tensor([[0.0], [math.log(3.0)]], requires_grad=True)
    logp, ent = logprobs_and_entropy(hidden, weight, torch.tensor([1]))
    torch.testing.assert_close(logp, torch.tensor([math.log(0.75)]))
    torch.testing.assert_close(ent, torch.tensor([0.5623351446188083]))
    logp.sum().backward()
    # d logp / d z = onehot - p = (-1/4, 1/4); grad_h = that @ W = log(3) / 4.
    torch.testing.assert_close(hidden.grad, torch.tensor([[math.log(3.0) / 4]]))
    torch.testing.assert_close(weight.grad, torch.tensor([[-0.25], [0.25]]))


# ------------------------------------------------------------------------------------
# forking_token_mask
# ------------------------------------------------------------------------------------


def _random_batch(seed, b, t, distinct=True, ties=False):
    g = _gen(seed)
    if ties:
        entropy = torch.randint(0, 4, (b, t), generator=g).float() / 2  # few distinct values
    else:
        entropy = torch.rand(b, t, generator=g) * 5  # distinct with probability ~1
    valid = torch.rand(b, t, generator=g) < 0.7
    entropy = torch.where(valid, entropy, torch.full_like(entropy, float("nan")))
    if distinct and not ties:
        assume(torch.unique(entropy[valid]).numel() == int(valid.sum()))
    return entropy, valid


def _k(rho, n):
    return -((-round(rho * 10**6) * n) // 10**6)  # ceil(rho n) for rho with <= 6 decimals


rhos = st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.95, 1.0])
shapes = dict(b=st.integers(1, 6), t=st.integers(1, 40))


def test_mask_hand_computed():
    nan = float("nan")
    entropy = torch.tensor([[0.1, 0.5, 0.3], [0.9, nan, 0.2]])
    valid = torch.tensor([[True, True, True], [True, False, True]])
    # N = 5. rho 0.4 -> k = 2: tau = 0.5 keeps 0.9 and 0.5. rho 0.2 -> k = ceil(1.0) = 1.
    top = forking_token_mask(entropy, valid, 0.4)
    assert top.tolist() == [[False, True, False], [True, False, False]]
    assert forking_token_mask(entropy, valid, 0.2).tolist() == [[False] * 3, [True, False, False]]
    bottom = forking_token_mask(entropy, valid, 0.4, mode="bottom")  # 0.1 and 0.2
    assert bottom.tolist() == [[True, False, False], [False, False, True]]
    # rho 0.07, N = 100: the float product 0.07 * 100 = 7.000000000000001 must still give k = 7.
    assert math.ceil(0.07 * 100) == 8  # the overshoot this case exercises (0.7 * 10 is exactly 7.0)
    hundred = forking_token_mask(torch.arange(100.0)[None], torch.ones(1, 100, dtype=torch.bool), 0.07)
    assert hundred.tolist() == [[False] * 93 + [True] * 7]


def test_mask_keeps_every_tie_at_tau_hand_computed():
    entropy = torch.tensor([[2.0, 1.0, 1.0, 1.0, 0.0]])
    valid = torch.ones(1, 5, dtype=torch.bool)
    # k = ceil(0.4 * 5) = 2; tau = 1.0 and all three 1.0's are kept.
    assert forking_token_mask(entropy, valid, 0.4).tolist() == [[True, True, True, True, False]]


@FAST
@given(seed=seeds, rho=rhos, mode=st.sampled_from(["top", "bottom", "random"]), **shapes)
def test_mask_is_a_bool_subset_of_valid(seed, rho, mode, b, t):
    entropy, valid = _random_batch(seed, b, t, distinct=False)
    mask = forking_token_mask(entropy, valid, rho, mode=mode, generator=_gen(seed))
    assert mask.dtype == torch.bool and mask.shape == (b, t)
    assert not (mask & ~valid).any()


@FAST
@given(seed=seeds, rho=rhos, **shapes)
def test_mask_selects_exactly_ceil_rho_n_without_ties_and_selected_ge_unselected(seed, rho, b, t):
    entropy, valid = _random_batch(seed, b, t)
    n = int(valid.sum())
    for mode, sign in (("top", 1), ("bottom", -1)):
        mask = forking_token_mask(entropy, valid, rho, mode=mode)
        assert int(mask.sum()) == _k(rho, n)
        chosen, rest = sign * entropy[mask], sign * entropy[valid & ~mask]
        if chosen.numel() and rest.numel():
            assert chosen.min() > rest.max()


@FAST
@given(seed=seeds, rho=rhos, **shapes)
def test_mask_with_ties_keeps_all_tokens_at_tau_and_at_least_k(seed, rho, b, t):
    entropy, valid = _random_batch(seed, b, t, ties=True)
    n = int(valid.sum())
    mask = forking_token_mask(entropy, valid, rho)
    assert int(mask.sum()) >= _k(rho, n)
    if mask.any():
        tau = entropy[mask].min()
        assert torch.equal(mask, valid & (entropy >= tau))  # every tie at tau is in
        # and tau is the k-th largest valid value
        assert tau == entropy[valid].sort(descending=True).values[_k(rho, n) - 1]


@FAST
@given(seed=seeds, rho=rhos, mode=st.sampled_from(["top", "bottom"]), **shapes)
def test_mask_ignores_values_at_invalid_positions(seed, rho, mode, b, t):
    entropy, valid = _random_batch(seed, b, t, distinct=False)
    garbage = torch.tensor([float("nan"), float("inf"), float("-inf"), 1e30, -1e30, 2.5])
    noisy = entropy.clone()
    idx = torch.randint(0, len(garbage), entropy.shape, generator=_gen(seed + 1))
    noisy[~valid] = garbage[idx][~valid]
    assert torch.equal(
        forking_token_mask(noisy, valid, rho, mode=mode),
        forking_token_mask(entropy, valid, rho, mode=mode),
    )


@FAST
@given(seed=seeds, mode=st.sampled_from(["top", "bottom"]), **shapes)
def test_mask_is_monotone_in_rho(seed, mode, b, t):
    entropy, valid = _random_batch(seed, b, t, ties=seed % 2 == 0)
    masks = [forking_token_mask(entropy, valid, r, mode=mode) for r in (0.1, 0.2, 0.5, 0.8, 1.0)]
    for smaller, larger in zip(masks, masks[1:]):
        assert not (smaller & ~larger).any()


@FAST
@given(seed=seeds, mode=st.sampled_from(["top", "bottom", "random"]), **shapes)
def test_mask_with_rho_one_is_valid(seed, mode, b, t):
    entropy, valid = _random_batch(seed, b, t, distinct=False)
    assert torch.equal(forking_token_mask(entropy, valid, 1.0, mode=mode), valid)


@FAST
@given(seed=seeds, rho=rhos, mode=st.sampled_from(["top", "bottom"]), **shapes)
def test_mask_is_invariant_to_permutations_of_tokens(seed, rho, mode, b, t):
    entropy, valid = _random_batch(seed, b, t, ties=seed % 2 == 0)
    perm = torch.randperm(b * t, generator=_gen(seed))
    mask = forking_token_mask(entropy, valid, rho, mode=mode)
    permuted = forking_token_mask(
        entropy.flatten()[perm].view(t, b), valid.flatten()[perm].view(t, b), rho, mode=mode
    )
    assert torch.equal(permuted.flatten(), mask.flatten()[perm])


@FAST
@given(
    seed=seeds,
    rho=rhos,
    transform=st.sampled_from(["exp", "affine", "cube", "negative_shift"]),
    **shapes,
)
def test_mask_is_invariant_to_strictly_increasing_transforms(seed, rho, transform, b, t):
    entropy, valid = _random_batch(seed, b, t, ties=seed % 2 == 0)
    x = entropy.double()
    y = {
        "exp": torch.exp(x),
        "affine": 3.0 * x + 7.0,
        "cube": (x - 2.5) ** 3,
        "negative_shift": x - 100.0,
    }[transform].float()
    # The transform must stay strictly increasing after float32 rounding (no new ties).
    xv, yv = entropy[valid], y[valid]
    assume(torch.unique(xv).numel() == torch.unique(yv).numel())
    for mode in ("top", "bottom"):
        assert torch.equal(
            forking_token_mask(y, valid, rho, mode=mode),
            forking_token_mask(entropy, valid, rho, mode=mode),
        )


@FAST
@given(seed=seeds, rho=st.sampled_from([0.1, 0.2, 0.5, 0.8]), **shapes)
def test_bottom_and_top_partition_valid_without_ties(seed, rho, b, t):
    entropy, valid = _random_batch(seed, b, t)
    n = int(valid.sum())
    top = forking_token_mask(entropy, valid, rho, mode="top")
    bottom = forking_token_mask(entropy, valid, 1 - rho, mode="bottom")
    if _k(rho, n) + _k(round(1 - rho, 6), n) == n:  # ceil(rho n) + ceil((1-rho) n) == n
        assert not (top & bottom).any() and torch.equal(top | bottom, valid)
    # With ties both keep all tokens at their tau; their union is always all of valid.
    tied, tvalid = _random_batch(seed, b, t, ties=True)
    union = forking_token_mask(tied, tvalid, rho) | forking_token_mask(tied, tvalid, 1 - rho, "bottom")
    assert torch.equal(union, tvalid)


@FAST
@given(seed=seeds, rho=rhos, **shapes)
def test_random_mode_selects_exactly_k_valid_tokens(seed, rho, b, t):
    entropy, valid = _random_batch(seed, b, t, ties=True)  # entropy values play no part
    mask = forking_token_mask(entropy, valid, rho, mode="random", generator=_gen(seed))
    assert int(mask.sum()) == _k(rho, int(valid.sum()))
    assert not (mask & ~valid).any()


def test_random_mode_is_uniform_over_valid_tokens():
    # 8 valid tokens of 10, k = 2: each valid token is chosen with probability 1/4.
    valid = torch.tensor([[True] * 8 + [False] * 2])
    entropy = torch.arange(10.0)[None]
    g = _gen(0)
    counts = sum(
        forking_token_mask(entropy, valid, 0.25, mode="random", generator=g).long()
        for _ in range(2000)
    )[0]
    assert (counts[8:] == 0).all()
    # Binomial(2000, 1/4): mean 500, sd 19.4; 6 sd bounds.
    assert ((counts[:8] - 500).abs() < 117).all()


def test_mask_with_no_valid_tokens_selects_nothing():
    entropy = torch.rand(3, 4)
    for mode in ("top", "bottom", "random"):
        assert not forking_token_mask(entropy, torch.zeros(3, 4, dtype=torch.bool), 0.2, mode).any()
    assert forking_token_mask(torch.empty(0, 7), torch.empty(0, 7, dtype=torch.bool), 0.2).shape == (0, 7)


@pytest.mark.parametrize("rho", [0.0, -0.1, 1.5, float("nan"), "0.2"])
def test_mask_rejects_rho_outside_zero_one(rho):
    with pytest.raises(ValueError, match="rho"):
        forking_token_mask(torch.rand(2, 3), torch.ones(2, 3, dtype=torch.bool), rho)


def test_mask_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        forking_token_mask(torch.rand(2, 3), torch.ones(2, 3, dtype=torch.bool), 0.2, mode="middle")


def test_mask_is_exact_beyond_two_to_the_24_tokens():
    # torch.quantile refuses more than 2^24 elements; the exact k-th largest does not.
    n = 2**24 + 2**20
    entropy = torch.randn(1, n, generator=_gen(0)).abs() * 3  # float32: has many ties
    valid = torch.ones(1, n, dtype=torch.bool)
    valid[0, :1000] = False
    mask = forking_token_mask(entropy, valid, 0.2)
    k = _k(0.2, n - 1000)
    tau = torch.kthvalue(entropy[valid], n - 1000 - k + 1).values  # k-th largest
    assert torch.equal(mask, valid & (entropy >= tau))
    assert int(mask.sum()) >= k


# ------------------------------------------------------------------------------------
# group_advantages, informative_groups, overlong_penalty
# ------------------------------------------------------------------------------------


def test_advantages_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    # Group 1: mean 1/4, unbiased std sqrt((9/16 + 3/16) / 3) = 1/2. Group 2: all equal.
    expected = torch.tensor([1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(group_advantages(rewards, 4, eps=0.0), expected)
    no_std = group_advantages(rewards, 4, scale_by_std=False)
    torch.testing.assert_close(no_std, torch.tensor([0.75, -0.25, -0.25, -0.25] + [0.0] * 4))


@FAST
@given(
    seed=seeds,
    prompts=st.integers(1, 6),
    group_size=st.integers(2, 8),
    scale_by_std=st.booleans(),
    binary=st.booleans(),
)
def test_advantage_group_means_are_zero(seed, prompts, group_size, scale_by_std, binary):
    g = _gen(seed)
    # Rewards on a 1/64 grid in [-1, 1] (a verifier's 0/1 plus an overlong penalty lives
    # on such a grid): distinct rewards differ by >= 1/64, so float32 rounding of r - mean
    # stays below 1e-5 of the std instead of swamping two rewards 1e-7 apart.
    rewards = torch.randint(-64, 65, (prompts * group_size,), generator=g) / 64
    if binary:
        rewards = (rewards < 0).float()
    adv = group_advantages(rewards, group_size, scale_by_std=scale_by_std)
    assert adv.dtype == torch.float32 and adv.shape == rewards.shape
    assert adv.view(prompts, group_size).mean(1).abs().max() < 1e-5
    if scale_by_std:  # std(A) = std(r) / (std(r) + eps): 1 up to eps, in every informative group
        std = adv.view(prompts, group_size).double().std(1)
        r_std = rewards.view(prompts, group_size).double().std(1)
        informative = informative_groups(rewards, group_size)
        expected = r_std / (r_std + 1e-6)
        torch.testing.assert_close(std[informative], expected[informative], atol=1e-5, rtol=0)


@FAST
@given(value=st.floats(-10, 10, width=32), group_size=st.integers(2, 9), scale_by_std=st.booleans())
def test_advantages_of_all_equal_group_are_exactly_zero(value, group_size, scale_by_std):
    rewards = torch.cat([torch.full((group_size,), value), torch.tensor([0.0, 1.0] * group_size)])
    adv = group_advantages(rewards, group_size, scale_by_std=scale_by_std)
    assert (adv[:group_size] == 0).all()  # exact, not close: no rounding noise from r - mean
    assert not torch.isnan(adv).any()


def test_advantages_reject_bad_group_size():
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.zeros(6), 1)
    assert torch.equal(group_advantages(torch.tensor([1.0, 2.0]), 1, scale_by_std=False), torch.zeros(2))


def test_informative_groups_hand_computed():
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0])
    assert informative_groups(rewards, 3).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="group_size"):
        informative_groups(rewards, 4)


@FAST
@given(seed=seeds, prompts=st.integers(1, 6), group_size=st.integers(2, 6))
def test_informative_groups_are_those_with_nonzero_advantages(seed, prompts, group_size):
    rewards = (torch.rand(prompts * group_size, generator=_gen(seed)) < 0.3).float()
    adv = group_advantages(rewards, group_size).view(prompts, group_size)
    assert torch.equal(informative_groups(rewards, group_size), (adv != 0).any(1))


def test_overlong_penalty_hand_computed():
    # L_max = 10, L_cache = 4: free up to 6, ramp (6 - L) / 4 on (6, 10], -1 beyond.
    lengths = torch.tensor([0, 6, 7, 8, 10, 11, 100])
    expected = torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0, -1.0])
    torch.testing.assert_close(overlong_penalty(lengths, 10, 4), expected)
    torch.testing.assert_close(overlong_penalty(lengths, 10, 4, factor=0.5), expected * 0.5)
    hard = overlong_penalty(lengths, 10, 0)  # no cache: 0 up to L_max, -1 beyond
    assert hard.tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, -1.0, -1.0] and hard.dtype == torch.float32
    with pytest.raises(ValueError, match="cache_len"):
        overlong_penalty(lengths, 10, 11)


@FAST
@given(max_len=st.integers(1, 200), data=st.data())
def test_overlong_penalty_is_nonincreasing_in_length_and_in_minus_one_zero(max_len, data):
    cache_len = data.draw(st.integers(0, max_len))
    lengths = torch.arange(0, 2 * max_len + 2)
    p = overlong_penalty(lengths, max_len, cache_len)
    assert (p <= 0).all() and (p >= -1).all()
    assert (p[1:] <= p[:-1]).all()
    assert (p[: max_len - cache_len + 1] == 0).all() and (p[max_len + 1 :] == -1).all()


# ------------------------------------------------------------------------------------
# policy_loss
# ------------------------------------------------------------------------------------


def _dapo_reference(logp, old_logp, adv, eps_low, eps_high):
    """Plain DAPO token-mean loss over all tokens, written out token by token."""
    total, count = 0.0, 0
    for i in range(len(logp)):
        for t in range(len(logp[i])):
            r = math.exp(logp[i][t] - old_logp[i][t])
            clipped = min(max(r, 1 - eps_low), 1 + eps_high)
            total += -min(r * adv[i], clipped * adv[i])
            count += 1
    return total / count


def test_policy_loss_hand_computed():
    logp = torch.tensor([[0.5, -0.5, 0.0]])
    old = torch.zeros(1, 3)
    adv = torch.tensor([1.0])
    mask = torch.tensor([[True, True, False]])
    # ratios e^0.5 = 1.6487 (clipped to 1.28, A > 0) and e^-0.5 = 0.6065 (not clipped for A > 0).
    loss, m = policy_loss(logp, old, adv, mask)
    torch.testing.assert_close(loss, torch.tensor(-(1.28 + math.exp(-0.5)) / 2))
    assert m["clip_high"].item() / m["tokens"].item() == 0.5 and m["clip_low"].item() == 0.0
    assert m["tokens"].item() == 2
    torch.testing.assert_close(m["ratio"] / m["tokens"], torch.tensor((math.exp(0.5) + math.exp(-0.5)) / 2))
    kl = ((math.exp(0.5) - 1 - 0.5) + (math.exp(-0.5) - 1 + 0.5)) / 2
    torch.testing.assert_close(m["approx_kl"] / m["tokens"], torch.tensor(kl))
    # A < 0 and ratio 0.6065 < 0.8: clipped low, the loss uses 0.8 * A.
    loss, m = policy_loss(logp, old, -adv, mask, num_tokens=4)
    torch.testing.assert_close(loss, torch.tensor((math.exp(0.5) + 0.8) / 4))
    assert m["clip_low"].item() / m["tokens"].item() == 0.5


@FAST
@given(seed=seeds, b=st.integers(1, 4), t=st.integers(1, 8), per_token_adv=st.booleans())
def test_policy_loss_with_rho_one_mask_equals_plain_dapo(seed, b, t, per_token_adv):
    g = _gen(seed)
    logp = torch.randn(b, t, generator=g) * 0.3 - 1
    old = logp + torch.randn(b, t, generator=g) * 0.3
    adv = torch.randn(b, generator=g)
    valid = torch.ones(b, t, dtype=torch.bool)
    mask = forking_token_mask(torch.rand(b, t, generator=g), valid, 1.0)
    advantages = adv[:, None].expand(b, t) if per_token_adv else adv
    loss, _ = policy_loss(logp, old, advantages, mask)
    reference = _dapo_reference(logp.tolist(), old.tolist(), adv.tolist(), 0.2, 0.28)
    assert abs(loss.item() - reference) < 1e-5


@FAST
@given(seed=seeds, b=st.integers(1, 4), t=st.integers(1, 10))
def test_policy_loss_gradient_is_exactly_zero_at_unselected_tokens(seed, b, t):
    g = _gen(seed)
    logp = (torch.randn(b, t, generator=g) * 0.3).requires_grad_()
    old = torch.randn(b, t, generator=g) * 0.3
    mask = torch.rand(b, t, generator=g) < 0.4
    with torch.no_grad():  # garbage where unselected must not leak into the gradient
        logp[~mask] = torch.tensor([float("nan"), float("inf")]).repeat(b * t)[: int((~mask).sum())]
    loss, metrics = policy_loss(logp, old, torch.randn(b, generator=g), mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert (logp.grad[~mask] == 0).all()
    assert all(torch.isfinite(v) and not v.requires_grad for v in metrics.values())


def test_policy_loss_with_empty_mask_is_zero_with_zero_grad():
    logp = torch.randn(2, 3, requires_grad=True)
    loss, metrics = policy_loss(logp, torch.zeros(2, 3), torch.ones(2), torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and (logp.grad == 0).all()
    assert metrics["tokens"].item() == 0 and metrics["ratio"].item() == 0


@FAST
@given(seed=seeds, b=st.integers(2, 8), t=st.integers(1, 10), splits=st.integers(1, 4))
def test_micro_batch_losses_with_global_num_tokens_sum_to_full_batch_loss_and_grad(seed, b, t, splits):
    g = _gen(seed)
    logp_full = torch.randn(b, t, generator=g) * 0.3
    old = logp_full + torch.randn(b, t, generator=g) * 0.2
    adv = torch.randn(b, generator=g)
    mask = torch.rand(b, t, generator=g) < 0.5
    cuts = sorted(torch.randint(0, b + 1, (splits,), generator=g).tolist())
    bounds = list(zip([0] + cuts, cuts + [b]))

    logp = logp_full.clone().requires_grad_()
    full_loss, _ = policy_loss(logp, old, adv, mask)
    full_loss.backward()
    full_grad = logp.grad.clone()

    logp.grad = None
    num_tokens = mask.sum()  # global count, as the trainer all-reduces it
    total = 0.0
    for lo, hi in bounds:
        part, _ = policy_loss(logp[lo:hi], old[lo:hi], adv[lo:hi], mask[lo:hi], num_tokens=num_tokens)
        part.backward()
        total = total + part.detach()
    torch.testing.assert_close(total, full_loss.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(logp.grad, full_grad, atol=1e-7, rtol=1e-6)


def test_policy_loss_accepts_int_num_tokens_and_divides_by_it():
    logp = torch.zeros(1, 4, requires_grad=True)
    mask = torch.tensor([[True, False, False, False]])
    loss_v2, _ = policy_loss(logp, torch.zeros(1, 4), torch.ones(1), mask)  # / selected = 1
    loss_v1, _ = policy_loss(logp, torch.zeros(1, 4), torch.ones(1), mask, num_tokens=4)  # / all
    assert loss_v2.item() == -1.0 and loss_v1.item() == -0.25


def test_import_does_not_load_vllm_cuda_or_a_process_group():
    code = (
        "import sys, forkgrpo, torch; "
        "assert 'vllm' not in sys.modules; "
        "assert not torch.cuda.is_initialized(); "
        "assert not torch.distributed.is_initialized()"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=120)


def _token_losses(logp, old, adv, clip_ratio_c):
    """The per-token loss l_t of every token: policy_loss on that token alone, over 1."""
    out = torch.empty(logp.shape)
    for i in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            one = torch.zeros(logp.shape, dtype=torch.bool)
            one[i, t] = True
            out[i, t], _ = policy_loss(logp, old, adv, one, num_tokens=1, clip_ratio_c=clip_ratio_c)
    return out


@FAST
@given(seed=seeds, b=st.integers(1, 3), t=st.integers(1, 5), c=st.floats(1.5, 20.0))
def test_dual_clip_caps_negative_advantage_token_losses_at_c_abs_a_and_touches_no_other_token(seed, b, t, c):
    g = _gen(seed)
    old = torch.randn(b, t, generator=g)
    logp = old + torch.randn(b, t, generator=g) * 3  # ratios from e^-9 to e^9: some run away
    adv = torch.randn(b, generator=g)
    capped, plain = _token_losses(logp, old, adv, c), _token_losses(logp, old, adv, 0.0)
    a = adv[:, None].expand(b, t)
    neg = a < 0
    assert (capped[neg] <= c * a[neg].abs() * (1 + 1e-6)).all()
    torch.testing.assert_close(capped[neg], torch.minimum(plain[neg], c * a[neg].abs()))
    assert torch.equal(capped[~neg], plain[~neg])  # A >= 0: exactly the DAPO loss
    mask = torch.ones(b, t, dtype=torch.bool)
    _, m = policy_loss(logp, old, adv, mask, clip_ratio_c=c)
    assert (m["clip_dual"] / m["tokens"]).item() == pytest.approx(float((neg & (plain > c * a.abs())).float().mean()))


@FAST
@given(seed=seeds, b=st.integers(1, 4), t=st.integers(1, 8), c=st.sampled_from([0.0, 3.0, 10.0, math.inf]))
def test_dual_clip_changes_nothing_when_the_ratio_is_one(seed, b, t, c):
    g = _gen(seed)
    logp = (torch.randn(b, t, generator=g) - 1).requires_grad_()
    adv, mask = torch.randn(b, generator=g), torch.rand(b, t, generator=g) < 0.6
    loss, m = policy_loss(logp, logp.detach(), adv, mask, clip_ratio_c=c)
    grad, = torch.autograd.grad(loss, logp)
    off, _ = policy_loss(logp, logp.detach(), adv, mask, clip_ratio_c=0.0)
    grad_off, = torch.autograd.grad(off, logp)
    assert torch.equal(loss, off) and torch.equal(grad, grad_off) and m["clip_dual"].item() == 0


def test_log_ratio_clamp_keeps_a_runaway_ratio_finite_hand_computed():
    logp, old = torch.tensor([[1000.0, 0.0]]), torch.zeros(1, 2)
    mask = torch.tensor([[True, False]])
    # A < 0, dual clip off: l = -r A with r = e^20 (clamped log-ratio), not e^1000 = inf.
    loss, _ = policy_loss(logp, old, torch.tensor([-1.0]), mask, clip_ratio_c=0.0)
    assert loss.item() == pytest.approx(math.exp(20.0), rel=1e-6)
    # With the dual clip at c = 10: l = 10 |A|.
    loss, m = policy_loss(logp, old, torch.tensor([-0.5]), mask, clip_ratio_c=10.0)
    assert loss.item() == pytest.approx(5.0) and m["clip_dual"].item() / m["tokens"].item() == 1.0


# ------------------------------------------------------------------------------------
# micro_batches
# ------------------------------------------------------------------------------------


def test_micro_batches_hand_computed():
    lengths = [5, 30, 10, 30, 8]
    assert micro_batches(lengths, 2) == [[0, 1], [2, 3], [4]]  # the fixed rule: in order
    # longest first (ties in order): 30, 30 | 10, 8, 5 fits 3 x 10 = 30 <= 60 | ...
    assert micro_batches(lengths, 2, 60) == [[1, 3], [2, 4, 0]]
    assert micro_batches(lengths, 2, 20) == [[1], [3], [2, 4], [0]]  # a row over the budget goes alone


@FAST
@given(lengths=st.lists(st.integers(1, 60), max_size=40), size=st.integers(1, 9), budget=st.integers(1, 500))
def test_micro_batches_hold_every_row_once_and_token_budget_batches_fit_their_budget(lengths, size, budget):
    fixed = micro_batches(lengths, size)
    assert [i for b in fixed for i in b] == list(range(len(lengths))) and all(0 < len(b) <= size for b in fixed)
    packed = micro_batches(lengths, size, budget)
    assert sorted(i for b in packed for i in b) == list(range(len(lengths)))
    for b in packed:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= budget
    order = [lengths[i] for b in packed for i in b]
    assert order == sorted(lengths, reverse=True)  # sorted by length: rows of one length share micro-batches
