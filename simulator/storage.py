"""The storage host a big cohort download redirects to: S3-style pre-signed links on a port of
127.0.0.1 other than the API's, so a client that forwards Amplitude's credentials across hosts
is caught.

A link is ``/<bucket>/<project>/<request_id>.csv.gz?X-Amz-Algorithm=...&X-Amz-Date=...&
X-Amz-Expires=...&X-Amz-Signature=...``, signed with an HMAC of its path and parameters under a
secret of this simulator. As S3 answers (XML ``<Error>`` bodies, ``application/xml``):

- any request carrying an ``Authorization`` header: 403 (real S3 says 400 InvalidArgument, "Only
  one auth mechanism allowed"; the issue asks for a refusal, and 403 is what clients see from a
  presigned-URL misuse in most stacks; the body names the reason either way);
- a missing or wrong signature: 403 ``SignatureDoesNotMatch``;
- an expired link: 403 ``AccessDenied`` "Request has expired", with ``X-Amz-Expires``,
  ``Expires`` and ``ServerTime``, as S3 words it. Links expire ``storage_link_ttl_seconds``
  after they are issued (measured on the monotonic clock; 0 or less: already expired when
  issued) and, with ``storage_link_single_use``, once a download has started.

A good link streams the cohort's gzip CSV (chunked; S3 would send a Content-Length, but the file
is compressed while it is sent and never held whole).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from xml.sax.saxutils import escape

from simulator.protocol import Handler, RequestRecord, Response, Server

BUCKET = "amplitude-cohort-downloads"
_XML = "application/xml"
_MSG_TWO_AUTH = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
    "string parameter or the Authorization header should be specified"
)


@dataclass
class _Link:
    request_id: str
    issued: float  # monotonic
    ttl: float
    issued_at: datetime  # wall clock, for the XML
    used: bool = False


def _error(status: int, code: str, message: str, **extra: str) -> Response:
    request_id = secrets.token_hex(8).upper()
    parts = [f"<Code>{code}</Code>", f"<Message>{escape(message)}</Message>"]
    parts += [f"<{k}>{escape(v)}</{k}>" for k, v in extra.items()]
    parts += [f"<RequestId>{request_id}</RequestId>", f"<HostId>{secrets.token_hex(24)}</HostId>"]
    body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>"
    return Response(
        status, body.encode(), content_type=_XML, headers={"x-amz-request-id": request_id}
    )


def _stamp(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


class Storage:
    """The storage server. ``opener(request_id)`` gives (file name, gzip chunks) or None."""

    def __init__(
        self,
        owner: Any,  # the Simulator: its log, error list, verbosity and config
        opener: Callable[[str], tuple[str, Iterator[bytes]] | None],
    ) -> None:
        self.owner = owner
        self.opener = opener
        self.verbose = owner.verbose
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._links: dict[str, _Link] = {}
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        server = Server(("127.0.0.1", 0), self)  # type: ignore[arg-type]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"amplitude-simulator-storage-{server.server_address[1]}",
        )  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the storage host is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _sign(self, path: str, params: dict[str, str]) -> str:
        canonical = path + "?" + urlencode(sorted(params.items()))
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    def link(self, request_id: str) -> str:
        """A fresh pre-signed link to the file of ``request_id``."""
        ttl = float(self.owner.config.storage_link_ttl_seconds)
        now = datetime.now(UTC).replace(microsecond=0)
        path = f"/{BUCKET}/{self.owner.config.project_id}/{request_id}.csv.gz"
        params = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"ASIASIMULATOR/{now:%Y%m%d}/us-west-2/s3/aws4_request",
            "X-Amz-Date": f"{now:%Y%m%dT%H%M%SZ}",
            "X-Amz-Expires": str(max(0, math.ceil(ttl))),
            "X-Amz-SignedHeaders": "host",
        }
        signature = self._sign(path, params)
        with self._lock:
            self._links[signature] = _Link(request_id, time.monotonic(), ttl, now)
        return f"{self.url}{path}?{urlencode(params)}&X-Amz-Signature={signature}"

    # -- HTTP --------------------------------------------------------------------------------

    def _record_error(self) -> None:
        self.owner._record_error()

    def _handle(self, handler: Handler) -> None:
        url = urlsplit(handler.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        record = RequestRecord(handler.command, url.path, params, time.monotonic(), host="storage")
        self.owner._log_request(record)
        try:
            handler.send(record, self._answer(handler, url.path, params), None)
        except OSError:
            handler.close_connection = True
        except Exception:
            self._record_error()
            handler.close_connection = True
        finally:
            record.end = time.monotonic()

    def _answer(self, handler: Handler, path: str, params: dict[str, str]) -> Response:
        if handler.command not in ("GET", "HEAD"):
            return _error(405, "MethodNotAllowed", "The specified method is not allowed")
        if handler.headers.get("Authorization"):
            return _error(403, "AccessDenied", _MSG_TWO_AUTH, ArgumentName="Authorization")
        signature = params.pop("X-Amz-Signature", "")
        with self._lock:
            link = self._links.get(signature)
            good = link is not None and hmac.compare_digest(signature, self._sign(path, params))
            if not good or link is None:
                return _error(
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you "
                    "provided. Check your key and signing method.",
                )
            expired = link.used or time.monotonic() - link.issued >= link.ttl
            if (
                not expired
                and handler.command == "GET"
                and self.owner.config.storage_link_single_use
            ):
                link.used = True
        if expired:
            now = datetime.now(UTC).replace(microsecond=0)
            expires = link.issued_at + timedelta(seconds=max(0, math.ceil(link.ttl)))
            return _error(
                403,
                "AccessDenied",
                "Request has expired",
                **{"X-Amz-Expires": params.get("X-Amz-Expires", "0")},
                Expires=_stamp(expires),
                ServerTime=_stamp(now),
            )
        opened = self.opener(link.request_id)
        if opened is None:
            return _error(404, "NoSuchKey", "The specified key does not exist.")
        name, chunks = opened
        return file_response(name, chunks, self.owner.config.cohort_content_encoding)


def file_response(name: str, chunks: Iterator[bytes], content_encoding: bool) -> Response:
    """The cohort file: gzip with ``Content-Encoding: gzip`` (a ``.csv``), or a ``.csv.gz``."""
    if content_encoding:
        headers = {
            "Content-Encoding": "gzip",
            "Content-Disposition": f'attachment; filename="{name}"',
        }
        return Response(200, content_type="text/csv", headers=headers, stream=chunks)
    headers = {"Content-Disposition": f'attachment; filename="{name}.gz"'}
    return Response(200, content_type="application/gzip", headers=headers, stream=chunks)
