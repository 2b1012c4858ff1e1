"""``backlight serve``: the process owners' web app and JSON API.

Owns the pages and the API over what the other layers compute: the overview, a process's map
and figures, its alerts with acknowledge and silence, reviews, downloads, ``/metrics`` and
``/healthz``, with sign-in and CSRF. Its figures come from the read models and the mining core
and its actions call the CLI's own functions, so both show and record the same things. Part of
the shell: it may import every package; no package below it imports it.
"""

from backlight.web.app import create_app
from backlight.web.server import running, serve
from backlight.web.service import WebService

__all__ = ["WebService", "create_app", "running", "serve"]
