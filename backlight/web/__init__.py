"""``backlight serve``: the process owners' web app and JSON API."""

from backlight.web.app import create_app
from backlight.web.server import running, serve
from backlight.web.service import WebService

__all__ = ["WebService", "create_app", "running", "serve"]
