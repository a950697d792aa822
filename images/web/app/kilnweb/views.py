"""The app's two pages: a front page naming the image version, and the
health check the load balancer polls.

Two files written at build time (scripts/install.sh) make releases differ:
MESSAGE, a line the front page shows (the template's "message" variable),
and HEALTHZ_FAIL, present only in an image built to be broken (the
"healthz_fail" variable): its health check then fails, as a release with
a bad setting would, and kiln must refuse to roll it out."""
import html
import socket
from pathlib import Path

from django.http import HttpResponse, JsonResponse

APP_DIR = Path(__file__).resolve().parent.parent
VERSION_FILE = APP_DIR / "IMAGE_VERSION"
MESSAGE_FILE = APP_DIR / "MESSAGE"
HEALTHZ_FAIL_FILE = APP_DIR / "HEALTHZ_FAIL"


def _read(path, default):
    try:
        return path.read_text().strip() or default
    except OSError:
        return default


def image_version():
    """The version of the image this instance was built from (kiln's
    {{version}}, written at build time), or "unknown" from a checkout."""
    return _read(VERSION_FILE, "unknown")


def index(request):
    version = html.escape(image_version())
    host = html.escape(socket.gethostname())
    message = html.escape(_read(MESSAGE_FILE, ""))
    body = (
        "<!doctype html>\n"
        "<html><head><title>web</title></head><body>\n"
        f"<h1>web</h1>\n<p>Served by {host} from image web version {version}.</p>\n"
        f"<p class=\"message\">{message}</p>\n"
        "</body></html>\n"
    )
    return HttpResponse(body, content_type="text/html; charset=utf-8")


def healthz(request):
    # cheap and dependency-free: the balancer polls it every second or two
    broken = _read(HEALTHZ_FAIL_FILE, "")
    if broken:
        return JsonResponse(
            {"status": "failing", "version": image_version(), "reason": broken}, status=500
        )
    return JsonResponse({"status": "ok", "version": image_version()})
