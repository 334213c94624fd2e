"""forkgrpo: forking-token RLVR in one file. (Docstring completed by the lead.)"""

import math
from fractions import Fraction

import torch
import torch.distributed as dist


# ======================================================================================
# ALGORITHM
#
# Pure functions: tensors in, tensors out. No config objects, no I/O, no `.item()`.
# Paper: "Beyond the 80/20 Rule" (arXiv 2506.01939 v2); DAPO (arXiv 2503.14476);
# GRPO (arXiv 2402.03300).
# ======================================================================================


def token_entropy(logits, temperature=1.0):
    """Entropy of the full-vocabulary distribution softmax(logits / T) at each position.

    Equation: z = logits / T,  H = logsumexp(z) - sum_v softmax(z)_v * z_v  (nats).

    Args:
        logits: (..., V) any float dtype.
        temperature: T > 0, the sampling temperature.
    Returns:
        (...) float32, in [0, log V].

    Note: the math runs in float32 whatever the input dtype, because bf16 softmax
    loses the small probabilities that make up most of a forking token's entropy.
    The alternative, the sampled token's negative log-likelihood -log p(y_t), is a
    one-sample estimate of H with the variance of the sampler; it is not the entropy.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    z = logits.float() / temperature  # (..., V)
    p = torch.softmax(z, dim=-1)  # (..., V)
    entropy = torch.logsumexp(z, dim=-1) - (p * z).sum(dim=-1)  # (...)
    return entropy.clamp_min(0.0)  # rounding can give -1e-7 for a one-hot distribution


def _chunk_logits(h_c, weight, temperature, out):
    """z_c = (h_c @ W.T) / T as float32, written into `out` when the dtype allows."""
    if h_c.dtype == torch.float32 and weight.dtype == torch.float32:
        z = torch.mm(h_c, weight.t(), out=out)  # (C, V) float32, no fresh allocation
    else:
        z = torch.mm(h_c, weight.t()).float()  # (C, V) logits in the input dtype, then float32
    if temperature != 1.0:
        z.div_(temperature)
    return z


def _logprobs_and_entropy_forward(hidden, weight, targets, temperature, chunk_size):
    """Chunked forward; returns (logp, entropy, lse), all (N,) float32."""
    n = hidden.shape[0]
    logp = hidden.new_empty(n, dtype=torch.float32)  # (N,)
    entropy = hidden.new_empty(n, dtype=torch.float32)  # (N,)
    lse = hidden.new_empty(n, dtype=torch.float32)  # (N,)
    rows = min(chunk_size, n)
    z_buf = hidden.new_empty((rows, weight.shape[0]), dtype=torch.float32)  # (C, V)
    e_buf = torch.empty_like(z_buf)  # (C, V)
    for s in range(0, n, chunk_size):
        c = min(chunk_size, n - s)
        z = _chunk_logits(hidden[s : s + c], weight, temperature, z_buf[:c])  # (C, V)
        m = z.amax(dim=-1, keepdim=True)  # (C, 1)
        z.sub_(m)  # shifted logits s = z - max, so exp cannot overflow
        e = torch.exp(z, out=e_buf[:c])  # (C, V)
        sum_e = e.sum(dim=-1)  # (C,)
        sum_es = e.mul_(z).sum(dim=-1)  # (C,)  sum_v e^s_v * s_v
        log_sum_e = sum_e.log()  # (C,)
        # H is shift-invariant: H = log S - sum(e^s s) / S with S = sum e^s.
        entropy[s : s + c] = (log_sum_e - sum_es / sum_e).clamp_min_(0.0)
        logp[s : s + c] = z.gather(1, targets[s : s + c, None]).squeeze(1) - log_sum_e
        lse[s : s + c] = m.squeeze(1) + log_sum_e
    return logp, entropy, lse


class _ChunkedLogprobEntropy(torch.autograd.Function):
    """Autograd for logprobs_and_entropy: saves (N,) logsumexp, recomputes logits in backward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, chunk_size):
        logp, entropy, lse = _logprobs_and_entropy_forward(
            hidden, weight, targets, temperature, chunk_size
        )
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.temperature = temperature
        ctx.chunk_size = chunk_size
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        # d logp_n / d z_nv = onehot(y_n)_v - p_nv, and z = h W^T / T, so
        # grad_z = g (onehot - p) / T, grad_h = grad_z W, grad_W = grad_z^T h.
        hidden, weight, targets, lse = ctx.saved_tensors
        temperature, chunk_size = ctx.temperature, ctx.chunk_size
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n, v = hidden.shape[0], weight.shape[0]
        grad_hidden = torch.zeros_like(hidden) if need_h else None  # (N, H)
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            if need_w
            else None
        )  # (V, H) float32 accumulator across chunks
        rows = min(chunk_size, n)
        z_buf = hidden.new_empty((rows, v), dtype=torch.float32)  # (C, V)
        g = grad_logp.float() / temperature  # (N,)
        low_precision = hidden.dtype != torch.float32 or weight.dtype != torch.float32
        for s in range(0, n, chunk_size):
            c = min(chunk_size, n - s)
            h_c = hidden[s : s + c]  # (C, H)
            z = _chunk_logits(h_c, weight, temperature, z_buf[:c])  # (C, V)
            p = z.sub_(lse[s : s + c, None]).exp_()  # (C, V) softmax, in place
            grad_z = p.mul_(-g[s : s + c, None])  # (C, V) -g p / T
            grad_z[torch.arange(c, device=z.device), targets[s : s + c]] += g[s : s + c]
            if low_precision:
                grad_z = grad_z.to(weight.dtype)  # matmuls in the input dtype, as autograd would
            if need_h:
                grad_hidden[s : s + c] = grad_z @ weight.to(grad_z.dtype)  # (C, H)
            if need_w:  # accumulate in float32 across chunks
                grad_weight.addmm_(grad_z.t().float(), h_c.float())  # (V, H)
        if need_w:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None


def logprobs_and_entropy(hidden, weight, targets, temperature=1.0, chunk_size=1024):
    """Log-prob of each target token and the entropy of its distribution, chunk by chunk.

    Equation: z_n = hidden_n @ weight.T / T,  logp_n = z_n[y_n] - logsumexp(z_n),
    H_n = logsumexp(z_n) - sum_v softmax(z_n)_v z_nv.

    Args:
        hidden: (N, H) any float dtype, the final hidden states (after the last norm).
        weight: (V, H) same dtype as `hidden`, the LM head (a plain tensor, not a DTensor).
        targets: (N,) long, the token that follows each position.
        temperature: T > 0, the sampling temperature.
        chunk_size: rows of logits held at once.
    Returns:
        logp: (N,) float32, differentiable with respect to `hidden` and `weight`.
        entropy: (N,) float32, detached.

    Note: logits are never materialised for all N tokens: the forward keeps only the
    (N,) logsumexp, and the backward recomputes each (chunk, V) block of logits from
    `hidden` and `weight` (a custom autograd Function, so one extra matmul buys an
    N/chunk_size cut in peak memory). The alternative, `log_softmax(hidden @ W.T)`,
    holds several (N, V) float32 tensors: 12 GB per 20k-token response at V = 152k.
    Entropy is computed in the same pass as logsumexp (one exp per logit) and carries
    no gradient, as in the paper, where it only selects tokens.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _ChunkedLogprobEntropy.apply(hidden, weight, targets, temperature, chunk_size)
    logp, entropy, _ = _logprobs_and_entropy_forward(
        hidden, weight, targets, temperature, chunk_size
    )  # no graph, nothing saved
    return logp, entropy


_INT32_MAX = 2**31 - 1
_RANDOM_KEY_BITS = 56  # a multiple of 8, the radix
_RHO_MAX_DENOMINATOR = 10**6


def _order_keys(x):
    """Map float32 values to int64 keys in [0, 2^32) with the same order."""
    x = x.float() + 0.0  # -0.0 + 0.0 == +0.0, so both zeros get one key
    bits = x.view(torch.int32)
    # Non-negative floats already order like their bits; for negative floats the
    # bits grow as the value falls, so flip the 31 magnitude bits.
    ordered = torch.where(bits < 0, bits ^ _INT32_MAX, bits)  # signed int32 order
    return ordered.to(torch.int64) + 2**31


def forking_token_mask(entropy, valid, rho, mode="top", group=None, generator=None):
    """Select the top-rho fraction of valid tokens by entropy: the forking tokens.

    Equation: N = sum valid (over all ranks of `group`), k = ceil(rho N),
    tau = k-th largest valid H,  mask = valid & (H >= tau)            (mode "top")
    tau = k-th smallest valid H, mask = valid & (H <= tau)            (mode "bottom")
    mask = a uniformly random k-subset of the valid tokens            (mode "random")

    Args:
        entropy: (B, T) float; cast to float32. Values where `valid` is False are ignored.
        valid: (B, T) bool, response tokens including EOS (no prompt, no padding).
        rho: fraction in (0, 1]; the paper's default is 0.2.
        mode: "top" (forking tokens), "bottom" (the paper's ablation, with rho = 0.8) or
            "random" (the control).
        group: a torch.distributed process group; None means this process holds the batch.
        generator: torch.Generator on `entropy`'s device, for mode "random". Under `group`,
            seed it differently on each rank.
    Returns:
        (B, T) bool.

    Note: ties at tau are all kept, so "top" may select more than k tokens when
    entropies repeat (the rule is a threshold on H, the same on every rank and in
    every micro-batch). The authors' verl code instead takes exactly k with `topk`
    per micro-batch on each GPU, which breaks ties by position and makes the
    selection depend on how the batch was split. TRL thresholds at
    `torch.quantile(1 - rho)`, which interpolates between values (so tau need not
    be a token's entropy) and refuses more than 2^24 elements; here tau is found
    exactly by radix selection on the float32 bit pattern: four all-reduces of a
    256-bin histogram, whatever N is (gathering all entropies would send N floats).
    k = ceil(rho N) uses exact integer arithmetic on rho as a fraction with
    denominator <= 10^6 (exact for any rho written with up to 6 decimals), because
    the float product can land just above an integer (0.7 * 10 = 7.000000000000001).
    "random" takes the top k of iid 56-bit random keys; under `group` each rank
    draws its own keys, so the subset is uniform but not bitwise equal to the
    single-process draw. It is exactly k unless the k-th key ties another, which has
    probability below N / 2^56 (2e-10 at N = 2^24).
    """
    if not (isinstance(rho, (int, float)) and 0 < rho <= 1):
        raise ValueError(f"rho must be a number in (0, 1], got {rho!r}")
    if mode not in ("top", "bottom", "random"):
        raise ValueError(f"mode must be 'top', 'bottom' or 'random', got {mode!r}")
    if entropy.shape != valid.shape:
        raise ValueError(f"entropy {tuple(entropy.shape)} and valid {tuple(valid.shape)} differ")
    valid = valid.bool()
    if rho == 1:
        return valid.clone()  # same on every rank, so skipping the collectives is safe

    n = valid.sum().to(torch.int64)  # () local valid count
    if group is not None:
        dist.all_reduce(n, op=dist.ReduceOp.SUM, group=group)  # N: k depends on all ranks
    frac = Fraction(rho).limit_denominator(_RHO_MAX_DENOMINATOR)
    # ceil(num N / den) in integers; at least 1 token when N > 0.
    k = (n * frac.numerator + frac.denominator - 1) // frac.denominator  # ()
    k = torch.where(n > 0, k.clamp_min(1), k)

    if mode == "random":
        keys = torch.randint(
            0, 2**_RANDOM_KEY_BITS, entropy.shape, dtype=torch.int64,
            device=entropy.device, generator=generator,
        )  # (B, T)
        bits = _RANDOM_KEY_BITS
    else:
        keys = _order_keys(torch.where(valid, entropy.float(), 0.0))  # (B, T) in [0, 2^32)
        if mode == "bottom":
            keys = (2**32 - 1) - keys  # reverses the order: bottom-k is the top-k of this
        bits = 32

    tau = _kth_largest_valid_key(keys[valid], k, bits, group)  # ()
    return valid & (keys >= tau)  # (B, T)


def _kth_largest_valid_key(keys, k, bits, group):
    """Exact k-th largest of the 1-D int64 `keys` in [0, 2^bits), pooled over all ranks.

    Radix select, 8 bits at a time from the top: a 256-bin histogram of the next byte
    of the keys that share the prefix found so far (all-reduced over `group`) tells in
    which bin the k-th largest key lies; keep that bin's keys and go on. Communication
    is bits / 8 fixed-size all-reduces whatever N is, and every rank makes the same
    calls, even one with no keys. Invariant: `above` (global count of keys greater
    than every key with the current prefix) < k <= above + (global count with the
    prefix). With k = 0 the result is the largest key, 2^bits - 1, whatever the keys.
    Returns a 0-d int64 tensor.
    """
    above = torch.zeros((), dtype=torch.int64, device=keys.device)
    prefix = torch.zeros((), dtype=torch.int64, device=keys.device)
    for shift in range(bits - 8, -1, -8):
        digit = (keys >> shift) & 255  # (n,) next byte of the surviving keys
        hist = torch.bincount(digit, minlength=256)  # (256,)
        if group is not None:
            dist.all_reduce(hist, op=dist.ReduceOp.SUM, group=group)  # global histogram
        at_least = hist.flip(0).cumsum(0).flip(0) + above  # (256,) keys >= (prefix, d)
        d = (at_least >= k).sum() - 1  # largest d with at_least[d] >= k (non-increasing)
        above = at_least[d] - hist[d]
        prefix = (prefix << 8) | d
        keys = keys[digit == d]
    return prefix


def group_advantages(rewards, group_size, scale_by_std=True, eps=1e-6):
    """Group-relative advantage of each response: its reward against its prompt's group.

    Equation: A_i = (r_i - mean(r_group)) / (std(r_group) + eps)   (GRPO, DAPO)
              A_i = r_i - mean(r_group)                              (Dr. GRPO, scale_by_std=False)
    with the unbiased std (n - 1), as torch, verl and TRL compute it.

    Args:
        rewards: (B,) float, B = prompts * group_size, a prompt's responses adjacent.
        group_size: G, responses per prompt.
        scale_by_std: divide by the group std.
        eps: added to the std.
    Returns:
        (B,) float32; exactly 0 for every response of a group whose rewards are all equal.

    Note: all-equal groups are zeroed by an explicit mask, not left to r - mean, which
    is not always exactly 0 in floating point (mean of three 0.1's is not 0.1), and
    divided by std + eps would turn that rounding into a spurious advantage.
    """
    if group_size < 1 or (scale_by_std and group_size < 2):
        raise ValueError(
            f"group_size must be >= 2 to scale by the std (>= 1 otherwise), got {group_size}"
        )
    if rewards.dim() != 1 or rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"rewards must be (B,) with B a multiple of group_size={group_size}, "
            f"got shape {tuple(rewards.shape)}"
        )
    r = rewards.float().view(-1, group_size)  # (P, G)
    adv = r - r.mean(dim=1, keepdim=True)  # (P, G)
    if scale_by_std:
        adv = adv / (r.std(dim=1, keepdim=True) + eps)
    all_equal = (r == r[:, :1]).all(dim=1, keepdim=True)  # (P, 1)
    return adv.masked_fill(all_equal, 0.0).view(-1)  # (B,)


def policy_loss(
    logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28, num_tokens=None
):
    """DAPO's clip-higher surrogate, summed over the selected tokens, over `num_tokens`.

    Equation: r_t = exp(logp_t - old_logp_t),
    loss = sum_{t in mask} -min(r_t A_t, clip(r_t, 1 - eps_low, 1 + eps_high) A_t) / num_tokens.

    Args:
        logp: (B, T) float, current policy log-probs of the sampled tokens (with grad).
        old_logp: (B, T) float, log-probs under the policy that sampled them.
        advantages: (B,) or (B, T) float.
        mask: (B, T) bool, the tokens that contribute (the forking-token mask).
        eps_low, eps_high: clip range (DAPO: 0.2, 0.28).
        num_tokens: int or 0-d tensor, the denominator; default mask.sum(). Clamped to >= 1.
    Returns:
        loss: () float32.
        metrics: dict of detached 0-d tensors over this call's masked tokens:
            loss/clipfrac_low (A < 0 and r < 1 - eps_low), loss/clipfrac_high (A > 0 and
            r > 1 + eps_high), loss/ratio_mean, loss/approx_kl (k3: mean of r - 1 - log r),
            loss/tokens (masked count).

    Note: the denominator is a parameter because it is the choice that sets the
    gradient scale: pass the number of SELECTED tokens in the whole update (all
    micro-batches and ranks) for paper v2 Eq. 6 and the authors' code, or the number
    of ALL response tokens for paper v1 and TRL (about rho times smaller gradients).
    Either way a global count makes gradient accumulation and data parallelism sum to
    exactly the full-batch gradient; a per-micro-batch mean would not. Unselected
    tokens are cut out with `where` before the exp, so NaN or inf there cannot leak
    into the loss or its gradient (multiplying by a 0/1 mask would give 0 * inf = NaN).
    """
    mask = mask.bool()
    adv = advantages.float()
    if adv.dim() == 1:
        adv = adv[:, None]  # (B, 1)
    log_ratio = torch.where(mask, logp.float() - old_logp.float(), 0.0)  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    adv = torch.where(mask, adv, 0.0)  # (B, T)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - eps_low, 1 + eps_high) * adv)
    count = mask.sum()  # ()
    if num_tokens is None:
        num_tokens = count
    denom = torch.as_tensor(num_tokens, dtype=torch.float32, device=logp.device).clamp_min(1)
    loss = -surrogate.sum() / denom  # (); 0 with zero gradient when the mask is empty

    with torch.no_grad():
        n = count.clamp_min(1).float()
        metrics = {
            "loss/clipfrac_low": ((adv < 0) & (ratio < 1 - eps_low) & mask).sum() / n,
            "loss/clipfrac_high": ((adv > 0) & (ratio > 1 + eps_high) & mask).sum() / n,
            "loss/ratio_mean": torch.where(mask, ratio, 0.0).sum() / n,
            "loss/approx_kl": torch.where(mask, ratio - 1 - log_ratio, 0.0).sum() / n,
            "loss/tokens": count.float(),
        }
    return loss, metrics


def overlong_penalty(lengths, max_len, cache_len, factor=1.0):
    """DAPO's soft overlong punishment (Eq. 13), added to the reward.

    Equation, with L the response length and L_max - L_cache the penalty-free length:
    R(L) = 0                                    if L <= L_max - L_cache
    R(L) = ((L_max - L_cache) - L) / L_cache    if L_max - L_cache < L <= L_max
    R(L) = -1                                   if L > L_max
    times `factor`.

    Args:
        lengths: (B,) int, response lengths in tokens.
        max_len: L_max. cache_len: L_cache, 0 <= cache_len <= max_len.
        factor: scale of the penalty.
    Returns:
        (B,) float32, in [-factor, 0].

    Note: a linear ramp over the last cache_len tokens, as in DAPO, rather than a
    hard -1 at truncation (cache_len = 0), so that a response is not punished as
    wrong for being one token too long with no warning in the reward before.
    """
    if not 0 <= cache_len <= max_len:
        raise ValueError(f"need 0 <= cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}")
    length = lengths.float()  # (B,)
    free = max_len - cache_len
    ramp = (free - length) / max(cache_len, 1)  # (B,); unused when cache_len == 0
    penalty = torch.where(length <= free, 0.0, torch.where(length <= max_len, ramp, -1.0))
    return penalty * factor  # (B,)


def informative_groups(rewards, group_size):
    """Which prompt groups carry a gradient: those whose rewards are not all equal.

    Equation: keep_g = exists i, j in group g with r_i != r_j   (DAPO dynamic sampling).

    Args:
        rewards: (B,) float, B = prompts * group_size, a prompt's responses adjacent.
        group_size: G.
    Returns:
        (B // G,) bool.

    Note: with group-relative advantages an all-right or all-wrong group has A = 0
    for every token, so it only dilutes the token count; DAPO drops such groups and
    samples more. Exact equality, not a std threshold, matches group_advantages'
    zeroing, so the two functions agree on what is uninformative.
    """
    if group_size < 1 or rewards.dim() != 1 or rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"rewards must be (B,) with B a multiple of group_size={group_size}, "
            f"got shape {tuple(rewards.shape)}"
        )
    r = rewards.view(-1, group_size)  # (P, G)
    return ~(r == r[:, :1]).all(dim=1)  # (P,)
