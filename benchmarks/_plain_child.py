"""A script's plain dask read, in a fresh process: `python _plain_child.py URL TOKEN REP_ID max|values`.

Prints one JSON line: the wall and CPU seconds of ``rep.data.max().compute()`` or ``rep.data.values`` in
the sync facade. A process of its own, as a user's script is: its memory (mikro keeps a dropped result's
pages for the next read) is not shared with the other contenders of the read bar. What mikro imports on
first use of ``rep.data`` is loaded before the timed section.
"""

from __future__ import annotations

import json
import sys
import time

import mikro.sync


def main() -> None:
    url, token, rep_id, what = sys.argv[1:5]
    with mikro.sync.connect(url, token=token) as m:
        rep = m.get_representation(rep_id)
        data = rep.data
        w0, c0 = time.perf_counter(), time.process_time()
        if what == "max":
            data.max().compute()
        else:
            data.values  # noqa: B018 -- reading it is the point
        seconds, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(json.dumps({"seconds": seconds, "cpu": cpu, "nbytes": int(data.nbytes)}), flush=True)


if __name__ == "__main__":
    main()
