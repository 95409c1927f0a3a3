"""The monitoring job end to end: `aigp monitor run` with Evidently, its HTML pages (parsed, with their
plots), summary, Prometheus exporter and rules, the runbook, S3 paths, the drill command."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from aigp.cli import app
from aigp.cli.demo_context import DemoContext
from aigp.decisions import load_decisions
from aigp.io import write_parquet
from aigp.monitoring.alerts import ALERTS, STALE_ALERT
from aigp.monitoring.drills import DrillConfig, inject_ctr_shift, simulated_traffic
from aigp.monitoring.figures import MonitorConfig

ROOT = Path(__file__).resolve().parent.parent
END = "2026-03-20"  # the conftest market's last launch day (steady volume up to there)
runner = CliRunner()


class _Page(HTMLParser):
    """Collects the images and text of a page; raises on nothing, so parse problems show as missing parts."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []
        self.tags = 0

    def handle_starttag(self, tag, attrs) -> None:
        self.tags += 1
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))

    def handle_data(self, data) -> None:
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def _metrics(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture(scope="module")
def live_decisions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Live traffic in serving's format (no category column) whose click-through rates shifted."""
    cfg = DrillConfig(current_skus=400, launch_days=20)
    frame = inject_ctr_shift(simulated_traffic(cfg, 4, 400), np.random.default_rng(0), logit_shift=0.5)
    path = tmp_path_factory.mktemp("monitor_job") / "decisions.parquet"
    write_parquet(path, frame.drop(columns=["category"]))
    return path


@pytest.fixture(scope="module")
def run_dir(market_logs, live_decisions, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("monitor_run") / "report"
    config = out.parent / "monitor.yaml"
    config.write_text("min_window_decisions: 100\n")
    result = runner.invoke(app, ["monitor", "run", "--reference", str(market_logs.path), "--current",
                                 str(live_decisions), "--out", str(out), "--window", "14", "--end", END,
                                 "--reference-end", END, "--config", str(config),
                                 "--skus", str(market_logs.path / "skus.parquet")])
    assert result.exit_code == 0, result.output
    return out


def test_run_writes_every_output(run_dir) -> None:
    for name in ("drift_report.html", "drift_report.json", "index.html", "metrics.prom", "summary.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert len(list((run_dir / "plots").glob("*.png"))) >= 6
    assert not list(run_dir.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_summary_page_opens_and_embeds_the_plots(run_dir) -> None:
    page = _parse(run_dir / "index.html")
    pngs = [base64.b64decode(src.split(",", 1)[1]) for src in page.images if src.startswith("data:image/png;base64,")]
    assert len(pngs) >= 6 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    text = " ".join(page.text)
    for heading in ("Alerts", "Safety", "Stability", "Drift", "Category mix", "Configuration"):
        assert heading in text
    assert "AigpPricingFeatureDrift" in text and "firing" in text
    html_text = (run_dir / "index.html").read_text()
    assert re.search(r'<tr class="firing"><td[^>]*>AigpPricingFeatureDrift</td>', html_text)


def test_evidently_report_opens_and_agrees_with_the_core(run_dir, market_logs, live_decisions) -> None:
    page = _parse(run_dir / "drift_report.html")  # a self-contained page: the report is a script with its data
    report = (run_dir / "drift_report.html").read_text()
    assert page.tags >= 5 and report.count("<script") >= 3 and len(report) > 100_000
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report.count("Wasserstein distance (normed)") >= len(summary["drift"]["columns"])
    assert all(column in report for column in summary["drift"]["columns"])
    assert summary["engine"] == "evidently"
    assert "ctr_1d" in summary["drift"]["drifted_alert_features"] and "feature_drift" in summary["firing"]
    drifted = sum(d["drifted"] for d in summary["drift"]["columns"].values())
    assert summary["evidently_drifted_count"] == drifted  # Evidently's own count = ours
    # The same windows without Evidently: every per-column score is the same number.
    from aigp.monitoring.job import analyse

    cfg = MonitorConfig.build(**summary["config"])
    reference = load_decisions(market_logs.path)
    current = load_decisions(live_decisions, skus=market_logs.path / "skus.parquet")
    scipy = cfg.with_updates(drift_engine="scipy")  # the engine is a config field, not a rendering flag
    _, figures, _, evidently, _ = analyse(reference, current, scipy, end=END, reference_end=END)
    assert evidently is None
    for column, d in summary["drift"]["columns"].items():
        assert figures.drift[column].score == pytest.approx(d["score"], rel=1e-9, abs=1e-12), column


def test_metrics_match_the_summary(run_dir) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = _metrics((run_dir / "metrics.prom").read_text())
    alerts = {a["name"]: a for a in summary["alerts"]}
    for spec in ALERTS:
        value = metrics[(spec.metric, ())]
        expected = alerts[spec.name]["value"] if alerts[spec.name]["evaluated"] else None  # NaN: not evaluated
        assert (np.isnan(value) and expected is None) or value == pytest.approx(expected), spec.name
        assert metrics[("aigp_pricing_alert_firing", (("alert", spec.prometheus), ("severity", spec.severity)))] \
            == float(alerts[spec.name]["firing"])
    assert metrics[("aigp_pricing_feature_drifted", (("alerting", "true"), ("column", "ctr_1d"),
                                                     ("kind", "daily_performance")))] == 1.0
    assert metrics[("aigp_pricing_decisions", ())] == summary["safety"]["decisions"]
    assert metrics[(STALE_ALERT.metric, ())] == pytest.approx(summary["finished_at_unix"])


def test_export_textfile_and_http_endpoint(run_dir, tmp_path) -> None:
    from aigp.monitoring.exporter import serve, summary_registry

    result = runner.invoke(app, ["monitor", "export", str(run_dir / "summary.json"), "--textfile",
                                 str(tmp_path / "aigp.prom")])
    assert result.exit_code == 0, result.output
    textfile = _metrics((tmp_path / "aigp.prom").read_text())
    registry = summary_registry(json.loads((run_dir / "summary.json").read_text()))
    server, thread = serve(registry, 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as response:
            served = _metrics(response.read().decode())
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert served[("aigp_pricing_fallback_rate", ())] == textfile[("aigp_pricing_fallback_rate", ())]
    assert served.keys() == textfile.keys()
    assert runner.invoke(app, ["monitor", "export", str(run_dir / "summary.json")]).exit_code == 2


def test_committed_rules_match_the_default_config_and_the_runbook() -> None:
    from aigp.monitoring.rules import MANIFEST, prometheus_rule, rules_yaml

    assert MANIFEST.read_text() == rules_yaml(MonitorConfig()), "regenerate: aigp monitor rules --out " + str(MANIFEST)
    kustomization = yaml.safe_load((MANIFEST.parent / "kustomization.yaml").read_text())
    assert MANIFEST.name in kustomization["resources"]
    rules = prometheus_rule(MonitorConfig())["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {a.prometheus for a in (*ALERTS, STALE_ALERT)}
    drift = next(r for r in rules if r["alert"] == "AigpPricingFeatureDrift")
    assert drift["expr"] == "aigp_pricing_drifted_features >= 1"
    over = next(r for r in rules if r["alert"] == "AigpPricingOverDiscounting")
    assert over["expr"] == "aigp_pricing_action_mean_shift <= -0.015"
    runbook = (ROOT / "monitoring" / "RUNBOOK.md").read_text()
    sections = re.split(r"^## ", runbook, flags=re.M)
    for rule in rules:
        section = next((s for s in sections if s.startswith(rule["alert"])), None)
        assert section is not None, f"RUNBOOK.md has no section for {rule['alert']}"
        for part in ("Meaning", "Confirm", "Act"):
            assert f"**{part}.**" in section, f"{rule['alert']} lacks {part}"
        assert rule["annotations"]["runbook_url"].endswith("#" + rule["alert"].lower())
    loose = MonitorConfig(over_discount_shift=0.05)
    over = next(r for r in prometheus_rule(loose)["spec"]["groups"][0]["rules"] if r["alert"] == over["alert"])
    assert over["expr"].endswith("<= -0.05")


def _runbook_anchors() -> set[str]:
    """The anchors a Markdown renderer (GitHub, GitLab) gives RUNBOOK.md's headings."""
    text = re.sub(r"^```.*?^```", "", (ROOT / "monitoring" / "RUNBOOK.md").read_text(), flags=re.M | re.S)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)  # headings, not the comments of code blocks
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_alert_links_an_absolute_runbook_url_with_an_existing_anchor() -> None:
    """Alertmanager and Grafana open runbook_url as it is: absolute, at RUNBOOK.md, on the alert's own section --
    in the PrometheusRule, in the promtool rule file and in what the promtool tests expect."""
    from urllib.parse import urlsplit

    from aigp.monitoring.rules import MANIFEST, RULES_FILE, RULES_TEST, RUNBOOK_URL, prometheus_rule

    anchors = _runbook_anchors()
    manifest = yaml.safe_load(MANIFEST.read_text())["spec"]["groups"]
    plain = yaml.safe_load(RULES_FILE.read_text())["groups"]
    links = [(r["alert"], r["annotations"]["runbook_url"]) for groups in (manifest, plain) for g in groups
             for r in g["rules"]]
    links += [(t["alertname"], a["exp_annotations"]["runbook_url"])
              for case in yaml.safe_load(RULES_TEST.read_text())["tests"] for t in case["alert_rule_test"]
              for a in t["exp_alerts"]]
    assert len({alert for alert, _ in links}) == len(ALERTS) + 1
    for alert, url in links:
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.netloc, f"{alert}: runbook_url {url!r} is not absolute"
        assert parts.path.endswith("/monitoring/RUNBOOK.md"), (alert, url)
        assert parts.fragment == alert.lower() and parts.fragment in anchors, (alert, url)
        assert url == f"{RUNBOOK_URL}#{alert.lower()}"
    other = prometheus_rule(MonitorConfig(), runbook_url="https://docs.example.org/aigp/RUNBOOK.md")
    assert {r["annotations"]["runbook_url"] for r in other["spec"]["groups"][0]["rules"]} == {
        f"https://docs.example.org/aigp/RUNBOOK.md#{a.prometheus.lower()}" for a in (*ALERTS, STALE_ALERT)}
    for bad in ("monitoring/RUNBOOK.md", "https://x.org/RUNBOOK.md#top", "ftp://x.org/RUNBOOK.md"):
        with pytest.raises(ValueError, match="runbook_url"):
            prometheus_rule(MonitorConfig(), runbook_url=bad)


def test_cli_errors_and_fail_on_alert(run_dir, market_logs, live_decisions, tmp_path) -> None:
    base = ["monitor", "run", "--reference", str(market_logs.path), "--current", str(live_decisions), "--out",
            str(tmp_path / "o"), "--drift-engine", "scipy", "--window", "14", "--end", END, "--reference-end", END]
    result = runner.invoke(app, [*base, "--fail-on-alert"])
    assert result.exit_code == 3, result.output
    result = runner.invoke(app, [*base[:-2], "--reference-end", "the day before"])
    assert result.exit_code == 2 and "not a date" in result.output
    result = runner.invoke(app, [*base, "--end", "2027-01-01"])
    assert result.exit_code == 2 and "no decisions between" in result.output


def test_s3_inputs_and_dated_outputs(market_logs, live_decisions, tmp_path, monkeypatch) -> None:
    moto = pytest.importorskip("moto")
    from aigp.monitoring.job import run_from_paths
    from aigp.registry.storage import s3_client, upload

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with moto.mock_aws():
        client = s3_client()
        client.create_bucket(Bucket="aigp-decisions")
        upload(market_logs.path, "s3://aigp-decisions/reference", client=client)
        upload(live_decisions, "s3://aigp-decisions/decisions/part-0.parquet", client=client)
        result = run_from_paths("s3://aigp-decisions/reference", "s3://aigp-decisions/decisions",
                                "s3://aigp-decisions/monitoring",
                                config=MonitorConfig(min_window_decisions=100, drift_engine="scipy"),
                                window_days=14, end=END, reference_end=END, dated=True)
        keys = {o["Key"] for o in client.list_objects_v2(Bucket="aigp-decisions", Prefix="monitoring/")["Contents"]}
    assert f"monitoring/{END}/summary.json" in keys and f"monitoring/{END}/index.html" in keys
    assert result.location == f"s3://aigp-decisions/monitoring/{END}"
    assert "feature_drift" in result.firing


def test_drill_command_passes(tmp_path) -> None:
    result = runner.invoke(app, ["monitor", "drill", "outage", "--out", str(tmp_path / "drill"),
                                 "--drift-engine", "scipy"])
    assert result.exit_code == 0, result.output
    assert "drill passed" in result.output
    summary = json.loads((tmp_path / "drill" / "summary.json").read_text())
    assert summary["firing"] == ["decision_volume"]


# ------------------------------------------------------------------------------------------------------
# promtool: the metrics lint, the committed rule tests, and Prometheus firing exactly the job's alerts
# ------------------------------------------------------------------------------------------------------
def _promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:  # `make test` installs it (Makefile system-deps): a missing tool fails, it never skips
        pytest.fail("promtool not found: run `make system-deps` (Debian package prometheus)")
    return subprocess.run([binary, *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_promtool_check_metrics_passes_on_the_jobs_gauges(run_dir) -> None:
    text = (run_dir / "metrics.prom").read_text()
    checked = _promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip(), checked.stdout + checked.stderr
    assert "aigp_pricing_latency_p95_seconds " in text and "_ms" not in text and "quantile=" not in text


def test_promtool_rule_tests_cover_every_alert_and_pass() -> None:
    from aigp.monitoring.rules import RULES_FILE, RULES_TEST, rules_file_yaml, rules_test_yaml

    stale = "regenerate: aigp monitor rules --out manifests/base/monitoring/prometheus-rules.yaml --promtool"
    assert RULES_FILE.read_text() == rules_file_yaml(MonitorConfig()), stale
    assert RULES_TEST.read_text() == rules_test_yaml(MonitorConfig()), stale
    cases = yaml.safe_load(RULES_TEST.read_text())["tests"]
    tested = {t["alert_rule_test"][0]["alertname"] for t in cases}
    fired = {t["alert_rule_test"][0]["alertname"] for t in cases if t["alert_rule_test"][0]["exp_alerts"]}
    every = {a.prometheus for a in (*ALERTS, STALE_ALERT)}
    assert tested == fired == every  # every alert is tested firing and quiet
    checked = _promtool("check", "rules", str(RULES_FILE))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = _promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def _prometheus_fires(metrics_text: str, tmp_path: Path) -> set[str]:
    """The job's pricing alerts Prometheus fires on these gauges: each alert is asserted quiet in a promtool
    test; promtool names every alert whose expectation failed, i.e. the ones that fired."""
    from aigp.monitoring.rules import RULES_FILE

    series = [{"series": name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else ""),
               "values": " ".join([repr(value) if np.isfinite(value) else "NaN"] * 16)}
              for (name, labels), value in _metrics(metrics_text).items()]
    test = {"rule_files": [str(RULES_FILE)], "evaluation_interval": "1m",
            "tests": [{"name": a.prometheus, "interval": "1m", "input_series": series,
                       "alert_rule_test": [{"eval_time": "10m", "alertname": a.prometheus, "exp_alerts": []}]}
                      for a in ALERTS]}
    path = tmp_path / "job.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = _promtool("test", "rules", str(path))
    output = result.stdout + result.stderr
    assert "parse error" not in output and "Unit Testing" in output, output
    fired = {a.prometheus for a in ALERTS if f"name: {a.prometheus}," in output}
    assert (result.returncode == 0) == (not fired), output
    return fired


@pytest.mark.parametrize("min_window", [100, 100_000], ids=["evaluated", "window-too-small"])
def test_prometheus_fires_exactly_the_alerts_the_job_reports(market_logs, live_decisions, tmp_path,
                                                            min_window) -> None:
    """The gauges of a run, fed to the committed rules: Prometheus fires what summary.json says fires. With
    too few decisions the drift alert is "not evaluated" in the report and must stay quiet in Prometheus."""
    config = tmp_path / "monitor.yaml"
    config.write_text(f"min_window_decisions: {min_window}\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["monitor", "run", "--reference", str(market_logs.path), "--current",
                                 str(live_decisions), "--out", str(out), "--window", "14", "--end", END,
                                 "--reference-end", END, "--config", str(config), "--drift-engine", "scipy",
                                 "--skus", str(market_logs.path / "skus.parquet")])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    reported = {a["prometheus"] for a in summary["alerts"] if a["firing"]}
    drift = next(a for a in summary["alerts"] if a["name"] == "feature_drift")
    if min_window > 1000:
        assert not drift["evaluated"] and drift["value"] >= 1  # drifted columns counted, alert not evaluated
    else:
        assert "AigpPricingFeatureDrift" in reported
    assert _prometheus_fires((out / "metrics.prom").read_text(), tmp_path) == reported


def test_demo_monitors_the_served_decisions_and_reports_what_fires(market_logs, tmp_path, monkeypatch) -> None:
    """`make demo` monitors what its serving stage served (DemoContext.pricing_decisions), on the day served, and
    its summary line names the alerts that fire there (here: replies that do not parse, and fall back)."""
    from aigp.cli.demo import STAGES
    from aigp.cli.monitor import stage_monitor
    from aigp.cli.price import stage_price
    from aigp.monitoring.drills import inject_parse_failures

    traffic = simulated_traffic(DrillConfig(current_skus=400, launch_days=20), 5, 400)
    day = traffic[traffic["date"] == traffic["date"].max()].reset_index(drop=True)
    served = inject_parse_failures(day, np.random.default_rng(1), rate=0.2)
    path = tmp_path / "pricing" / "decisions.parquet"
    write_parquet(path, served.drop(columns=["category"]))
    monkeypatch.setattr("aigp.cli.monitor.console.print", lambda *a, **k: None)
    ctx = DemoContext(root=tmp_path, logs=market_logs, pricing_decisions=str(path))
    line = stage_monitor(ctx)
    result = ctx.monitoring
    assert result.figures.current_rows == len(served)
    assert str(result.figures.window.start) == str(result.figures.window.end) == str(served["date"].max().date())
    assert {"AigpPricingParseFailures", "AigpPricingFallbackRateHigh"} <= set(a.prometheus for a in result.alerts
                                                                              if a.firing)
    assert "AigpPricingParseFailures" in line and "AigpPricingFallbackRateHigh" in line and "none" not in line
    order = [stage for _, stage in STAGES]
    assert order.index(stage_monitor) == order.index(stage_price) + 1  # monitoring runs after serving
    with pytest.raises(ValueError, match="served decisions"):
        stage_monitor(DemoContext(root=tmp_path, logs=market_logs))


def test_drift_chart_shows_the_alerting_features_next_to_a_huge_score() -> None:
    """Rationale length against a reference without rationales scores ~260k; on a linear axis every other bar
    is a sliver. On the chart's axis each alerting feature's bar spans a visible share of the width."""
    import math
    from types import SimpleNamespace

    from aigp.monitoring.figures import ColumnDrift
    from aigp.monitoring.plots import drift_scores_figure

    def column(name: str, kind: str, score: float, alerting: bool) -> ColumnDrift:
        return ColumnDrift(name, kind, "wasserstein", score, 0.15, score >= 0.15, alerting)

    drift = {"rationale_tokens": column("rationale_tokens", "rationale", 259_891.0, False),
             "ctr_1d": column("ctr_1d", "daily_performance", 0.31, True),
             "cvr_1d": column("cvr_1d", "daily_performance", 0.18, True),
             "list_price": column("list_price", "sku_attributes", 0.02, True),
             "weekday": column("weekday", "calendar", 0.0, False)}
    fig = drift_scores_figure(SimpleNamespace(drift=drift))
    ax = fig.axes[0]
    left, right = ax.get_xlim()
    widths = {t.get_text().split(" (")[0]: p for t, p in zip(ax.get_yticklabels(), ax.patches, strict=True)}

    def share(name: str) -> float:  # the share of the axis the bar covers, as the eye sees it
        bar = widths[name]
        ends = (bar.get_x(), bar.get_x() + bar.get_width())
        if ax.get_xscale() == "log":
            return (math.log(ends[1]) - math.log(ends[0])) / (math.log(right) - math.log(left))
        return (ends[1] - ends[0]) / (right - left)

    assert share("ctr_1d") > 0.15 and share("cvr_1d") > 0.1 and share("ctr_1d") > share("cvr_1d")
    assert share("rationale_tokens") > share("ctr_1d")
    assert left <= 0.15 <= right  # the threshold line is on the chart


def test_gauges_reach_prometheus_through_the_shipped_pushgateway(run_dir, tmp_path) -> None:
    """The cluster layout: the monitoring kustomization ships a Pushgateway (Deployment + Service) and the
    ConfigMap with the URL the job pushes to. A real Pushgateway (the image's binary) receives `aigp monitor
    export --pushgateway` and serves the job's gauges, promtool-clean, for Prometheus to scrape."""
    from _registry_support import free_port

    folder = ROOT / "manifests" / "base" / "monitoring"
    assert "pushgateway.yaml" in yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    docs = {d["kind"]: d for d in yaml.safe_load_all((folder / "pushgateway.yaml").read_text())}
    service, deployment, config = docs["Service"], docs["Deployment"], docs["ConfigMap"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    port = service["spec"]["ports"][0]["port"]
    url = config["data"]["AIGP_PUSHGATEWAY_URL"]
    assert url == f"http://{service['metadata']['name']}:{port}"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == port and f"--web.listen-address=:{port}" in container["args"]

    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:  # `make test` installs it (Makefile system-deps): a missing tool fails, it never skips
        pytest.fail("pushgateway not found: run `make system-deps` (Debian package prometheus-pushgateway)")
    local = free_port()
    gateway = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{local}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{local}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=1).close()
                break
            except OSError:
                import time

                time.sleep(0.1)
        result = runner.invoke(app, ["monitor", "export", str(run_dir / "summary.json"), "--pushgateway", base])
        assert result.exit_code == 0, result.output
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            scraped = response.read().decode()
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)
    ours = "\n".join(line for line in scraped.splitlines() if "aigp_pricing_" in line) + "\n"
    summary = json.loads((run_dir / "summary.json").read_text())
    pushed = _metrics(ours)
    assert pushed[("aigp_pricing_decisions", (("instance", ""), ("job", "aigp-monitor")))] == \
        summary["safety"]["decisions"]
    checked = _promtool("check", "metrics", stdin=ours)
    assert checked.returncode == 0, checked.stdout + checked.stderr
