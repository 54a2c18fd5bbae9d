"""A separate process that records outcomes into a store: used by the durability tests.

python -m tests.store_writer TARGET NAME COUNT    (TARGET: a store directory or a postgresql:// URL)
"""

import sys

import numpy as np

from fusiongraph.store import Outcome, open_store

if __name__ == "__main__":
    target, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = open_store(target, 8, "test")
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    for i in range(count):
        v = rng.normal(size=8).astype(np.float32)
        store.record(f"{name} task {i}", v / np.linalg.norm(v), "math", [Outcome("a", 1.0, True)])
        if i % 50 == 49:
            store.save()
        print(i, flush=True)
    store.close()
