"""A thin HTTP client for the optimizer's REST API (no server dependencies)."""

from __future__ import annotations

from typing import Any

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8080"


class ApiError(Exception):
    """An error answer from the API, or no answer at all, as one line for humans."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _describe(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code', 'error')}: {error.get('message', '')}"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI's validation errors
        parts = []
        for item in detail:
            where = ".".join(str(p) for p in item.get("loc", [])[1:]) or "body"
            parts.append(f"{where}: {item.get('msg', '')}")
        return "validation failed: " + "; ".join(parts)
    return str(body)[:500]


HINTS = {
    401: "pass an API key with --api-key or LLM_OPTIMIZER_API_KEY",
    403: "this API key lacks the scope needed; use a key with read, write or admin as required",
    404: "check the name or id (`llm-optimizer workload list`)",
    503: "the service cannot take it right now; retry later",
}


class Client:
    """Calls the API; raises ApiError with the server's message and a hint on failure."""

    def __init__(self, api_url: str, api_key: str | None, timeout: float = 30.0) -> None:
        headers = {"User-Agent": "llm-optimizer-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.api_url = api_url.rstrip("/")
        self._http = httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.TransportError as exc:
            raise ApiError(
                f"cannot reach the API at {self.api_url} ({exc.__class__.__name__}: {exc}); "
                "check --api-url / LLM_OPTIMIZER_API_URL and that the service runs"
            ) from exc
        if response.status_code >= 400:
            message = f"HTTP {response.status_code} {_describe(response)}"
            hint = HINTS.get(response.status_code)
            raise ApiError(f"{message} ({hint})" if hint else message, response.status_code)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)
