"""`python -m federated.audit`: export, verify, show and prove, with the documented exit codes."""

from __future__ import annotations

import json
import zipfile

import pytest
from typer.testing import CliRunner

from crypto import verify_inclusion
from federated.audit.__main__ import cli

runner = CliRunner()


def _export(study, tmp_path, *extra: str):
    pack = tmp_path / "pack.zip"
    args = ["export", "--study", "s1", "--output-dir", str(study.out), "--out", str(pack), "--json"]
    for partner in study.partners:
        args += ["--partner-trail", str(partner.workdir)]
    return pack, runner.invoke(cli, args + list(extra))


def test_export_writes_a_pack_that_verify_accepts(study, tmp_path):
    study.run()
    pack, done = _export(study, tmp_path)
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["problem"] is None and summary["partners"] == ["hospital-a", "hospital-b"] and summary["manifest_signed"]
    verified = runner.invoke(cli, ["verify", str(pack), "--coordinator-key", study.identity.fingerprint])
    assert verified.exit_code == 0, verified.output
    assert "VERIFIED" in verified.output


def test_export_refuses_an_output_directory_of_another_study(study, tmp_path):
    study.run()
    done = runner.invoke(cli, ["export", "--study", "other", "--output-dir", str(study.out), "--out", str(tmp_path / "p.zip")])
    assert done.exit_code == 3
    assert "holds study 's1', not 'other'" in done.output


def test_verify_exits_6_naming_the_first_problem(study, tmp_path):
    study.run()
    pack, _ = _export(study, tmp_path)
    with zipfile.ZipFile(pack, "a") as bundle:
        bundle.writestr("notes.txt", "added later")
    done = runner.invoke(cli, ["verify", str(pack), "--json"])
    assert done.exit_code == 6
    verdict = json.loads(done.stdout[done.stdout.index("{"):])
    assert verdict["ok"] is False and verdict["problem"] == "notes.txt is in the pack but not listed in MANIFEST.json"
    assert "NOT VERIFIED" in done.output


def test_verify_of_something_that_is_not_evidence_exits_3(tmp_path):
    (tmp_path / "empty").mkdir()
    done = runner.invoke(cli, ["verify", str(tmp_path / "empty")])
    assert done.exit_code == 3
    assert "neither an evidence pack" in done.output


def test_prove_prints_an_inclusion_proof_that_checks_out(study, tmp_path):
    study.run()
    pack, _ = _export(study, tmp_path)
    done = runner.invoke(cli, ["prove", str(pack), "--entry", "3", "--json"])
    assert done.exit_code == 0, done.output
    proof = json.loads(done.stdout)
    assert json.loads(proof["entry_json"])["seq"] == 3
    verify_inclusion(leaf_hash=bytes.fromhex(proof["leaf_hash"]), index=3, tree_size=proof["tree_size"],
                     proof=[bytes.fromhex(h) for h in proof["proof"]], root=bytes.fromhex(proof["root"]))
    assert proof["checkpoint"].startswith(f"accord.coordinator/s1\n{proof['tree_size']}\n")


def test_prove_an_entry_of_a_partner_trail(study, tmp_path):
    study.run()
    pack, _ = _export(study, tmp_path)
    done = runner.invoke(cli, ["prove", str(pack), "--entry", "1", "--partner", "hospital-b", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["log"] == "accord.partner/hospital-b"


def test_prove_refuses_an_entry_no_checkpoint_covers(study, tmp_path):
    study.run()
    study.coordinator().trail.append("study_completed", study="s1")  # after the last checkpoint
    last = len(study.trail_path.read_bytes().splitlines()) - 1
    done = runner.invoke(cli, ["prove", str(study.out), "--entry", str(last)])
    assert done.exit_code == 6
    assert f"no signed checkpoint covers entry {last}" in done.output


def test_show_lists_entries_and_checkpoints_in_time_order(study, tmp_path):
    study.run()
    pack, _ = _export(study, tmp_path)
    done = runner.invoke(cli, ["show", str(pack), "--json"])
    assert done.exit_code == 0, done.output
    rows = json.loads(done.stdout)
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)
    signed = [r for r in rows if r["kind"] == "checkpoint_signed" and r["actor"] == "coordinator"]
    assert len(signed) == 4 and "cosigned by accord.partner/hospital-a, accord.partner/hospital-b" in signed[0]["detail"]
    assert {r["actor"] for r in rows} == {"coordinator", "hospital-a", "hospital-b"}
    human = runner.invoke(cli, ["show", str(pack), "--actor", "hospital-a"])
    assert human.exit_code == 0 and "task_received" in human.output


def test_verify_of_a_missing_file_exits_3_as_its_help_says(tmp_path):
    done = runner.invoke(cli, ["verify", str(tmp_path / "missing.zip")])
    assert done.exit_code == 3
    assert f"{tmp_path / 'missing.zip'}: no such file or directory" in done.output
    assert "3 invalid input" in runner.invoke(cli, ["--help"]).output


def _lie_about_size(pack, member: str, offset: int, delta: int) -> None:
    """Change a size the central directory records for `member` (offset 20: compressed, 24: uncompressed)."""
    data = bytearray(pack.read_bytes())
    name = member.encode()
    header = data.index(b"PK\x01\x02")
    while data[header + 46: header + 46 + len(name)] != name:
        header = data.index(b"PK\x01\x02", header + 4)
    size = int.from_bytes(data[header + offset: header + offset + 4], "little")
    data[header + offset: header + offset + 4] = (size + delta).to_bytes(4, "little")
    pack.write_bytes(bytes(data))


@pytest.mark.parametrize("offset", [24, 20], ids=["size", "compressed-size"])
def test_a_zip_member_whose_header_understates_its_size_is_a_one_line_failure(study, tmp_path, offset):
    """(A header that overstates a size is harmless: the member still ends where its data ends and its
    SHA-256 is checked against the manifest; the size cap counts the larger, claimed size.)"""
    study.run()
    pack, _ = _export(study, tmp_path)
    _lie_about_size(pack, "report/results.json", offset, -7)
    done = runner.invoke(cli, ["verify", str(pack)])
    assert done.exit_code == 6
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert done.output.strip().count("\n") == 0
    assert done.output.startswith(f"NOT VERIFIED: {pack}: member 'report/results.json' is damaged (")


def test_show_of_an_actor_with_no_entries_is_invalid_input_naming_the_actors(study, tmp_path):
    study.run()
    pack, _ = _export(study, tmp_path)
    done = runner.invoke(cli, ["show", str(pack), "--actor", "nobody"])
    assert done.exit_code == 3
    assert done.stderr.splitlines() == [
        f"error: --actor 'nobody': no entry of {pack} is by that actor (actors: coordinator, hospital-a, hospital-b)"
    ]


def test_prove_prints_each_hash_alone_on_its_line(study, tmp_path):
    study.run()
    pack, _ = _export(study, tmp_path)
    proof = json.loads(runner.invoke(cli, ["prove", str(pack), "--entry", "3", "--json"]).stdout)
    lines = [line.strip() for line in runner.invoke(cli, ["prove", str(pack), "--entry", "3"], env={"COLUMNS": "40"}).stdout.splitlines()]
    for hash_ in (proof["leaf_hash"], proof["root"], *proof["proof"]):
        assert hash_ in lines
