#!/usr/bin/env python3
"""An independent Yuma3 reference in floating point, written from the specification
(../shared/reference/bittensor.md §2 and docs/design/incentives.md), not from the Rust code.
It generates yuma_cases.json: seeded multi-epoch scenarios with every rule exercised (stale
weights, inactive validators, permits that arrive one epoch late, a validator's own provider,
providers that join mid-run or take over a slot whose old bonds must not carry over, β between 0 and 1, liquid alpha on and off). The Rust test
`yuma::golden_cases_match_the_float_reference` replays them in Q32.32 and compares.

    python3 crates/ledger/tests/golden/yuma_reference.py > crates/ledger/tests/golden/yuma_cases.json
"""
import json
import math
import random


def normalize(xs):
    s = sum(xs)
    return [x / s for x in xs] if s > 0 else list(xs)


def top_k_nonzero(xs, k):
    keep = [x > 0 for x in xs]
    if len(xs) > k:
        order = sorted(range(len(xs)), key=lambda i: xs[i])  # stable: lower index first on ties
        for i in order[: len(xs) - k]:
            keep[i] = False
    return keep


def quantile(entries, kappa):
    """max{w : stake at or above w >= kappa} over (w, stake) with stake > 0."""
    total = sum(s for _, s in entries)
    if total == 0:
        return 0.0, None
    target = min(kappa, total)
    levels = sorted({w for w, _ in entries}, reverse=True)
    for w in levels:
        above = sum(s for x, s in entries if x >= w)
        if above >= target:
            return w, above - target
    return 0.0, None


def alpha_sigmoid(p, c, w, b):
    low, high = p["alpha_low_ppm"] / 1e6, p["alpha_high_ppm"] / 1e6
    d = (w - c) if w >= b else (b - w)
    d = min(max(d, 0.0), 1.0)
    x = -(p["alpha_steepness"] / 100.0) * (d - 0.5)
    x = min(max(x, -20.0), 20.0)
    sig = 1.0 / (1.0 + math.exp(x))
    return min(max(low + sig * (high - low), low), high)


def epoch(p, inp, permits, bonds):
    V, P = len(inp["validators"]), len(inp["providers"])
    vs = inp["validators"]
    total = sum(v["stake"] for v in vs)
    S = [v["stake"] / total if total else 0.0 for v in vs]
    new_permits = top_k_nonzero(S, p["max_validators"])
    active = [v["last_update"] + p["activity_cutoff_blocks"] >= inp["block"] for v in vs]
    AS = normalize([S[i] if active[i] and permits[i] else 0.0 for i in range(V)])
    W = []
    for i, v in enumerate(vs):
        row = [0.0] * P
        if permits[i]:
            for j, w in v["weights"]:
                stale = v["last_update"] <= inp["providers"][j]["registered_at"]
                if j != v.get("own_provider") and not stale:
                    row[j] = float(w)
        W.append(normalize(row))
    kappa = p["kappa_ppm"] / 1e6
    C, margins = [], []
    for j in range(P):
        c, m = quantile([(W[i][j], AS[i]) for i in range(V) if AS[i] > 0], kappa)
        C.append(c)
        margins.append(m)
    Wc = [[min(W[i][j], C[j]) for j in range(P)] for i in range(V)]
    VT = [sum(r) for r in Wc]
    R = [sum(AS[i] * Wc[i][j] for i in range(V)) for j in range(P)]
    I = normalize(R)
    beta = p["bonds_penalty_ppm"] / 1e6
    Wb = [[W[i][j] - beta * (W[i][j] - Wc[i][j]) for j in range(P)] for i in range(V)]
    last_tempo = inp["last_epoch_block"] + 1
    Bp = [[bonds[i][j] if inp["providers"][j]["registered_at"] < last_tempo else 0.0 for j in range(P)] for i in range(V)]
    liquid = p["liquid_alpha"] and any(c > 0 for c in C)
    fixed_alpha = 1.0 - p["bonds_moving_average_ppm"] / 1e6
    B = []
    for i in range(V):
        row = []
        for j in range(P):
            a = alpha_sigmoid(p, C[j], Wb[i][j], Bp[i][j]) if liquid else fixed_alpha
            row.append(min(1.0, (1 - a) * Bp[i][j] + a * Wb[i][j]))
        B.append(row)
    col = [sum(B[i][j] for i in range(V)) for j in range(P)]
    D = normalize([AS[i] * sum((B[i][j] / col[j] if col[j] > 0 else 0.0) * I[j] for j in range(P)) for i in range(V)])
    B = [row if new_permits[i] else [0.0] * P for i, row in enumerate(B)]
    return dict(stake=S, active=active, active_stake=AS, new_permits=new_permits, consensus=C,
                validator_trust=VT, rank=R, incentive=I, bonds=B, dividends=D), margins


def scenario(seed):
    rng = random.Random(seed)
    V, P = rng.randint(3, 7), rng.randint(2, 8)
    p = dict(
        kappa_ppm=rng.choice([400_000, 500_000, 600_000]),
        bonds_penalty_ppm=rng.choice([0, 500_000, 1_000_000]),
        bonds_moving_average_ppm=rng.choice([900_000, 975_000]),
        liquid_alpha=rng.random() < 0.5,
        alpha_low_ppm=rng.choice([100_000, 700_000]),
        alpha_high_ppm=900_000,
        alpha_steepness=rng.choice([300, 1_000]),
        max_validators=rng.randint(2, V),
        activity_cutoff_blocks=25,
    )
    stakes = [rng.randint(1_000, 1_000_000) * 10**9 for _ in range(V)]
    own = [rng.randrange(P) if rng.random() < 0.3 else None for _ in range(V)]
    registered = [0 if rng.random() < 0.7 else rng.choice([15, 21, 31, 35]) for _ in range(P)]
    permits = [rng.random() < 0.8 for _ in range(V)]
    bonds = [[0.0] * P for _ in range(V)]
    weights = [[] for _ in range(V)]
    last_update = [0] * V
    epochs = []
    for e in range(6):
        block = 10 * (e + 1)
        for i in range(V):
            if rng.random() < 0.6:  # this validator sets weights this epoch
                cols = sorted(rng.sample(range(P), rng.randint(1, P)))
                weights[i] = [[j, rng.randint(1, 65535)] for j in cols]
                last_update[i] = block - rng.randint(1, 9)
        if e and rng.random() < 0.3:  # a provider slot is taken over by a newcomer
            registered[rng.randrange(P)] = block - rng.choice([5, 9, 10])
        if rng.random() < 0.3:
            k = rng.randrange(V)
            stakes[k] = rng.randint(1_000, 1_000_000) * 10**9
        inp = dict(
            block=block,
            last_epoch_block=block - 10 if e else 0,
            validators=[dict(stake=stakes[i], last_update=last_update[i], weights=weights[i], own_provider=own[i]) for i in range(V)],
            providers=[dict(registered_at=r) for r in registered],
        )
        out, margins = epoch(p, inp, permits, bonds)
        if any(m is not None and m < 1e-6 for m in margins):
            return None  # a consensus level decided by a rounding hair: not a fair comparison
        epochs.append(dict(input=inp, permits=permits, output=out))
        permits, bonds = out["new_permits"], out["bonds"]
    return dict(seed=seed, params=p, initial_permits=epochs[0]["permits"], epochs=[dict(input=x["input"], output=x["output"]) for x in epochs])


def main():
    cases, seed = [], 0
    while len(cases) < 30:
        c = scenario(seed)
        seed += 1
        if c is not None:
            cases.append(c)
    def rounded(x):
        if isinstance(x, float):
            return float(f"{x:.10g}")
        if isinstance(x, list):
            return [rounded(v) for v in x]
        if isinstance(x, dict):
            return {k: rounded(v) for k, v in x.items()}
        return x

    print(json.dumps(dict(generator="yuma_reference.py", cases=rounded(cases)), separators=(",", ":")))


if __name__ == "__main__":
    main()
