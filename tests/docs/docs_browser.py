"""Open pages of a built site in headless Chromium with no network; print their DOM as JSON.

Run by tests/test_docs_offline.py, normally inside a new network namespace (``unshare -n``: no
interface but loopback, which this script brings up for its own HTTP server). Without one
(``--block`` given), Chromium itself is told to resolve no host name and to send every request
that is not to the local server to a closed port.

    python docs_browser.py CHROMIUM SITE_DIR [--block] PAGE...

Each PAGE is ``file:<path>`` (opened from disk, ``file://``) or ``http:<path>`` (served from
SITE_DIR on 127.0.0.1); a path may carry a query (``index.html?q=langevin``). The output is one
JSON object: ``{"network": <could a socket reach the outside>, "pages": {PAGE: DOM}}``.
"""

from __future__ import annotations

import fcntl
import functools
import http.server
import json
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1  # <linux/sockios.h>, <net/if.h>


def loopback_up() -> None:
    """Bring ``lo`` up (a new network namespace starts with it down); ignore failures."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            req = struct.pack("16sH14s", b"lo", 0, b"")
            flags = struct.unpack("16sH14s", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))
        except OSError:
            pass


def network_reachable() -> bool:
    """Whether a TCP connection to a public address gets anywhere (refused counts as reached)."""
    try:
        socket.create_connection(("1.1.1.1", 443), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return True


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def dump_dom(chromium: str, url: str, block: bool) -> str:
    with tempfile.TemporaryDirectory() as profile:
        args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", url]
        if block:  # no name resolves; anything but the local server goes to a closed port
            args[1:1] = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                         "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise SystemExit(f"chromium failed on {url} ({done.returncode}): "
                             f"{done.stderr[-2000:]}")
        return done.stdout


def main(argv: list[str]) -> None:
    chromium, site, rest = argv[0], Path(argv[1]).resolve(), argv[2:]
    block = "--block" in rest
    pages = [p for p in rest if p != "--block"]
    loopback_up()
    server = serve(site)
    host = f"127.0.0.1:{server.server_address[1]}"
    out = {}
    for page in pages:
        scheme, path = page.split(":", 1)
        url = f"http://{host}/{path}" if scheme == "http" else f"{site.as_uri()}/{path}"
        out[page] = dump_dom(chromium, url, block)
    server.shutdown()
    print(json.dumps({"network": network_reachable(), "pages": out}))


if __name__ == "__main__":
    main(sys.argv[1:])
