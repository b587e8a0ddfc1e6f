# What the bench summaries share: bench/lib.sh's `summarize` runs a script's Python after this.
# RESULTS (argv[1]) holds one line per measurement: a label, then tab-separated fields.
import statistics
import sys

runs = {}  # label -> the fields of each round, in order
for line in open(sys.argv[1]):
    label, *fields = line.rstrip("\n").split("\t")
    runs.setdefault(label, []).append(fields)


def med(label, col=0):
    """The median over the rounds of one numeric field; None if there is none."""
    xs = [float(f[col]) for f in runs.get(label, []) if col < len(f) and f[col] != ""]
    return statistics.median(xs) if xs else None


def paired(a, b, col=0):
    """The median over the rounds of a's field over b's in the same round; None if no round has
    both. The two of a round were measured back to back, under the same load of the host. A
    ratio of medians can set a's fast round against b's slow one: on 2026-12-03 the host slowed
    between Redis's SET and dkv's of one round, and the ratio of medians said 0.77 where each
    round's own ratio said 0.98, 0.97 and 0.72."""
    xs = [
        float(x[col]) / float(y[col])
        for x, y in zip(runs.get(a, []), runs.get(b, []))
        if col < len(x) and col < len(y) and x[col] and y[col] and float(y[col])
    ]
    return statistics.median(xs) if xs else None


def rounds(label, col=0, spec=".0f"):
    """Each round's value of one field."""
    return " ".join(format(float(f[col]), spec) if f[col] else "-" for f in runs.get(label, []))


def fmt(x, spec=".0f"):
    return "-" if x is None else format(x, spec)


def meets(r, target):
    """Whether a ratio meets a target such as ">= 0.5" or "<= 2"."""
    op, t = target.split()
    return "met" if (r >= float(t) if op == ">=" else r <= float(t)) else "NOT met"


def check(what, x, y=1, target=None):
    """One line of a summary: the ratio x / y, and whether it meets the target."""
    if x is None or not y:
        print(f"  {what:<58} n/a")
    else:
        print(f"  {what:<58} {x / y:>7.2f}  " + (f"target {target}: {meets(x / y, target)}" if target else ""))
