"""HTTP client of the recognition server: sends FG features (never images, never the encoder) as safetensors.

It takes feature tensors only; the client CLI (``veil.cli.client``) runs ExtNet + the noise encoder
locally and hands the result here, so nothing in this module can reach the client's secret.
"""

from __future__ import annotations

import httpx
import torch

from veil.errors import VeilError
from veil.serve.protocol import CONTENT_TYPE, encode


class ServiceClient:
    def __init__(self, url: str, timeout: float = 30.0, batch: int = 32) -> None:
        self.url = url.rstrip("/")
        self.batch = batch
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, features: torch.Tensor, flipped: torch.Tensor | None, params: dict | None) -> dict:
        try:
            r = self.http.post(path, content=encode(features, flipped), params=params,
                               headers={"Content-Type": CONTENT_TYPE})
        except httpx.HTTPError as exc:
            raise VeilError(f"cannot reach {self.url}: {exc}") from None
        if r.status_code != 200:
            try:
                reason = r.json().get("error", r.text)
            except ValueError:
                reason = r.text[:200]
            raise VeilError(f"server answered {r.status_code}: {reason}")
        return r.json()

    def health(self) -> dict:
        try:
            r = self.http.get("/health")
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise VeilError(f"cannot reach {self.url}: {exc}") from None
        return r.json()

    def _chunks(self, features: torch.Tensor, flipped: torch.Tensor | None):
        for i in range(0, len(features), self.batch):
            yield features[i:i + self.batch], None if flipped is None else flipped[i:i + self.batch]

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
