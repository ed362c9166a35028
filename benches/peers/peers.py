"""Messages per second on one core for the Python HL7 v2 libraries `hl7` and `hl7apy`.

Same corpus and same work as the Rust harness (src/main.rs): parse, read PID-3.1 and every
OBX-5 (first repetition). Prints TSV rows in the harness's format (no header).

Usage: python peers.py CORPUS_DIR [SECONDS_PER_CELL]
"""

import os
import sys
import time

import hl7
from hl7apy.parser import parse_message


def load(d):
    out = []
    with open(os.path.join(d, "corpus.txt")) as f:
        for rel in f:
            rel = rel.strip()
            if not rel or rel.startswith("#"):
                continue
            with open(os.path.join(d, rel), encoding="utf-8", newline="") as m:
                text = m.read().lstrip("\ufeff").replace("\r\n", "\r").replace("\n", "\r").rstrip()
            out.append(text)
    return out


def run_hl7(text):
    m = hl7.parse(text)
    n = 0
    for s in m:
        name = str(s[0])
        if name == "PID" and n == 0:
            n += len(str(s(3)(1)(1)[0]))
        elif name == "OBX":
            n += len(str(s[5]))
    return n


def run_hl7apy(text):
    m = parse_message(text, find_groups=False)
    n = len(m.pid.pid_3.pid_3_1.value) if m.children.get("PID") else 0
    for s in m.children:
        if s.name == "OBX":
            n += len(s.obx_5.value)
    return n


def rate(f, msgs, budget):
    for m in msgs * 3:
        f(m)
    start = time.perf_counter()
    n = 0
    while True:
        for m in msgs:
            f(m)
        n += len(msgs)
        t = time.perf_counter() - start
        if t >= budget:
            return n / t


def main():
    d = sys.argv[1]
    budget = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    corpus = load(d)
    libs = [
        ("python hl7 " + getattr(hl7, "__version__", "?") + " parse", run_hl7),
        ("python hl7apy parse", run_hl7apy),
    ]
    for name, f in libs:
        for i, m in enumerate(corpus):
            if f(m) == 0:
                print(f"warning: {name} read nothing from message {i + 1}", file=sys.stderr)
        row = [name] + ["%.0f" % rate(f, [m], budget) for m in corpus]
        row.append("%.0f" % rate(f, corpus, budget))
        print("\t".join(row), flush=True)


if __name__ == "__main__":
    main()
