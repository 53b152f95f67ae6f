"""The raw floor of a script's read, in a fresh process: `python _raw_child.py SPEC_JSON`.

Prints one JSON line: the wall and CPU seconds of a raw obstore get of every object of an image (as many
threads as the in-process raw get), each object's bytes copied into one new array of the objects' total
size: the least a fresh process that wants the image in memory does. A fresh process's memory must be
page-faulted in, which the raw get in the benchmark's own long-lived process does not pay in full (it
gets back pages it freed a moment ago); the plain-dask contenders run in fresh processes too.
"""

from __future__ import annotations

import json
import mmap
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import _baselines as bl
import numpy as np
import obstore
from _infra import MotoS3


def main() -> None:
    spec = json.loads(sys.argv[1])
    moto = MotoS3(spec["endpoint"], spec["access_key"], spec["secret_key"], spec["region"])
    store = bl.s3_store(moto, spec["bucket"], prefix=spec["prefix"])
    paths, sizes = spec["paths"], spec["sizes"]
    starts = np.cumsum([0, *sizes]).tolist()
    obstore.head(store, paths[0])  # connections and credentials, outside the timing as mikro's session
    w0, c0 = time.perf_counter(), time.process_time()
    # Plain anonymous memory: numpy's own allocation of a large array asks for transparent huge pages,
    # which on this VM stalls in memory compaction (see mikro.datalayer._result_memory): not the floor.
    out = np.frombuffer(mmap.mmap(-1, starts[-1]), dtype=np.uint8)

    def get(i: int) -> None:
        data = obstore.get(store, paths[i]).bytes()
        out[starts[i] : starts[i + 1]] = np.frombuffer(data, dtype=np.uint8)

    with ThreadPoolExecutor(bl.RAW_THREADS) as pool:
        list(pool.map(get, range(len(paths))))
    seconds, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(json.dumps({"seconds": seconds, "cpu": cpu, "nbytes": int(out.nbytes)}), flush=True)


if __name__ == "__main__":
    main()
