#!/usr/bin/python3
"""Train the small Llama (kjv-llama-6m) on the King James Version, on CPU.

Data: every verse becomes  <s> verse-tokens </s>  and the verses are concatenated
into one token stream (canonical order). The last 5% of verses (Colossians 4:5 ..
Revelation 22:21) are held out for validation. Training samples random windows of
--ctx + 1 tokens from the training stream. Targets equal to <s> (always right after
</s>, so trivially predictable) are excluded from every loss, train and val.

Optimiser: AdamW (betas 0.9/0.95, weight decay on matrices only), linear warm-up then
cosine decay to 10% of the peak LR, gradient clipping at 1.0. Everything is seeded
and torch deterministic algorithms are on, with a fixed thread count (2), so a re-run
on the same software gives the same numbers (up to BLAS differences across machines).

A wall-clock guard (--time-budget seconds) stops training early if the machine is
slower than planned; the log then says so.

Writes:
  <out>/training-log.txt            the log (step, lr, train loss, val loss, speed)
  <work>/checkpoint.pt              final fp32 weights + config + run summary

Usage (from the repository root):
  nice -n 10 /usr/bin/python3 scripts/model/train.py --out models/kjv-llama-6m
"""
import os

# OpenMP threads that busy-wait behave badly on a shared 2-core machine; must be
# set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.dont_write_bytecode = True  # keep the repository free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
from llama import LlamaConfig, LlamaForCausalLM, count_params  # noqa: E402
from prepare_data import ensure_data, split_verses  # noqa: E402

IGNORE = -100


def token_streams(tokenizer, verses):
    train, val = split_verses(verses)

    def stream(part):
        ids = []
        for v in part:
            ids.extend(tokenizer.encode(v, add_bos=True))
            ids.append(tokenizer.eos_id)
        return torch.tensor(ids, dtype=torch.long)

    return stream(train), stream(val)


def targets_of(window, bos_id):
    y = window[..., 1:].clone()
    y[y == bos_id] = IGNORE
    return window[..., :-1], y


def val_windows(stream, ctx):
    """Non-overlapping windows of ctx+1 tokens, stride ctx: every token after the first is
    predicted exactly once."""
    out = []
    for start in range(0, len(stream) - 1, ctx):
        w = stream[start:start + ctx + 1]
        if len(w) >= 2:
            out.append(w)
    return out


@torch.no_grad()
def evaluate(model, windows, bos_id, batch_size=16):
    """Mean cross-entropy (nats/token) over all non-ignored targets in the windows."""
    model.eval()
    total, count = 0.0, 0
    full = [w for w in windows if len(w) == len(windows[0])]
    rest = [w for w in windows if len(w) != len(windows[0])]
    batches = [torch.stack(full[i:i + batch_size]) for i in range(0, len(full), batch_size)]
    batches += [w.unsqueeze(0) for w in rest]
    for xb in batches:
        x, y = targets_of(xb, bos_id)
        logits = model(x).float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                               ignore_index=IGNORE, reduction="sum")
        total += float(loss)
        count += int((y != IGNORE).sum())
    model.train()
    return total / count, count


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    floor = args.lr * args.min_lr_ratio
    return floor + 0.5 * (args.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="model directory (must hold tokenizer.json)")
    ap.add_argument("--work", default="/tmp/kjv-llama-6m-work")
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-windows", type=int, default=48,
                    help="windows of the validation set used for the periodic evaluations "
                         "(the final evaluation uses all of it)")
    ap.add_argument("--time-budget", type=float, default=58 * 60, help="seconds; stop early beyond")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    tok = bpe.Tokenizer.from_file(os.path.join(args.out, "tokenizer.json"))
    verses = ensure_data(args.work)
    train_ids, val_ids = token_streams(tok, verses)
    vwins = val_windows(val_ids, args.ctx)
    # periodic evaluation: evenly spaced subset of the validation windows
    stride = max(1, len(vwins) // args.eval_windows)
    vwins_small = vwins[::stride][:args.eval_windows]

    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_id, eos_token_id=tok.eos_id)
    model = LlamaForCausalLM(cfg)
    gen = torch.Generator().manual_seed(args.seed)
    model.init_weights(gen)
    n_params = count_params(model)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    log_path = os.path.join(args.out, "training-log.txt")
    logf = open(log_path, "w", encoding="utf-8")

    def log(msg):
        line = msg.rstrip("\n")
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    log("# kjv-llama-6m training log")
    log("# torch %s, threads %d, OMP_WAIT_POLICY=%s" % (torch.__version__, torch.get_num_threads(),
                                                        os.environ.get("OMP_WAIT_POLICY")))
    log("# args " + json.dumps(vars(args), sort_keys=True))
    log("# config " + json.dumps(cfg.to_dict(), sort_keys=True))
    log("# parameters %d (tied embeddings counted once)" % n_params)
    log("# train tokens %d, val tokens %d (%d val windows, %d used for periodic eval)" % (
        len(train_ids), len(val_ids), len(vwins), len(vwins_small)))
    log("# columns: step lr train_loss(mean since last line) [val_loss(subset)] tok/s elapsed_s")

    t0 = time.time()
    data_gen = torch.Generator().manual_seed(args.seed + 1)
    max_start = len(train_ids) - (args.ctx + 1)
    run_loss, run_n, tokens_seen = 0.0, 0, 0
    t_last = t0
    stopped_early = False
    step = 0
    history = []
    step_losses = []
    for step in range(args.steps):
        lr = lr_at(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, max_start + 1, (args.batch_size,), generator=data_gen)
        xb = torch.stack([train_ids[s:s + args.ctx + 1] for s in starts.tolist()])
        x, y = targets_of(xb, tok.bos_id)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        run_loss += float(loss)
        step_losses.append(float(loss))
        run_n += 1
        tokens_seen += x.numel()

        last = step == args.steps - 1
        elapsed = time.time() - t0
        over_budget = elapsed > args.time_budget
        if (step + 1) % args.log_every == 0 or last or over_budget:
            now = time.time()
            tps = run_n * x.numel() / (now - t_last)
            msg = "step %5d lr %.2e train %.4f" % (step + 1, lr, run_loss / run_n)
            if (step + 1) % args.eval_every == 0 and not last:
                vl, _ = evaluate(model, vwins_small, tok.bos_id)
                msg += " val %.4f" % vl
                history.append({"step": step + 1, "train": run_loss / run_n, "val_subset": vl})
            log(msg + " tok/s %.0f elapsed %.0f" % (tps, now - t0))
            run_loss, run_n, t_last = 0.0, 0, time.time()
        if over_budget and not last:
            stopped_early = True
            log("# STOPPED EARLY at step %d: time budget of %.0fs exceeded" % (step + 1, args.time_budget))
            break

    train_time = time.time() - t0
    steps_done = step + 1
    log("# training done: %d steps, %d tokens, %.1fs" % (steps_done, tokens_seen, train_time))

    # final full evaluation (fp32): validation, and the training stream evaluated the same way
    t1 = time.time()
    val_loss, val_count = evaluate(model, vwins, tok.bos_id)
    # the training stream is ~20x the validation stream: evaluate an evenly spaced
    # subset of its windows, as many as the validation set has
    all_train_wins = val_windows(train_ids, args.ctx)[:-1]  # drop the short tail window
    tstride = len(all_train_wins) // len(vwins)
    train_eval_wins = all_train_wins[::tstride][:len(vwins)]
    train_loss, train_count = evaluate(model, train_eval_wins, tok.bos_id)
    log("# final fp32 val loss %.4f nats/token (ppl %.2f) over %d tokens" % (
        val_loss, math.exp(val_loss), val_count))
    log("# final fp32 train loss %.4f nats/token (ppl %.2f) over %d tokens (%d evenly spaced training windows, eval mode)" % (
        train_loss, math.exp(train_loss), train_count, len(train_eval_wins)))
    log("# final evaluation took %.1fs" % (time.time() - t1))

    summary = {
        "steps": steps_done, "planned_steps": args.steps, "stopped_early": stopped_early,
        "tokens_seen": tokens_seen, "train_time_s": train_time,
        "epochs": tokens_seen / len(train_ids),
        "train_tokens": len(train_ids), "val_tokens": len(val_ids),
        "final_val_loss": val_loss, "final_train_loss": train_loss,
        "last50_train_step_loss": sum(step_losses[-50:]) / len(step_losses[-50:]),
        "val_count": val_count, "train_count": train_count,
        "n_params": n_params, "args": vars(args), "history": history,
        "torch": torch.__version__,
    }
    torch.save({"config": cfg.to_dict(), "state_dict": model.state_dict(), "summary": summary},
               os.path.join(args.work, "checkpoint.pt"))
    with open(os.path.join(args.work, "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log("# wrote %s" % os.path.join(args.work, "checkpoint.pt"))
    logf.close()


if __name__ == "__main__":
    main()
