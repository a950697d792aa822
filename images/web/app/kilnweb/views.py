"""The app's two pages: a front page naming the image version, and the
health check the load balancer polls."""
import html
import socket
from pathlib import Path

from django.http import HttpResponse, JsonResponse

VERSION_FILE = Path(__file__).resolve().parent.parent / "IMAGE_VERSION"


def image_version():
    """The version of the image this instance was built from (kiln's
    {{version}}, written at build time), or "unknown" from a checkout."""
    try:
        return VERSION_FILE.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def index(request):
    version = html.escape(image_version())
    host = html.escape(socket.gethostname())
    body = (
        "<!doctype html>\n"
        "<html><head><title>web</title></head><body>\n"
        f"<h1>web</h1>\n<p>Served by {host} from image web version {version}.</p>\n"
        "</body></html>\n"
    )
    return HttpResponse(body, content_type="text/html; charset=utf-8")


def healthz(request):
    # cheap and dependency-free: the balancer polls it every few seconds
    return JsonResponse({"status": "ok", "version": image_version()})
