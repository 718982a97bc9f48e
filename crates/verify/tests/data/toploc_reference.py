#!/usr/bin/env python3
"""Independent reference implementation of Agora's TOPLOC proofs, for the golden vectors.

    python3 crates/verify/tests/data/toploc_reference.py > crates/verify/tests/data/toploc_golden.json

Written from the specification (docs/design/verification.md, "Proof format"), not from the Rust
code, in plain Python integers (no floats anywhere, no third-party packages), and deliberately by
different routes where the result is the same by mathematics:

* f32 -> bf16 round-to-nearest-even by the add-and-shift formula (`bits + 0x7FFF + lsb`), where
  the Rust side uses the `half` crate's compare-based rounding;
* the polynomial by **Lagrange** interpolation (product polynomial, synthetic division), where
  the Rust side uses Newton divided differences; the polynomial of degree < n through n points
  is unique, so the coefficients must agree;
* evaluation as a plain sum of `c_j * x^j` with `pow`, where Rust uses Horner.

The inputs are f32 bit patterns drawn from SplitMix64 (Rust's test reimplements the same
generator), so no float arithmetic is involved on either side. The `it` test
(`crates/verify/tests/it/golden.rs`) reproduces every byte and every statistic.
"""
import json
import sys

P = 65497  # the field prime
K = 128  # values per chunk proof
CHUNK = 32  # generated-token rows per decode chunk
VERSION = 1
MASK64 = (1 << 64) - 1
THRESHOLDS = {"exp_mismatches": 38, "mant_mean": 10, "mant_median": 8}


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)


def random_f32_bits(rng, coarse):
    """A finite f32 bit pattern with a heavy tail, like hidden states: the exponent is 120 plus a
    geometric count (the trailing zeros of 32 random bits, at most 12), so magnitudes run from
    2^-7 to 2^6 and large values are rare; `coarse` keeps 3 mantissa bits so that many values tie
    after rounding to bf16."""
    r = rng.next()
    sign = r >> 63
    high = (r >> 31) & 0xFFFFFFFF
    zeros = 0
    while zeros < 12 and not (high >> zeros) & 1:
        zeros += 1
    exponent = 120 + zeros
    mantissa = r & 0x7FFFFF
    if coarse:
        mantissa &= 0x700000
    return (sign << 31) | (exponent << 23) | mantissa


def perturb(bits, rng):
    """Moves the magnitude by up to one bf16 ULP (2^16 f32 ULPs) either way: honest noise."""
    delta = (rng.next() % (1 << 17)) - (1 << 16)
    return (bits & 0x80000000) | ((bits & 0x7FFFFFFF) + delta)


def bf16(bits):
    if bits & 0x7FFFFFFF > 0x7F800000:  # NaN: keep it NaN (quiet), as the half crate does
        return ((bits >> 16) | 0x0040) & 0xFFFF
    lsb = (bits >> 16) & 1
    return ((bits + 0x7FFF + lsb) >> 16) & 0xFFFF


def top_k(values_bf16, k):
    """Indices of the k largest |value|; ties to the lower flat index."""
    order = sorted(range(len(values_bf16)), key=lambda i: (-(values_bf16[i] & 0x7FFF), i))
    return order[:k]


def injective_modulus(idx):
    for m in range(P, max(len(idx), 1) - 1, -1):
        if len({i % m for i in idx}) == len(idx):
            return m
    raise ValueError("no injective modulus")


def mul_linear(poly, a):
    """poly(x) * (x - a), ascending coefficients."""
    out = [0] * (len(poly) + 1)
    for j, c in enumerate(poly):
        out[j + 1] = (out[j + 1] + c) % P
        out[j] = (out[j] - a * c) % P
    return out


def div_linear(poly, a):
    """poly(x) / (x - a) for a root a, ascending coefficients (synthetic division)."""
    n = len(poly) - 1
    q = [0] * n
    carry = 0
    for j in range(n, 0, -1):
        carry = (poly[j] + carry * a) % P
        q[j - 1] = carry
    return q


def lagrange(xs, ys):
    full = [1]
    for x in xs:
        full = mul_linear(full, x)
    coeffs = [0] * len(xs)
    for x, y in zip(xs, ys):
        basis = div_linear(full, x)
        denom = evaluate(basis, x)
        scale = y * pow(denom, -1, P) % P
        coeffs = [(c + scale * b) % P for c, b in zip(coeffs, basis)]
    return coeffs


def evaluate(coeffs, x):
    return sum(c * pow(x, j, P) for j, c in enumerate(coeffs)) % P


def chunk_proof(values_bf16):
    idx = top_k(values_bf16, K)
    m = injective_modulus(idx)
    xs = [i % m for i in idx]
    ys = [values_bf16[i] % P for i in idx]
    coeffs = lagrange(xs, ys)
    return m, coeffs, idx


def chunk_bytes(m, coeffs):
    return m.to_bytes(2, "big") + b"".join(c.to_bytes(2, "big") for c in coeffs)


def chunks(values_bf16, n_rows, width, prompt_len):
    spans = [(0, prompt_len)] + [
        (s, min(s + CHUNK, n_rows)) for s in range(prompt_len, n_rows, CHUNK)
    ]
    return [values_bf16[a * width:b * width] for a, b in spans]


def envelope(chunk_wire):
    le32 = lambda n: n.to_bytes(4, "little")
    out = bytes([VERSION]) + le32(len(chunk_wire[0])) + chunk_wire[0]
    out += le32(len(chunk_wire) - 1)
    for c in chunk_wire[1:]:
        out += le32(len(c)) + c
    return out


def check(m, coeffs, values_bf16):
    """The auditor's statistics for one chunk against its own values."""
    idx = top_k(values_bf16, K)
    mism, diffs = 0, []
    for i in idx:
        theirs, ours = evaluate(coeffs, i % m), values_bf16[i]
        if theirs >> 7 != ours >> 7:  # sign and exponent
            mism += 1
        else:
            diffs.append(abs((theirs & 0x7F) - (ours & 0x7F)))
    diffs.sort()
    median = diffs[len(diffs) // 2] if diffs else None
    points = len(idx)
    allowed = THRESHOLDS["exp_mismatches"] * min(points, K) // K
    ok = (
        points > 0
        and len(coeffs) == points
        and mism <= allowed
        and len(diffs) > 0
        and sum(diffs) <= THRESHOLDS["mant_mean"] * len(diffs)
        and median <= THRESHOLDS["mant_median"]
    )
    return {
        "points": points,
        "exp_mismatches": mism,
        "mant_count": len(diffs),
        "mant_sum": sum(diffs),
        "mant_median": median,
        "pass": ok,
    }


def case(name, seed, n_rows, width, prompt_len, coarse=False, inject=()):
    rng = SplitMix64(seed)
    bits = [random_f32_bits(rng, coarse) for _ in range(n_rows * width)]
    for index, value in inject:
        bits[index] = value
    noise = SplitMix64(seed ^ 0xA5A5)
    honest = [perturb(b, noise) for b in bits]
    other_rng = SplitMix64(seed + 1)
    other = [random_f32_bits(other_rng, coarse) for _ in range(n_rows * width)]
    vals = [bf16(b) for b in bits]
    proofs, wire = [], []
    for c in chunks(vals, n_rows, width, prompt_len):
        m, coeffs, idx = chunk_proof(c)
        proofs.append((m, coeffs))
        wire.append(chunk_bytes(m, coeffs))
    verdicts = {}
    for label, rows in (("identical", bits), ("perturbed", honest), ("other", other)):
        vs = [bf16(b) for b in rows]
        verdicts[label] = [
            check(m, coeffs, c)
            for (m, coeffs), c in zip(proofs, chunks(vs, n_rows, width, prompt_len))
        ]
    return {
        "name": name,
        "seed": seed,
        "rows": n_rows,
        "width": width,
        "prompt_len": prompt_len,
        "coarse": coarse,
        "inject": [[i, v] for i, v in inject],
        "moduli": [m for m, _ in proofs],
        "chunks": [w.hex() for w in wire],
        "proof": envelope(wire).hex(),
        "verify": verdicts,
    }


def main():
    big = 0x45000000  # 2048.0: far above every random value (< 2^7), so these enter the top-k
    cases = [
        case("tiny: fewer than k values per chunk", 1, 4, 8, 3),
        case("ties: coarse values, ties broken by index", 2, 40, 64, 6, coarse=True),
        # Indices past 65497 with forced collisions: 10 and 10 + 65497 collide mod 65497, 20 and
        # 20 + 65496 mod 65496, so the search must go below both.
        case(
            "modulus search: prompt chunk of 100000 values",
            3,
            45,
            2500,
            40,
            inject=[(10, big), (10 + 65497, big), (20, big | 0x1000), (20 + 65496, big | 0x1000)],
        ),
        case("decode chunk of 96000 values", 4, 3 + 33, 3000, 3),
    ]
    json.dump(
        {
            "about": "TOPLOC golden vectors from tests/data/toploc_reference.py (independent "
            "pure-Python implementation); regenerate with that script. Row values are f32 bit "
            "patterns from SplitMix64(seed); 'perturbed' moves each by up to one bf16 ULP, "
            "'other' draws from seed + 1.",
            "k": K,
            "decode_chunk": CHUNK,
            "prime": P,
            "thresholds": THRESHOLDS,
            "cases": cases,
        },
        sys.stdout,
        indent=1,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
