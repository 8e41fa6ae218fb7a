"""TON_IoT CSV loader (BOM, padded values, separate date/time), the split MLP detector and its attack."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from veil.errors import VeilError
from veil.partition.tabular import load_csv, tabular_experiment

from .conftest import TON, needs_ton

SYNTHETIC_CSV = (  # SYNTHETIC rows in the released files' exact format: BOM, CRLF, padded time and values
    "\ufeffdate,time,fridge_temperature,temp_condition,label,type\r\n"
    "25-Apr-19, 19:19:40 ,9,high,1,ddos\r\n"
    "25-Apr-19, 19:19:45 ,2.5,low ,0,normal\r\n"
    "26-Apr-19,8:59:02,7.25, high  ,1,backdoor\r\n"
    "26-Apr-19,9:00:02,1,low,0,normal\r\n"
)


def _write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))
    return p


def test_bom_padding_and_date_time(tmp_path: Path) -> None:
    data = load_csv(_write(tmp_path, SYNTHETIC_CSV))
    assert [f.name for f in data.features] == ["fridge_temperature", "temp_condition=high", "temp_condition=low"]
    assert data.classes == ["0", "1"] and data.y.tolist() == [1, 0, 1, 0]
    assert data.x[:, 0].tolist() == [9.0, 2.5, 7.25, 1.0]
    assert data.x[:, 1].tolist() == [1.0, 0.0, 1.0, 0.0]  # ' high  ' and 'high' are one category
    assert data.timestamps[0].strftime("%Y-%m-%d %H:%M:%S") == "2019-04-25 19:19:40"
    assert data.timestamps[2].hour == 8
    with_time = load_csv(_write(tmp_path, SYNTHETIC_CSV), use_time=True)
    assert with_time.features[-1].name == "seconds_of_day" and with_time.x[0, -1] == 19 * 3600 + 19 * 60 + 40
    by_type = load_csv(_write(tmp_path, SYNTHETIC_CSV), label="type")
    assert by_type.classes == ["backdoor", "ddos", "normal"]
    assert all(f.column != "label" for f in by_type.features)  # the other label column never leaks in


@pytest.mark.parametrize("text,match", [
    ("", "empty CSV"),
    ("\ufeffdate,time,a,label,type\r\n25-Apr-19,1:00:00,1,0\r\n", "fields, header has"),
    ("\ufeffdate,time,a,label,type\r\nnot-a-date,1:00:00,1,0,normal\r\n", "cannot parse date/time"),
    ("\ufeffdate,time,a,type\r\n25-Apr-19,1:00:00,1,normal\r\n", "label column 'label' not in"),
])
def test_corrupt_csv_named(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(VeilError, match=match):
        load_csv(_write(tmp_path, text))


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "bin.csv"
    p.write_bytes(b"a,label\n\xff\xfe,1\n")
    with pytest.raises(VeilError, match="not UTF-8"):
        load_csv(p)


@needs_ton
def test_real_ton_iot_split_detector() -> None:
    """Real TON_IoT rows (Weather device): split == unsplit, accuracy above the majority class, errors reported."""
    data = load_csv(TON / "Train_Test_IoT_Weather.csv")
    assert len(data) > 30_000 and [f.name for f in data.features] == ["temperature", "pressure", "humidity"]
    keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:8000]
    data.x, data.y = data.x[keep], data.y[keep]
    result = tabular_experiment(data, epochs=3, attack_epochs=3, splits=[2])
    s = result["splits"][0]
    assert s["max_abs_diff_vs_unsplit"] < 1e-5
    majority = max(float(data.y.float().mean()), 1 - float(data.y.float().mean()))
    assert s["detection_accuracy"]["ci95"][0] > majority - 0.02
    rec = s["reconstruction"]["temperature"]
    assert rec["rmse"] < rec["prior_rmse"]  # the exposed features reveal the reading better than a guess
