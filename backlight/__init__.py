"""Backlight: event-driven process mining for back-office operations.

The shell: it wires the domain packages into the ``backlight`` command line, the config
(``backlight.toml`` and the environment), the logs, the metrics, the jobs (consume with its
subscribers, replay, simulate, mine, the alert evaluator and the outbox worker, the demo) and
the web app (``backlight.web``).

The top layer: it may import every package (schemas, storage, ingest, mining, alerts), and
none of them must ever import it.
"""

import os as _os
import sys as _sys

_POLARS_DEFAULT = "dirty_decay_ms:500,muzzy_decay_ms:1000"
if "polars" not in _sys.modules and _os.environ.get("_RJEM_MALLOC_CONF") in (None, _POLARS_DEFAULT):
    # polars' bundled jemalloc keeps freed pages for 10 s by default: `backlight mine` on BPIC
    # 2012 peaks about 35 MiB higher with them (measured 261-277 MiB against 230-232 MiB, no
    # slower). Return them at once; read when polars loads, so only before that; a value the
    # user set wins. polars' own default, which a parent process that imported polars leaves in
    # the environment (pytest, a script running `backlight`), counts as unset: with it, every
    # such child peaked about 50 MiB higher on BPIC 2012.
    _os.environ["_RJEM_MALLOC_CONF"] = "dirty_decay_ms:0,muzzy_decay_ms:0"
