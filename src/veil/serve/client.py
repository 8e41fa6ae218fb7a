"""HTTP(S) client of the recognition server: sends FG features (never images, never the encoder) as safetensors.

It takes feature tensors only; the client CLI (``veil.cli.client``) runs ExtNet + the noise encoder
locally and hands the result here, so nothing in this module can reach the client's secret. It
sends the client's bearer token when given one, and verifies the server's certificate against the
system's CAs or a given CA file (a self-signed server certificate is its own CA).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import quote

import httpx
import torch

from veil.errors import VeilError
from veil.serve.auth import is_loopback
from veil.serve.protocol import CONTENT_TYPE, encode


class ServiceClient:
    def __init__(self, url: str, timeout: float = 30.0, batch: int | None = None, token: str | None = None,
                 ca: str | Path | None = None) -> None:
        self.url = url.rstrip("/")
        self._batch = batch
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if token and not self.url.startswith("https://") and not _is_loopback_url(self.url):
            raise VeilError(f"refusing to send a credential to {self.url} in clear: use https://")
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers, verify=verify)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: object) -> dict:
        try:
            r = self.http.request(method, path, **kw)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise VeilError(f"cannot reach {self.url}: {exc}") from None
        if r.status_code != 200:
            try:
                reason = r.json().get("error", r.text)
            except ValueError:
                reason = r.text[:200]
            raise VeilError(f"server answered {r.status_code}: {reason}")
        return r.json()

    def _post(self, path: str, features: torch.Tensor, flipped: torch.Tensor | None, params: dict | None) -> dict:
        return self._request("POST", path, content=encode(features, flipped), params=params,
                             headers={"Content-Type": CONTENT_TYPE})

    def health(self) -> dict:
        return self._request("GET", "/health")

    @property
    def batch(self) -> int:
        """Rows per request: as given, else the server's own limit."""
        if self._batch is None:
            self._batch = int(self.health().get("max_batch", 32))
        return self._batch

    def _chunks(self, features: torch.Tensor, flipped: torch.Tensor | None):
        step = self.batch
        for i in range(0, len(features), step):
            yield features[i:i + step], None if flipped is None else flipped[i:i + step]

    def enrol(self, name: str, features: torch.Tensor, flipped: torch.Tensor | None = None) -> dict:
        """Enrol every feature row under ``name`` (in requests of at most ``batch`` rows)."""
        answer: dict = {}
        for f, g in self._chunks(features, flipped):
            answer = self._post("/v1/enrol", f, g, {"name": name})
        return answer

    def identify(self, features: torch.Tensor, flipped: torch.Tensor | None = None) -> list[dict]:
        """Nearest enrolled name and cosine score for every feature row."""
        out: list[dict] = []
        for f, g in self._chunks(features, flipped):
            out.extend(self._post("/v1/identify", f, g, None)["results"])
        return out

    def gallery(self) -> list[dict]:
        """Enrolled names with entry counts and who enrolled them (needs the admin right)."""
        return self._request("GET", "/v1/gallery")["names"]

    def delete(self, name: str) -> dict:
        """Remove every entry of ``name`` (needs the admin right)."""
        return self._request("DELETE", f"/v1/gallery/{quote(name, safe='')}")


def _is_loopback_url(url: str) -> bool:
    return is_loopback(httpx.URL(url).host)
