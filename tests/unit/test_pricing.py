"""The price table: the built-in rows carry their facts, user files add or replace rows,
bad files fail with one line naming the file and the row, and unknown GPUs get no price."""

import math
import re

import pytest
from gpulse.identity.tables import tables
from gpulse.pricing import MAX_ROWS, PriceFileError, PriceTable, parse_kind, pricing_kind


def _write(tmp_path, text, name="prices.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_builtin_row_has_a_known_sku_a_date_a_source_and_consistent_arithmetic():
    table = PriceTable.load()
    assert table.currency == "USD" and len(table.rows) >= 8
    skus = tables().skus
    for price in table.rows.values():
        assert price.sku in skus, f"{price.sku}: not a canonical SKU of the identity tables"
        assert price.cloud in ("aws", "gcp", "azure"), price
        assert price.kind == "on-demand", "the built-in table is public on-demand list prices"
        assert re.match(r"^20\d\d-\d\d-\d\d$", price.as_of), price
        assert price.source.startswith("https://"), price
        assert price.region and price.instance_type, price
        assert 0.1 < price.per_gpu_hour < 100, price


def test_builtin_rows_are_the_instance_price_over_its_gpus():
    # The loader refuses rows whose per-GPU price is not instance_per_hour / gpus (0.5%).
    h100 = PriceTable.load().lookup("H100-SXM5-80GB", "H100", "aws", "on-demand")
    assert h100 is not None and h100.per_gpu_hour == pytest.approx(55.04 / 8)
    assert h100.instance_type == "p5.48xlarge" and h100.region == "us-east-1"


def test_lookup_prefers_sku_then_model_and_never_guesses():
    t = PriceTable.load()
    assert t.lookup("H100-SXM5-80GB", "H100", "gcp", "on-demand").per_gpu_hour == pytest.approx(10.9791)
    assert t.lookup("H100-SXM5-80GB", "H100", "aws", "spot") is None, "another pricing kind is not a price"
    assert t.lookup("H100-PCIe-80GB", "H100", "aws", "on-demand") is None, "another SKU of the model is not a price"
    assert t.lookup("T4-16GB", "T4", "aws", "on-demand") is None
    assert t.lookup("H100-SXM5-80GB", "H100", "onprem", "on-demand") is None
    assert t.lookup("", "", "aws", "on-demand") is None


def test_user_file_adds_and_replaces_rows(tmp_path):
    path = _write(tmp_path, """
currency: USD
prices:
  - {sku: H100-SXM5-80GB, cloud: aws, kind: on-demand, per_gpu_hour: 4.1, source: our EDP}
  - {model: T4, cloud: "*", kind: on-demand, instance_per_hour: 1.2, gpus: 2}
  - {sku: H100-SXM5-80GB, cloud: aws, kind: spot, per_gpu_hour: 2.5, as_of: 2026-12-01}
""")
    t = PriceTable.load(path)
    assert t.lookup("H100-SXM5-80GB", "H100", "aws", "on-demand").per_gpu_hour == 4.1
    assert t.lookup("H100-SXM5-80GB", "H100", "aws", "spot").as_of == "2026-12-01"
    assert t.lookup("T4-16GB", "T4", "onprem", "on-demand").per_gpu_hour == pytest.approx(0.6)
    assert t.lookup("H200-SXM5-141GB", "H200", "aws", "on-demand").per_gpu_hour == pytest.approx(7.912), \
        "built-in rows stay unless the file replaces them"


def test_user_file_can_drop_the_builtin_table_and_use_its_own_currency(tmp_path):
    path = _write(tmp_path, "currency: EUR\nbuiltin: false\nprices:\n  - {model: H100, cloud: onprem, per_gpu_hour: 2}\n")
    t = PriceTable.load(path)
    assert t.currency == "EUR" and len(t.rows) == 1
    assert t.lookup("H100-SXM5-80GB", "H100", "onprem", "on-demand").per_gpu_hour == 2.0
    assert t.lookup("H100-SXM5-80GB", "H100", "aws", "on-demand") is None


@pytest.mark.parametrize(("text", "message"), [
    ("prices: [{sku: H100-SXM5-80GB, cloud: aws}]", "prices[0]: per_gpu_hour: missing"),
    ("prices: [{sku: X, model: Y, cloud: aws, per_gpu_hour: 1}]", "prices[0]: name exactly one of sku and model"),
    ("prices: [{sku: X, per_gpu_hour: 1}]", "prices[0]: cloud: missing"),
    ("prices: [{sku: X, cloud: aws, per_gpu_hour: -1}]", "prices[0]: per_gpu_hour: expected a positive number"),
    ("prices: [{sku: X, cloud: aws, per_gpu_hour: .nan}]", "per_gpu_hour: expected a positive number"),
    ("prices: [{sku: X, cloud: aws, per_gpu_hour: 1, colour: red}]", "prices[0]: unknown key 'colour'"),
    ("prices: [{sku: X, cloud: aws, per_gpu_hour: 1, kind: Spot Market}]", "prices[0]: kind:"),
    ("prices: [{sku: X, cloud: aws, per_gpu_hour: 2, instance_per_hour: 8, gpus: 8}]", "is not instance_per_hour / gpus"),
    ("prices: [{sku: X, cloud: aws, instance_per_hour: 8, gpus: 0}]", "gpus: expected an integer 1-64"),
    ("prices: [{sku: X, cloud: aws, per_gpu_hour: 1" + "0" * 400 + "}]", "per_gpu_hour: expected a positive number"),
    ("prices: [{sku: X, cloud: aws, instance_per_hour: 8, gpus: 1" + "0" * 400 + "}]", "gpus: expected an integer"),
    ("prices: [{sku: X, cloud: aws, per_gpu_hour: 1, as_of: 2026-13-45}]", "invalid value"),
    ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]", "alias bomb"),
    ("prices:\n  - {sku: X, cloud: aws, per_gpu_hour: 1}\n  - {sku: X, cloud: aws, per_gpu_hour: 2}",
     "prices[1]: a second row for sku X on aws (on-demand)"),
    ("currency: dollars\nprices: []", "currency: expected an ISO 4217 code"),
    ("currency: EUR\nprices: [{sku: X, cloud: aws, per_gpu_hour: 1}]", "differs from the built-in table's USD"),
    ("prices: {sku: X}", "prices: expected a list"),
    ("- just a list", "expected a mapping"),
    ("prices: [1, 2]", "prices[0]: expected a mapping"),
    ("bogus: 1", "unknown key 'bogus'"),
    ("builtin: maybe", "builtin: expected true or false"),
    ("prices: [{sku: X, cloud: aws, per_gpu_hour: 1", "invalid YAML"),
])
def test_bad_files_fail_with_one_line_naming_file_and_row(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(PriceFileError) as err:
        PriceTable.load(path)
    line = str(err.value)
    assert "\n" not in line and line.startswith(path) and message in line, line


def test_unreadable_file(tmp_path):
    with pytest.raises(PriceFileError, match="cannot read the price file"):
        PriceTable.load(str(tmp_path / "missing.yaml"))
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00prices")
    with pytest.raises(PriceFileError, match="not UTF-8"):
        PriceTable.load(str(binary))


def test_the_largest_file_of_full_rows_loads_and_one_row_more_is_refused(tmp_path):
    row = ('  - {{sku: S{i}, cloud: aws, kind: on-demand, instance_type: p.{i}, instance_per_hour: 8, gpus: 8, '
           'per_gpu_hour: 1, region: r, as_of: "2026-11-09", source: "https://example"}}\n')
    rows = "".join(row.format(i=i) for i in range(MAX_ROWS))
    assert len(PriceTable.load(_write(tmp_path, "prices:\n" + rows)).rows) > MAX_ROWS
    with pytest.raises(PriceFileError, match=f"more than {MAX_ROWS}"):
        PriceTable.load(_write(tmp_path, "prices:\n" + rows + row.format(i=MAX_ROWS)))


def test_empty_user_file_is_the_builtin_table(tmp_path):
    assert PriceTable.load(_write(tmp_path, "")).rows == PriceTable.load().rows


def test_pricing_kind_from_the_setting_or_the_node_labels():
    assert pricing_kind("reserved", {"karpenter.sh/capacity-type": "spot"}) == "reserved", "the setting wins"
    assert pricing_kind("auto", {}) == "on-demand"
    assert pricing_kind("auto", {"karpenter.sh/capacity-type": "spot"}) == "spot"
    assert pricing_kind("auto", {"eks.amazonaws.com/capacityType": "ON_DEMAND"}) == "on-demand"
    assert pricing_kind("auto", {"eks.amazonaws.com/capacityType": "SPOT"}) == "spot"
    assert pricing_kind("auto", {"cloud.google.com/gke-spot": "true"}) == "spot"
    assert pricing_kind("auto", {"cloud.google.com/gke-preemptible": "true"}) == "spot"
    assert pricing_kind("auto", {"kubernetes.azure.com/scalesetpriority": "spot"}) == "spot"
    assert pricing_kind("auto", {"cloud.google.com/gke-spot": "false"}) == "on-demand"


def test_parse_kind():
    assert parse_kind(" spot ") == "spot" and parse_kind("auto") == "auto" and parse_kind("savings-plan-1y")
    with pytest.raises(ValueError, match="invalid pricing kind"):
        parse_kind("Spot!")


def test_prices_are_finite():
    assert all(math.isfinite(p.per_gpu_hour) for p in PriceTable.load().rows.values())


def test_the_example_configmap_is_a_valid_price_file(tmp_path):
    import yaml

    from tests.conftest import ROOT
    (cm,) = [d for d in yaml.safe_load_all(open(f"{ROOT}/deploy/examples/gpu-prices.yaml")) if d]
    t = PriceTable.load(_write(tmp_path, cm["data"]["prices.yaml"]))
    assert t.lookup("H100-SXM5-80GB", "H100", "aws", "on-demand").per_gpu_hour == 4.1
    assert t.lookup("L40S-48GB", "L40S", "aws", "spot").per_gpu_hour == pytest.approx(0.93)
    assert t.lookup("A100-SXM4-80GB", "A100", "onprem", "on-demand").per_gpu_hour == 1.2
