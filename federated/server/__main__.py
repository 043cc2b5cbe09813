"""`python -m federated.server`: run a study as the coordinator.

Exit codes (docs/exit-codes.md, `accord.errors.ExitCode`, mapped by `accord.cli`): 0 study completed ·
2 bad usage · 3 invalid study/config/option · 4 fewer partners than the minimum cohort · 5 every
decryptor refused · 7 Flower runtime failure · 1 unexpected error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from accord.cli import App, print_json
from accord.errors import ExitCode
from accord.wording import plural
from crypto.node_auth import read_authorized_nodes
from federated.errors import ConfigError
from federated.evaluation.dp_release import recommended_score_bins
from federated.reporting.formatting import clipped_text
from federated.runtime.flower import stop_process
from federated.server.coordinator import (
    Simulation,
    Transport,
    expected_duration_s,
    follow,
    submit_study,
)

console = Console(stderr=True, soft_wrap=True)
cli = App(help=__doc__)

_SHOWN = ("accuracy", "precision", "recall", "f1", "auroc", "brier", "ece")
_REGRESSION_SHOWN = ("mae", "rmse", "r2", "mean_error", "calibration_slope")  # a study with task = "regression"


def _progress_line(entry: dict[str, Any], *, final_round: int | None = None) -> str | None:
    """The console line for one trail entry (None: not shown). `final_round`: the round number of a
    training study's final evaluation, shown as "final evaluation"."""
    kind, details = entry["kind"], entry["details"]
    round_number = entry.get("round")
    step = _step(round_number, final_round)
    if round_number is None and kind == "result_received":  # the closing seal (federated.messages.seal)
        return f"seal: {details['partner']} cosigned the checkpoint that covers the whole study"
    if kind == "study_started":
        return (
            f"study {entry['study']} started: {plural(details['rounds'], 'round')}, minimum cohort "
            f"{plural(details['min_cohort'], 'partner')}; waiting for partners"
        )
    if kind == "cohort_ready":
        nodes, expected = details["nodes"], details.get("expected")
        if expected is None:
            return f"cohort ready: {plural(nodes, 'partner node')} connected"
        short = f"; starting without {plural(expected - nodes, 'expected partner')}" if nodes < expected else ""
        return f"cohort ready: {nodes} of {plural(expected, 'expected partner node')} connected{short}"
    if kind == "partner_joined_late":
        before = details.get("before_round")
        missed = f"it takes part from {'the ' if before == final_round else ''}{_step(before, final_round)}" if before \
            else "it is in no round's results, only the closing seal"
        return f"[yellow]node {details['node']} joined late[/] (after the study started): {missed}"
    if kind == "expected_partners_missing":
        return f"[yellow]expected but never answered[/]: {', '.join(details['names'])}"
    if kind == "result_received" and details.get("step") == "decryption":
        return None  # "aggregate_decrypted" follows
    if kind == "aggregate_decrypted":
        return f"{step}: {details['partner']} decrypted the aggregate of {plural(len(details['contributors']), 'partner')}"
    if kind == "result_received":
        size = f"{details['count']} records" if details.get("count") else "record count withheld under DP"
        return f"{step}: result from {details['partner']} ({size})"
    if kind == "task_refused":
        who = details.get("partner", f"node {details.get('node')}")
        return f"{step}: [yellow]{who} refused[/] ({details['clause']}): {details['reason']}"
    if kind == "partner_missing":
        return f"{step}: [yellow]node {details['node']} missing[/]: {details['reason']}"
    if kind == "round_completed":
        contributors = details["contributors"]
        line = (
            f"[bold]{step} done[/] in {details['duration_s']} s: "
            f"{plural(len(contributors), 'contributor')} ({', '.join(contributors)})"
        )
        return line + "".join(f"\n  {model}: {_metrics_line(metrics)}" for model, metrics in details.get("pooled", {}).items())
    if kind == "update_rejected":
        return f"{step}: [yellow]update from {details['partner']} rejected[/]: {details['reason']}"
    if kind == "model_aggregated" and details.get("parent_sha256"):
        return f"{step}: new global model {details['sha256'][:12]}… ({details['aggregator']}, {details['file']})"
    if kind == "study_failed":
        return f"[red]study stopped[/]: {details.get('reason', '')}"
    return None


def _metrics_line(metrics: dict[str, float]) -> str:
    """The pooled metrics of one model in one round, in the results table's order."""
    shown = [f"{name} {metrics[name]:.3f}" for name in (*_SHOWN, *_REGRESSION_SHOWN) if name in metrics]
    return ", ".join(shown) or "no pooled metric released"


def _step(round_number: int | None, final_round: int | None = None) -> str:
    if round_number is None:
        return "seal"
    return "final evaluation" if round_number == final_round else f"round {round_number}"


def score_bins_warning(study: Any, results: dict[str, Any]) -> str | None:
    """A warning when a DP study's score_bins is far (over 4×) above `recommended_score_bins` for the records
    and partners it had: each bin carries its own noise, so finer bins make the AUROC noisier, not finer."""
    evaluation = study.evaluation
    final = results.get("final_evaluation") or (results["rounds"][-1] if results.get("rounds") else None)
    if not evaluation.privacy.enabled or evaluation.task == "regression" or not final or not final.get("pooled"):
        return None  # (a regression study has no score bins)
    records = max(float(next(iter(final["pooled"].values())).get("count") or 0.0), 0.0)
    recommended = recommended_score_bins(
        epsilon=evaluation.privacy.epsilon, delta=evaluation.privacy.delta, records=int(records),
        partners=len(final["contributors"]), num_classes=evaluation.num_classes, models=len(final["pooled"]),
        subgroups=bool(evaluation.subgroup_levels), calibration_bins=evaluation.calibration_bins)
    if evaluation.score_bins <= 4 * recommended:
        return None
    return (f"score_bins = {evaluation.score_bins} is far above the {recommended} recommended at ε = "
            f"{evaluation.privacy.epsilon:g} for ≈{records:.0f} records over {len(final['contributors'])} partners "
            "(dp_release.recommended_score_bins): every bin carries its own noise, so the AUROC is noisier, not finer")


def _results_table(results: dict[str, Any]) -> Table:
    table = Table(title=f"Pooled metrics — study {results['study']}")
    table.add_column("model")
    shown = _REGRESSION_SHOWN if results.get("task") == "regression" else _SHOWN
    for name in shown:
        table.add_column(name, justify="right")
    final = results.get("final_evaluation") or (results["rounds"][-1] if results["rounds"] else {"pooled": {}})
    errors = final.get("standard_errors", {})
    for model, metrics in final["pooled"].items():
        se, intervals = errors.get(model, {}), _intervals(final.get("validation", {}).get(model, {}))
        not_estimable = final.get("validation", {}).get(model, {}).get("ece_not_estimable")
        table.add_row(model, *("not estimable at this ε" if k == "ece" and not_estimable else
                               _cell(k, metrics.get(k), se.get(k), intervals.get(k), noisy=model in errors) for k in shown))
    captions = ["[low, high]: 95 % interval (sampling, and DP noise when on)"] if final.get("validation") else []
    if errors:
        captions.append("± standard error from the partners' DP noise; a metric clipped to its range's edge shows as a bound")
    table.caption = "; ".join(captions) or None
    return table


def _intervals(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    records = {metric: summary.get(f"{metric}_ci") for metric in ("accuracy", "auroc", "brier", "log_loss", "mae", "rmse", "mean_error")}
    return {metric: record for metric, record in records.items() if record and record.get("low") is not None}


def _cell(name: str, value: float | None, se: float | None, interval: dict[str, Any] | None, *, noisy: bool) -> str:
    if value is None:
        return "—"
    if noisy and (clipped := clipped_text(name, value, interval=interval, se=se)) is not None:
        return clipped
    if interval is not None:
        return f"{value:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"
    return f"{value:.3f}" + (f" ± {se:.3f}" if se is not None else "")


@cli.command()
def main(
    study: Annotated[Path, typer.Option(help="Study file (TOML).", exists=False)],
    superlink: Annotated[
        str | None, typer.Option(help="Attach to a running SuperLink at HOST:PORT instead of starting one.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address the SuperLink this command starts listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, metavar="PORT", help="Port of the SuperLink this command starts (partners connect here).")] = 9093,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain HTTP, no TLS: only for 127.0.0.1 demos and tests.")] = False,
    ssl_certfile: Annotated[Path | None, typer.Option(help="SuperLink TLS certificate (secure mode).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="SuperLink TLS private key (secure mode).")] = None,
    ssl_ca_certfile: Annotated[Path | None, typer.Option(help="CA certificate that signed the SuperLink's certificate.")] = None,
    supernode_auth: Annotated[
        bool, typer.Option("--supernode-auth", help="Flower SuperNode authentication: only nodes whose keys are in --authorized-nodes may join (needs TLS).")
    ] = False,
    authorized_nodes: Annotated[
        Path | None,
        typer.Option(help="Partner SuperNode public keys to register: a directory of *.pub files or one file of key lines."),
    ] = None,
    flwr_home: Annotated[Path | None, typer.Option(help="Private Flower home (default: OUTPUT_DIR/.flwr).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print results.json to stdout when done.")] = False,
    simulate: Annotated[
        int | None, typer.Option(help="Run under Flower's simulation engine (Ray) with this many virtual partners.")
    ] = None,
    simulation_data: Annotated[
        Path | None, typer.Option(help="With --simulate: directory of partner-NNN.csv/.toml files, one per partner.")
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="The coordinator's Ed25519 signing key (PEM); created if absent (default: OUTPUT_DIR/coordinator.key). Refused if earlier runs in OUTPUT_DIR were signed with another key.")
    ] = None,
    wait_for_partners: Annotated[
        float | None, typer.Option(min=0, metavar="SECONDS", help="With expected_partners in the study: how long to wait for all of them once the study starts (default: the study's expected_wait_s, else cohort_timeout_s).")
    ] = None,
) -> None:
    """Submit STUDY as a Flower run, follow it round by round, print the pooled results."""
    submission = None
    try:
        transport = Transport(insecure, ssl_certfile, ssl_keyfile, ssl_ca_certfile, supernode_auth=supernode_auth)
        target_host = superlink.rpartition(":")[0] if superlink else host
        transport.check(target_host, attach=superlink is not None, authorized_nodes=authorized_nodes is not None)
        nodes = read_authorized_nodes(authorized_nodes) if authorized_nodes is not None else None
        simulation = None
        if simulate is not None:
            if simulation_data is None or not simulation_data.is_dir():
                raise ConfigError("--simulate needs --simulation-data DIR holding partner-NNN.csv/.toml files")
            simulation = Simulation(partners=simulate, data_dir=simulation_data)
        with console.status("starting the SuperLink and submitting the study"):
            submission = submit_study(
                study, superlink=superlink, host=host, port=port, transport=transport, flwr_home=flwr_home,
                simulation=simulation, key=key, authorized_nodes=nodes, wait_for_partners_s=wait_for_partners,
            )
        if submission.key_created:
            console.print(
                f"created the coordinator's signing key {submission.coordinator_key}; keep it and pass it with --key "
                "to later studies: partners pin it on first contact and refuse a coordinator whose key changes"
            )
        if submission.authorized is not None:
            console.print(
                f"registered {len(submission.authorized)} authorized partner node key(s) with the SuperLink: "
                + ", ".join(f"{n['name']} (node {n['node'] or 'already registered'})" for n in submission.authorized)
            )
        console.print(f"submitted study [bold]{submission.study.id}[/] as Flower run {submission.run_id}; this run writes to")
        console.print(str(submission.study.output_dir), highlight=False)
        final_round = submission.study.rounds + 1 if submission.study.purpose == "training" else None
        with console.status("running") as status:
            def show(entry: dict[str, Any]) -> None:
                line = _progress_line(entry, final_round=final_round)
                if line:
                    console.print(line)
                    status.update(line)

            results = follow(submission, show, timeout_s=expected_duration_s(submission.study))
    finally:
        if submission is not None and submission.superlink is not None:
            stop_process(submission.superlink)
    final = results.get("final_evaluation") or (results["rounds"][-1] if results["rounds"] else {})
    if final.get("pooled"):  # nothing to tabulate when no metric was released
        console.print(_results_table(results))
    if (warning := score_bins_warning(submission.study, results)) is not None:
        console.print(f"[yellow]warning[/]: {warning}")
    out = submission.study.output_dir  # this run's folder; OUTPUT_DIR/latest points to it
    console.print(f"report: {out / 'report.md'}\nresults: {out / 'results.json'}\ntrail: {results['trail']}", highlight=False)
    if json_output:
        print_json(results)
    if results["status"] != "completed":
        console.print(f"[red]{results['status']}[/]: {results['message']}")
        refused = results["status"] == "decryption_failed"  # every decrypting partner refused the aggregate
        raise typer.Exit(int(ExitCode.REFUSED if refused else ExitCode.COHORT_TOO_SMALL))


if __name__ == "__main__":
    cli()
