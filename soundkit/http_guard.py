"""Guards for a small HTTP server meant for its own page on this computer only (explore.py's).

Listening on 127.0.0.1 keeps other computers out, but not other web pages: any
site open in the browser can send requests to 127.0.0.1, and a site that
rebinds its DNS name to 127.0.0.1 can even read the answers. So a request is
answered only when:

- its ``Host`` is ``127.0.0.1:PORT`` or ``localhost:PORT`` (403; a rebound name
  brings its own);
- its ``Origin``, when it has one, is that same address (403);
- an API call (``/api/...``) carries the token made for this run, in the
  ``X-Explorer-Token`` header (403). The address the server prints holds it
  (``/?token=...``) and the page reads it from there;
- an API ``POST`` says ``Content-Type: application/json`` (415): a page elsewhere
  cannot send that, nor the token's header, without asking the server first (a
  CORS preflight), and nothing here ever says yes;
- its request line, headers and body arrive within ``request_seconds`` in all
  (408). A time-out per read is not enough: a client sending a byte every few
  seconds would hold a thread for ever;
- fewer than ``max_connections`` connections are open (503, at once).

A body must be JSON of finite numbers nested at most ``MAX_DEPTH`` deep (400).
Whatever goes wrong inside gets an answer too (500, with the error; the
traceback goes to the terminal): a request never ends in a dropped connection.
"""

import hmac
import io
import json
import math
import secrets
import socket
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

TOKEN_HEADER = "X-Explorer-Token"
MAX_DEPTH = 8                   # of nested objects and lists in a request body; the explorer's use 2
LINGER_SECONDS = 0.5            # after the answer, how long what the client still sends is read and dropped
DRAIN_BYTES = 1 << 16           # ... and how much of it
PAGE_POLICY = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
               "media-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class Refusal(Exception):
    """A request refused before it reaches the application: an HTTP status and the reason."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = HTTPStatus(status), message


def new_token():
    """A fresh random token for one run of a server (URL-safe text, 256 bits)."""
    return secrets.token_urlsafe(32)


def shown(value, limit=60):
    """``repr(value)`` cut to ``limit`` characters, for error messages about what a client sent."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_request(headers, method, path, port, token):
    """Raise ``Refusal`` unless a request's Host, Origin, token and Content-Type are those of the page.

    ``headers`` is the parsed header block, ``path`` the URL's path, ``port`` the
    one the server listens on and ``token`` this run's.
    """
    addresses = {f"127.0.0.1:{port}", f"localhost:{port}"}
    host = headers.get("Host")
    if host is None or host.strip().lower() not in addresses:
        raise Refusal(HTTPStatus.FORBIDDEN, f"Host must be 127.0.0.1:{port} or localhost:{port}, got {shown(host)}")
    origin = headers.get("Origin")
    if origin is not None and origin.strip().lower() not in {f"http://{address}" for address in addresses}:
        raise Refusal(HTTPStatus.FORBIDDEN, f"requests from other pages are refused (Origin {shown(origin)})")
    if not path.startswith("/api/"):
        return
    given = headers.get(TOKEN_HEADER)
    if given is None:
        raise Refusal(HTTPStatus.FORBIDDEN, f"no {TOKEN_HEADER} header: open the address the server printed "
                                            "(it ends in /?token=...)")
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode()):
        raise Refusal(HTTPStatus.FORBIDDEN, f"wrong {TOKEN_HEADER}: open the address the server printed this time")
    if method == "POST" and headers.get_content_type() != "application/json":
        raise Refusal(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                      f"Content-Type must be application/json, got {shown(headers.get('Content-Type'))}")


def _finite(text):
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"numbers must be finite, got {text[:20]}")
    return number


def _refuse_constant(name):
    raise ValueError(f"numbers must be finite, got {name}")


def nesting(body):
    """How deeply ``[`` and ``{`` nest in JSON text (bytes), outside strings: read in a loop, not parsed,
    so a body of a thousand ``[`` is measured without the recursion that decoding it would need."""
    deepest = level = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            escaped, in_string = (False, True) if escaped else (byte == 0x5C, byte != 0x22)  # backslash, quote
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            level += 1
            deepest = max(deepest, level)
        elif byte in b"]}":
            level -= 1
    return deepest


def parse_json(body, max_depth=MAX_DEPTH):
    """The JSON value of a request body (empty: ``{}``); ``Refusal`` (400) with the reason otherwise."""
    if nesting(body) > max_depth:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"the body nests deeper than {max_depth} levels")
    try:
        return json.loads(body or b"{}", parse_float=_finite, parse_constant=_refuse_constant)
    except ValueError as error:  # also UnicodeDecodeError: binary
        raise Refusal(HTTPStatus.BAD_REQUEST, f"the body is not JSON ({str(error)[:120]})") from None


def plain_reply(connection, status, message):
    """Write a whole JSON answer straight to a socket (the request may not even have been parsed)."""
    status = HTTPStatus(status)
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.0 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n")
    try:
        connection.settimeout(1.0)
        connection.sendall(head.encode() + body)
    except OSError:  # the client has gone
        pass


def drain(connection, seconds):
    """Read and drop what a client still sends, for at most ``seconds``, so that closing the socket
    sends a normal end (FIN) after the answer rather than a reset that could destroy it."""
    deadline = time.monotonic() + seconds
    received = 0
    try:
        connection.shutdown(socket.SHUT_WR)
        while received < DRAIN_BYTES:
            connection.settimeout(max(0.0, deadline - time.monotonic()))  # 0: only what has already come
            chunk = connection.recv(DRAIN_BYTES)
            if not chunk:
                return
            received += len(chunk)
    except OSError:  # time-out, reset, already closed: nothing more to drop
        pass


class DeadlineReader(io.RawIOBase):
    """Reads a socket so that all of a request (line, headers, body) must arrive within ``seconds``."""

    def __init__(self, connection, seconds):
        super().__init__()
        self.connection, self.seconds = connection, seconds
        self.deadline, self.expired = None, False

    def start(self):
        """The time starts now (at each new request)."""
        self.deadline, self.expired = time.monotonic() + self.seconds, False

    def stop(self):
        """The request is read: the answer is written under an ordinary time-out."""
        self.deadline = None
        self.connection.settimeout(self.seconds)

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.expired = True
                raise TimeoutError(f"the request took longer than {self.seconds:g} s to arrive")
            self.connection.settimeout(remaining)
        try:
            return self.connection.recv_into(buffer)
        except TimeoutError:
            self.expired = self.deadline is not None
            raise


class GuardedServer(ThreadingHTTPServer):
    """A threading HTTP server with a token for this run, a time limit per request and a cap on connections."""

    daemon_threads = True  # Ctrl-C does not wait for a connection a browser keeps open

    def __init__(self, address, handler_class, request_seconds, max_connections, token=None):
        self.request_seconds, self.max_connections = request_seconds, max_connections
        self.token = token or new_token()
        self.slots = threading.BoundedSemaphore(max_connections)
        self.holder = threading.local()  # whether this connection's thread still holds its slot
        super().__init__(address, handler_class)

    @property
    def port(self):
        return self.server_address[1]

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):  # answered here, at once, without a thread
            plain_reply(request, HTTPStatus.SERVICE_UNAVAILABLE,
                        f"too many connections at once (at most {self.max_connections}): try again")
            drain(request, 0.0)
            self.close_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        self.holder.slot = True
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._free_slot()

    def _free_slot(self):
        if getattr(self.holder, "slot", False):
            self.holder.slot = False
            self.slots.release()

    def shutdown_request(self, request):
        # The answer is complete: the slot is free before the client sees the end of it, so a client that
        # asks again at once finds it free; the short wait below is bounded on its own.
        self._free_slot()
        drain(request, min(LINGER_SECONDS, self.request_seconds))
        self.close_request(request)


class GuardedHandler(BaseHTTPRequestHandler):
    """A request handler for ``GuardedServer``: checks every request (``check_request``) before its
    ``do_GET``/``do_POST`` runs, and answers JSON (``reply``, ``read_json``). One request per
    connection (HTTP/1.0, the default), so the time limit of a request is that of its connection."""

    server_version = "explore.py"

    def log_message(self, format, *args):  # quiet: the page shows what happens
        pass

    def setup(self):
        self.timeout = self.server.request_seconds  # per read and per write, once the request is in
        super().setup()
        self.reader = DeadlineReader(self.connection, self.server.request_seconds)
        self.rfile = io.BufferedReader(self.reader)

    @property
    def url_path(self):
        return urlsplit(self.path).path

    def handle_one_request(self):
        self.reader.start()
        self.replied = False
        try:
            super().handle_one_request()  # on a time-out it only closes the connection: the 408 is sent below
        except ConnectionError:  # the client left
            self.close_connection = True
        except Exception as error:  # a bug: the client still gets an answer, the traceback goes to the terminal
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            if not self.replied:
                plain_reply(self.connection, HTTPStatus.INTERNAL_SERVER_ERROR,
                            f"the server failed: {type(error).__name__}: {str(error)[:200]}")
        else:
            if self.reader.expired and not self.replied:
                self.close_connection = True
                plain_reply(self.connection, HTTPStatus.REQUEST_TIMEOUT,
                            f"the request took longer than {self.server.request_seconds:g} s to arrive")

    def parse_request(self):
        if not super().parse_request():
            return False
        try:
            check_request(self.headers, self.command, self.url_path, self.server.port, self.server.token)
        except Refusal as refusal:
            self.close_connection = True
            self.reply(refusal.status, {"error": refusal.message})
            return False
        return True

    def send_response(self, code, message=None):
        self.replied = True
        self.reader.stop()
        super().send_response(code, message)

    def send_error(self, code, message=None, explain=None):
        """The HTTP layer's own errors (a bad request line, headers too long, an unknown method) in JSON too."""
        self.close_connection = True
        self.reply(code, {"error": message or HTTPStatus(code).phrase})

    def reply(self, status, body, content_type="application/json"):
        """Answer with ``body``: a dict (as JSON) or bytes of ``content_type``."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")  # the address holds the token
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", PAGE_POLICY)
        self.end_headers()
        self.wfile.write(data)

    def read_json(self, max_bytes):
        """The request's JSON body (at most ``max_bytes``); ``Refusal`` with the reason otherwise."""
        if "Transfer-Encoding" in self.headers:
            raise Refusal(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length, not chunked")
        text = self.headers.get("Content-Length", "0").strip()
        if not (text.isascii() and text.isdigit()):
            raise Refusal(HTTPStatus.BAD_REQUEST, f"Content-Length must be a number of bytes, got {shown(text)}")
        length = int(text)
        if length > max_bytes:
            raise Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a request holds at most {max_bytes} bytes")
        body = self.rfile.read(length)
        if len(body) < length:
            raise Refusal(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body)} of {length} bytes")
        return parse_json(body)
