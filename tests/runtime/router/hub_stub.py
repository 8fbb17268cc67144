"""A local stand-in for the Hugging Face hub: serves one model folder the way the hub does.

Endpoints huggingface_hub calls for `model_info(files_metadata=True)` + `hf_hub_download`:
``GET /api/models/{repo}/revision/{rev}?blobs=true`` (siblings with git blob ids and LFS sha256) and
``HEAD|GET /{repo}/resolve/{rev}/{file}`` (``X-Repo-Commit``, ``ETag``, ``Content-Length``,
byte ranges for resumed downloads). Faults: ``corrupt`` serves wrong bytes for a file; ``cut``
closes the connection after N bytes of a file's first GET (the client must resume with a Range).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "5f1c0ffee0ddba11c0de5eed0123456789abcdef"
LFS_SUFFIXES = (".safetensors", ".bin")


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


class HubStub:
    def __init__(self, repo_id: str, folder: Path) -> None:
        self.repo_id = repo_id
        self.files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        self.corrupt: set[str] = set()
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "HubStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                stub._handle(self, head=False)

            def do_HEAD(self) -> None:
                stub._handle(self, head=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def sha256(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()

    # -- handlers -------------------------------------------------------------------------------

    def _sibling(self, name: str, data: bytes) -> dict[str, Any]:
        entry: dict[str, Any] = {"rfilename": name, "size": len(data)}
        if name.endswith(LFS_SUFFIXES):
            entry["blobId"] = _git_blob_sha1(f"oid sha256:{hashlib.sha256(data).hexdigest()}".encode())
            entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        else:
            entry["blobId"] = _git_blob_sha1(data)
        return entry

    def _etag(self, name: str, data: bytes) -> str:
        return hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIXES) else _git_blob_sha1(data)

    def _handle(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append((h.command, path, h.headers.get("Range")))
        info = re.fullmatch(rf"/api/models/{re.escape(self.repo_id)}(?:/revision/([^/]+))?", path)
        if info:
            if (info.group(1) or "main") not in ("main", COMMIT):
                return self._error(h, 404, "RevisionNotFound", "Invalid rev id")
            body = {"id": self.repo_id, "modelId": self.repo_id, "sha": COMMIT, "private": False, "tags": [],
                    "siblings": [self._sibling(n, d) for n, d in self.files.items()]}
            return self._send(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)
        resolve = re.fullmatch(rf"/{re.escape(self.repo_id)}/resolve/([^/]+)/(.+)", path)
        if not resolve:
            return self._error(h, 404, "RepoNotFound", "Repository not found")
        rev, name = resolve.groups()
        if rev not in ("main", COMMIT):
            return self._error(h, 404, "RevisionNotFound", "Invalid rev id")
        if name not in self.files:
            return self._error(h, 404, "EntryNotFound", f"{name} does not exist")
        data = self.files[name]
        served = bytes(b ^ 0xFF for b in data) if name in self.corrupt else data
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{self._etag(name, data)}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        status, start = 200, 0
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range") or "")
        if ranged and not head:
            start = int(ranged.group(1))
            end = int(ranged.group(2)) if ranged.group(2) else len(served) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(served)}"
            status, served = 206, served[start:end + 1]
        if not head and name in self.cut:
            limit = self.cut.pop(name)  # only the first GET is cut
            headers["Content-Length"] = str(len(served))
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(served[:limit])
            h.wfile.flush()
            h.close_connection = True
            return None
        return self._send(h, status, served, headers, head, length=len(data) if head else None)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(h, status, body, {"Content-Type": "application/json", "X-Error-Code": code,
                                     "X-Error-Message": message}, h.command == "HEAD")

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str], head: bool,
              length: int | None = None) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(length if length is not None else len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)
