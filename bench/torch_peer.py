"""PyTorch peer for `npm run bench`: times the same CPU workloads dpoflow runs through ONNX Runtime.

Prints ONE JSON object on stdout (logs go to stderr). Each case runs in a fresh child process
(`--case X --child`) so its peak resident memory is its own. Legend: B sequences, T tokens, D width,
H heads, V vocab, L layers.
"""

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

SEED = 1234
MATMUL_SIZE = 2048  # square MatMul n×n @ n×n
WIDTH, HEADS, LAYERS = 384, 6, 6  # D, H, L of the standard benchmark model
VOCAB, POSITIONS = 8192, 256  # V, context length
SEQUENCES, TOKENS = 16, 256  # B = 8 DPO pairs (rows 0..7 chosen, 8..15 rejected), T
PROMPT_TOKENS = 64  # response = positions 64..255
BETA = 0.1
FLOP_FORMULA = "6*N*B*T + 12*L*T^2*D*B (N = parameters without position embeddings; tied lm_head counts once)"
CASES = ["matmul_peak", "block_step_eager", "block_step_sdpa", "model_step",
         "score_standard", "score_gpt2_small", "decode_standard", "decode_gpt2_small"]
CASE_GROUPS = {"all": CASES, "block_step": ["block_step_eager", "block_step_sdpa"]}


def log(message):
    print(f"torch_peer: {message}", file=sys.stderr, flush=True)


def seeded_generator():
    return torch.Generator().manual_seed(SEED)


# ---- GPT-2 model, weight names as in the GPT-2 checkpoint -------------------------------------


class Conv1D(nn.Module):
    """GPT-2's Conv1D: a Linear whose weight is stored [in, out], y = x @ W + b."""

    def __init__(self, fan_in, fan_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_in, fan_out) * 0.02)  # (in, out)
        self.bias = nn.Parameter(torch.zeros(fan_out))

    def forward(self, x):  # (..., in) -> (..., out)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class CausalSelfAttention(nn.Module):
    def __init__(self, width, heads, use_sdpa):
        super().__init__()
        self.heads, self.use_sdpa = heads, use_sdpa
        self.c_attn = Conv1D(width, 3 * width)  # [D, 3D]
        self.c_proj = Conv1D(width, width)  # [D, D]
        causal = torch.ones(POSITIONS, POSITIONS, dtype=torch.bool).tril()  # (T, T), True = may attend
        self.register_buffer("causal", causal, persistent=False)

    def forward(self, x):  # (B, T, D)
        batch, tokens, width = x.shape
        q, k, v = self.c_attn(x).split(width, dim=2)  # 3 × (B, T, D)
        q, k, v = (t.view(batch, tokens, self.heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D/H)
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D/H)
        else:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, T, T)
            scores = scores.masked_fill(~self.causal[:tokens, :tokens], float("-inf"))
            y = scores.softmax(dim=-1) @ v  # (B, H, T, D/H)
        return self.c_proj(y.transpose(1, 2).reshape(batch, tokens, width))  # (B, T, D)


class MLP(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.c_fc = Conv1D(width, 4 * width)  # [D, 4D]
        self.c_proj = Conv1D(4 * width, width)  # [4D, D]

    def forward(self, x):  # (B, T, D)
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # GPT-2's tanh GELU


class Block(nn.Module):
    """Pre-LN GPT-2 block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, width, heads, use_sdpa):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, use_sdpa)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x):  # (B, T, D)
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, use_sdpa):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, WIDTH)  # (V, D), also the tied lm_head
        self.wpe = nn.Embedding(POSITIONS, WIDTH)  # (T, D)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)
        self.h = nn.ModuleList(Block(WIDTH, HEADS, use_sdpa) for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(WIDTH)

    def forward(self, input_ids):  # (B, T) int64
        x = self.wte(input_ids) + self.wpe(torch.arange(input_ids.shape[1]))  # (B, T, D)
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # (B, T, V)


def estimated_flop(params_without_positions, layers):
    """Training FLOP of one step over B×T tokens (FLOP_FORMULA)."""
    return 6 * params_without_positions * SEQUENCES * TOKENS + 12 * layers * TOKENS**2 * WIDTH * SEQUENCES


# ---- cases: each returns (step function, extra fields computed from the median step time) ------


def matmul_peak():
    generator = seeded_generator()
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator)  # (n, n)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator)  # (n, n)
    out = torch.empty(MATMUL_SIZE, MATMUL_SIZE)
    flop = 2 * MATMUL_SIZE**3
    return lambda: torch.mm(a, b, out=out), lambda seconds: {
        "shape": [MATMUL_SIZE, MATMUL_SIZE, MATMUL_SIZE],
        "flop": flop,
        "gflops": flop / seconds / 1e9,
    }


def training_step(model, loss_fn):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def block_step(use_sdpa):
    torch.manual_seed(SEED)
    block = Block(WIDTH, HEADS, use_sdpa)
    generator = seeded_generator()
    # x needs a gradient: inside a stack of blocks backward always produces dL/dx for the block below.
    x = torch.randn(SEQUENCES, TOKENS, WIDTH, generator=generator).requires_grad_()  # (B, T, D)
    probe = torch.randn(SEQUENCES, TOKENS, WIDTH, generator=generator)  # (B, T, D) makes dL/dout dense
    flop = estimated_flop(sum(p.numel() for p in block.parameters()), layers=1)
    return training_step(block, lambda: (block(x) * probe).sum()), lambda seconds: {
        "input_shape": [SEQUENCES, TOKENS, WIDTH],
        "heads": HEADS,
        "attention": "F.scaled_dot_product_attention(is_causal=True)" if use_sdpa
        else "eager: q@kT/sqrt(d), masked_fill causal, softmax, @v",
        "flop_per_step": flop,
        "flop_formula": FLOP_FORMULA + ", L=1",
        "gflops": flop / seconds / 1e9,
    }


def model_step():
    torch.manual_seed(SEED)
    model = GPT(use_sdpa=False)
    generator = seeded_generator()
    input_ids = torch.randint(VOCAB, (SEQUENCES, TOKENS), generator=generator)  # (B, T)
    pairs = SEQUENCES // 2
    ref_chosen, ref_rejected = torch.randn(2, pairs, generator=generator)  # (B/2,) each, fixed reference log-probs
    targets = input_ids[:, 1:]  # (B, T-1): logits at position t predict token t+1
    response_mask = (torch.arange(TOKENS - 1) >= PROMPT_TOKENS - 1).float()  # (T-1,): targets 64..255 count

    def dpo_loss():
        logits = model(input_ids)[:, :-1]  # (B, T-1, V)
        token_logp = logits.log_softmax(dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        sequence_logp = (token_logp * response_mask).sum(dim=-1)  # (B,)
        chosen, rejected = sequence_logp[:pairs], sequence_logp[pairs:]  # (B/2,) each
        margin = (chosen - ref_chosen) - (rejected - ref_rejected)  # h, (B/2,)
        return -F.logsigmoid(BETA * margin).mean()

    params = sum(p.numel() for p in model.parameters())
    params_without_positions = params - model.wpe.weight.numel()
    flop = estimated_flop(params_without_positions, LAYERS)
    return training_step(model, dpo_loss), lambda seconds: {
        "config": {"layers": LAYERS, "width": WIDTH, "heads": HEADS, "vocab": VOCAB, "positions": POSITIONS,
                   "tied_lm_head": True, "attention": "eager"},
        "sequences": SEQUENCES, "tokens_per_sequence": TOKENS, "prompt_tokens": PROMPT_TOKENS,
        "loss_kind": "DPO sigmoid, beta 0.1, fixed random reference log-probs",
        "params": params,
        "params_without_positions": params_without_positions,
        "pairs_per_s": pairs / seconds,
        "tokens_per_s": SEQUENCES * TOKENS / seconds,
        "flop_per_step": flop,
        "flop_formula": FLOP_FORMULA,
        "gflops": flop / seconds / 1e9,
    }


# ---- inference with transformers' GPT2LMHeadModel (random weights): scoring and cached greedy decoding ---------
INFERENCE_SHAPES = {  # layers, width, heads, vocab, positions; sequences and tokens for scoring; decoding batch
    "standard": dict(layers=LAYERS, width=WIDTH, heads=HEADS, vocab=VOCAB, positions=POSITIONS,
                     score=(16, 256), decode=dict(batch=8, prompt=64, new=64)),
    "gpt2_small": dict(layers=12, width=768, heads=12, vocab=50257, positions=1024,
                       score=(4, 256), decode=dict(batch=4, prompt=64, new=32)),
}


def hf_gpt2(shape):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(SEED)
    config = GPT2Config(n_layer=shape["layers"], n_embd=shape["width"], n_head=shape["heads"],
                        vocab_size=shape["vocab"], n_positions=shape["positions"], attn_implementation="eager")
    return GPT2LMHeadModel(config).eval()


def score_case(name):
    """Per-sequence response log-probs under no_grad: the reference log-prob cache's work."""
    shape = INFERENCE_SHAPES[name]
    model = hf_gpt2(shape)
    sequences, tokens = shape["score"]
    input_ids = torch.randint(shape["vocab"], (sequences, tokens), generator=seeded_generator())
    mask = (torch.arange(tokens - 1) >= PROMPT_TOKENS - 1).float()

    def step():
        with torch.no_grad():
            logits = model(input_ids).logits[:, :-1]
            token_logp = logits.log_softmax(-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            return float((token_logp * mask).sum())

    return step, lambda seconds: {"sequences": sequences, "tokens_per_sequence": tokens,
                                  "tokens_per_s": sequences * tokens / seconds}


def decode_case(name):
    """Batched greedy generate() with the KV cache, a fixed number of new tokens."""
    shape = INFERENCE_SHAPES[name]
    model = hf_gpt2(shape)
    d = shape["decode"]
    prompts = torch.randint(shape["vocab"], (d["batch"], d["prompt"]), generator=seeded_generator())

    def step():
        with torch.no_grad():
            model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False, use_cache=True,
                           max_new_tokens=d["new"], min_new_tokens=d["new"], pad_token_id=0)
        return float("nan")

    return step, lambda seconds: {**d, "new_tokens_per_s": d["batch"] * d["new"] / seconds}


BUILDERS = {
    "score_standard": lambda: score_case("standard"),
    "score_gpt2_small": lambda: score_case("gpt2_small"),
    "decode_standard": lambda: decode_case("standard"),
    "decode_gpt2_small": lambda: decode_case("gpt2_small"),
    "matmul_peak": matmul_peak,
    "block_step_eager": lambda: block_step(use_sdpa=False),
    "block_step_sdpa": lambda: block_step(use_sdpa=True),
    "model_step": model_step,
}


# ---- measurement -------------------------------------------------------------------------------


def run_case(case, warmup, iters):
    """Child process: build the case, warm up, time `iters` steps; peak RSS covers this case only."""
    import_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; torch itself
    step, describe = BUILDERS[case]()
    outputs = [step() for _ in range(warmup)]
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        outputs.append(step())
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    # min_s is the number to trust when the 2 cores are shared with other work (see load_average).
    record = {"median_s": median, "min_s": min(times), "times_s": times, **describe(median)}
    # Training steps return the loss (it should move as AdamW steps); NaN means "nothing to report"
    # and must stay out of the JSON, which has no NaN.
    if isinstance(outputs[-1], float) and math.isfinite(outputs[-1]):
        record["loss_first"], record["loss_last"] = outputs[0], outputs[-1]
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record["rss_after_import_mib"] = import_rss_mib
    return record


def runtime_info(threads):
    lines = [line.strip() for line in torch.__config__.parallel_info().splitlines()]
    # parallel_info's first line is just the heading "ATen/Parallel:"; these lines name what actually runs.
    def line_with(text):
        return next((line for line in lines if text in line), None)

    return {
        "torch_version": torch.__version__,
        "threads": threads,
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "mkl_available": torch.backends.mkl.is_available(),
        "parallel_backend": line_with("ATen parallel backend"),
        "blas": line_with("Math Kernel Library"),
        "onednn": line_with("MKL-DNN"),
    }


def run_children(args):
    """Parent: one fresh child per case; a failed case is reported with its error and makes the exit code 1."""
    cases = CASE_GROUPS.get(args.case, [args.case])
    results, failed = {}, False
    load_before = os.getloadavg()[0]
    for case in cases:
        log(f"{case}: {args.warmup} warmup + {args.iters} timed iterations, {args.threads} threads")
        command = [sys.executable, __file__, "--child", "--case", case,
                   "--threads", str(args.threads), "--iters", str(args.iters), "--warmup", str(args.warmup)]
        child = subprocess.run(command, stdout=subprocess.PIPE, text=True)  # child's stderr passes through
        if child.returncode == 0:
            results[case] = json.loads(child.stdout)
            log(f"{case}: median {results[case]['median_s']:.4f} s")
        else:
            results[case] = {"error": f"child exited with {child.returncode} (its stderr is above)"}
            failed = True
    report = {"peer": "torch", **runtime_info(args.threads), "warmup": args.warmup, "iters": args.iters,
              "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]}, "cases": results}
    print(json.dumps(report, indent=2))
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="all", choices=[*CASE_GROUPS, *CASES])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations; the median is reported")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--child", action="store_true", help="internal: run exactly one case in this process")
    args = parser.parse_args()
    if args.iters < 1 or args.warmup < 0 or args.threads < 1:
        parser.error(f"need --iters >= 1, --warmup >= 0, --threads >= 1 "
                     f"(got {args.iters}, {args.warmup}, {args.threads})")
    torch.set_num_threads(args.threads)
    if not args.child:
        return run_children(args)
    if args.case not in BUILDERS:
        parser.error(f"--child runs one case, not the group {args.case!r}")
    print(json.dumps(run_case(args.case, args.warmup, args.iters)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
