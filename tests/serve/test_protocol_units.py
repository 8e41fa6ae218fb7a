"""veil.serve.protocol called directly (no server): every check of the request-body decoder on its own, at its
boundary, with the HTTP status and the reason the client receives (the server sends ``{"error": reason}``, so
the reasons are part of the API). Written for the mutation campaign (bench/mutation.py); SYNTHETIC tensors."""

from __future__ import annotations

import json
import re
import struct

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from veil.serve.config import DEFAULT_MAX_ABS
from veil.serve.protocol import ALLOWED_KEYS, CONTENT_TYPE, BadRequest, decode, encode

TOKENS, DIM, MAX_BATCH = 3, 4, 4


def feats(batch: int = 2, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(batch, TOKENS, DIM, generator=torch.Generator().manual_seed(seed)).to(dtype)


def refused(body: bytes, status: int, reason: str, **kw) -> BadRequest:
    """decode must raise BadRequest with exactly this status and this whole reason."""
    with pytest.raises(BadRequest) as info:
        decode(body, kw.pop("tokens", TOKENS), kw.pop("dim", DIM), kw.pop("max_batch", MAX_BATCH), **kw)
    exc = info.value
    assert (exc.status, exc.reason) == (status, reason)
    assert str(exc) == reason  # the one-line message is the reason itself
    return exc


def header_only(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_content_type_and_allowed_keys_are_the_documented_ones() -> None:
    assert CONTENT_TYPE == "application/vnd.veil.features+safetensors"
    assert ALLOWED_KEYS == {"features", "flipped"}


def test_bad_request_carries_status_and_reason() -> None:
    exc = BadRequest(418, "short and stout")
    assert exc.status == 418 and exc.reason == "short and stout" and str(exc) == "short and stout"
    assert exc.args == ("short and stout",)


def test_encode_writes_float32_contiguous_features_and_flipped_only_when_given() -> None:
    f64 = feats(dtype=torch.float64).requires_grad_()  # a tensor with a graph: encode detaches it
    plain = st_load(encode(f64))
    assert set(plain) == {"features"}
    assert plain["features"].dtype == torch.float32
    assert torch.equal(plain["features"], f64.detach().float())
    flipped = feats(seed=1, dtype=torch.float64).transpose(1, 2).contiguous().transpose(1, 2)  # non-contiguous
    both = st_load(encode(f64, flipped))
    assert set(both) == {"features", "flipped"}
    assert both["flipped"].dtype == torch.float32 and torch.equal(both["flipped"], flipped.float())
    assert decode(encode(f64, flipped), TOKENS, DIM, MAX_BATCH)[1] is not None  # what encode writes, decode takes


def test_round_trip_returns_the_tensors_and_none_without_flipped() -> None:
    f, g = feats(seed=2), feats(seed=3)
    out_f, out_g = decode(encode(f), TOKENS, DIM, MAX_BATCH)
    assert torch.equal(out_f, f) and out_g is None
    out_f, out_g = decode(encode(f, g), TOKENS, DIM, MAX_BATCH)
    assert torch.equal(out_f, f) and torch.equal(out_g, g)


def test_empty_body() -> None:
    refused(b"", 400, "empty body: expected a safetensors payload with a 'features' tensor")


def test_corrupt_body_names_the_library_error() -> None:
    refused(b"abc", 400, "body is not a valid safetensors payload (Error while deserializing: header too small)")


def test_corrupt_body_detail_is_the_first_line_cut_at_160_characters() -> None:
    # an unknown dtype name makes safetensors quote it: a long reason, and a newline inside it
    long_name = "Q" * 300
    body = header_only({"x": {"dtype": long_name, "shape": [1], "data_offsets": [0, 4]}}, bytes(4))
    exc = refused(body, 400, "body is not a valid safetensors payload ("
                  + "Error while deserializing: invalid JSON in header: unknown variant `" + "Q" * 92 + ")")
    assert len(re.search(r"\((.*)\)$", exc.reason).group(1)) == 160
    two_lines = header_only({"x": {"dtype": "A\nB", "shape": [1], "data_offsets": [0, 4]}}, bytes(4))
    exc = refused(two_lines, 400, "body is not a valid safetensors payload ("
                  "Error while deserializing: invalid JSON in header: unknown variant `A)")


def test_a_corrupt_body_raising_another_exception_type_is_still_a_400() -> None:
    # an 8-bit float dtype this torch does not know: safetensors raises KeyError, not its own error type
    body = header_only({"x": {"dtype": "F8_E8M0", "shape": [1], "data_offsets": [0, 1]}}, bytes(1))
    refused(body, 400, "body is not a valid safetensors payload ('F8_E8M0')")


def test_a_library_error_without_a_message_is_named_by_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    # safetensors.torch's own bare ``assert`` (zero-size data of a non-empty shape) raises an AssertionError with
    # no message; no byte string reached it here, so the library call is replaced by one that raises it. The
    # reason must still be one line naming the error, never an IndexError from an empty message.
    def bare_assert(body: bytes) -> dict:
        raise AssertionError()

    monkeypatch.setattr("veil.serve.protocol.st_load", bare_assert)
    refused(b"anything", 400, "body is not a valid safetensors payload (AssertionError)")


def test_unexpected_tensors_are_named_sorted() -> None:
    body = st_save({"features": feats(), "zeta": feats(), "alpha": feats()})
    refused(body, 422, "unexpected tensor(s) ['alpha', 'zeta']: only 'features' and 'flipped' are accepted")


def test_missing_features() -> None:
    refused(st_save({"flipped": feats()}), 422, "missing tensor 'features'")
    refused(st_save({}), 422, "missing tensor 'features'")


@pytest.mark.parametrize("name", ["features", "flipped"])
def test_dtype_must_be_float32(name: str) -> None:
    tensors = {"features": feats(), name: feats(dtype=torch.float16)}
    refused(st_save(tensors), 422, f"'{name}' must be float32, got float16")


@pytest.mark.parametrize("shape", [(2, TOKENS * DIM), (2, TOKENS, DIM, 1), (2, TOKENS + 1, DIM),
                                   (2, TOKENS, DIM + 1), (2, TOKENS - 1, DIM), (2, DIM, TOKENS)],
                         ids=["ndim2", "ndim4", "tokens+1", "dim+1", "tokens-1", "swapped"])
@pytest.mark.parametrize("name", ["features", "flipped"])
def test_shape_must_be_batch_tokens_dim(name: str, shape: tuple) -> None:
    tensors = {"features": feats(), name: torch.zeros(shape)}
    refused(st_save(tensors), 422, f"'{name}' must have shape (batch, {TOKENS}, {DIM}), got {shape}")


@pytest.mark.parametrize("name", ["features", "flipped"])
def test_batch_bounds(name: str) -> None:
    ok = feats(MAX_BATCH)
    f, g = decode(encode(ok, ok.clone()), TOKENS, DIM, MAX_BATCH)  # exactly max_batch is accepted
    assert len(f) == MAX_BATCH and len(g) == MAX_BATCH
    assert len(decode(encode(feats(1)), TOKENS, DIM, MAX_BATCH)[0]) == 1  # and one row
    for batch in (0, MAX_BATCH + 1):
        tensors = {"features": feats(batch if name == "features" else 1), name: feats(batch)}
        refused(st_save(tensors), 422, f"'{name}' batch must be 1..{MAX_BATCH}, got {batch}")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", ["features", "flipped"])
def test_non_finite_values(name: str, value: float) -> None:
    bad = feats()
    bad[1, 2, 3] = value
    tensors = {"features": feats(), name: bad}
    refused(st_save(tensors), 422, f"'{name}' contains NaN or infinite values")


@pytest.mark.parametrize("name", ["features", "flipped"])
def test_magnitude_bound_is_inclusive_and_named(name: str) -> None:
    edge = feats()
    edge[0, 0, 0] = -8.0
    assert decode(st_save({"features": feats(), name: edge}), TOKENS, DIM, MAX_BATCH, max_abs=8.0)[0] is not None
    over = edge.clone()
    over[0, 1, 0] = -8.5  # the magnitude counts, not the signed value
    refused(st_save({"features": feats(), name: over}), 422,
            f"'{name}' has a value of magnitude 8.5, above the bound 8 for features", max_abs=8.0)


def test_default_bound_is_the_servers_default() -> None:
    assert DEFAULT_MAX_ABS == 1e4
    edge = feats()
    edge[0, 0, 0] = 1e4
    assert decode(encode(edge), TOKENS, DIM, MAX_BATCH)[0][0, 0, 0] == 1e4
    edge[0, 0, 0] = 1.25e4
    refused(encode(edge), 422, "'features' has a value of magnitude 1.25e+04, above the bound 10000 for features")


def test_magnitude_reason_has_three_significant_digits() -> None:
    big = feats()
    big[0, 0, 0] = 123456.0
    refused(encode(big), 422, "'features' has a value of magnitude 1.23e+05, above the bound 10000 for features")


def test_zero_size_tensors_of_the_right_shape_pass_the_magnitude_check() -> None:
    # with no tokens the tensor is empty: the bound has nothing to check (and max() of nothing must not be taken)
    empty = torch.zeros(2, 0, DIM)
    f, _ = decode(st_save({"features": empty}), 0, DIM, MAX_BATCH)
    assert f.shape == (2, 0, DIM)


def test_flipped_must_match_the_features_shape() -> None:
    body = encode(feats(2), feats(3))
    refused(body, 422, f"'flipped' shape (3, {TOKENS}, {DIM}) differs from 'features' (2, {TOKENS}, {DIM})")
