"""The target options (--kernel, --wwn, --listen-any, --iscsi-poll-us) have one definition: what ``simfs
mount`` and ``simfs run`` hand on (a command line, a JSON spec) reads back the same."""

from __future__ import annotations

import argparse

import pytest

from simfs.daemon.options import TargetOptions, add_target_options, target_options


def _parse(argv: list[str]) -> TargetOptions:
    p = argparse.ArgumentParser()
    add_target_options(p)
    return target_options(p.parse_args(argv))


def test_defaults_are_the_newest_kernel_on_loopback_only():
    assert _parse([]) == TargetOptions()


@pytest.mark.parametrize("opts", [
    TargetOptions(),
    TargetOptions(kernel="v3.0"),
    TargetOptions(kernel="6.1", wwns=("qla2xxx=21:00:00:24:ff:00:00:01",), listen_any=True),
    TargetOptions(iscsi_poll_us=0),
    TargetOptions(iscsi_poll_us=250),
])
def test_argv_and_json_read_back_the_same(opts):
    assert _parse(opts.argv()) == opts
    assert TargetOptions.from_json(opts.to_json()) == opts


def test_profile_is_the_older_spelling_of_kernel():
    assert _parse(["--profile", "modern"]).kernel == _parse(["--kernel", "6.18"]).kernel


def test_bad_input_is_refused():
    with pytest.raises(SystemExit):
        _parse(["--kernel", "6.1", "--profile", "5.14"])
    with pytest.raises(ValueError, match="--wwn wants FABRIC=PORT"):
        _parse(["--wwn", "nosuchfabric=1"])
    for bad in ("-1", "10001", "5.5", "x"):
        with pytest.raises(SystemExit):
            _parse(["--iscsi-poll-us", bad])


def test_the_poll_window_defaults_to_100_us_and_an_old_record_reads_so():
    assert TargetOptions().iscsi_poll_us == 100
    old = TargetOptions().to_json()
    del old["iscsi_poll_us"]  # a record written before the option existed
    assert TargetOptions.from_json(old).iscsi_poll_us == 100


def test_a_hardware_port_needs_its_driver_in_the_kernel():
    """efct came with 5.14; v3.0 had no fabric module that drives hardware."""
    with pytest.raises(ValueError, match=r"--kernel 4\.18 has no efct driver \(it came "
                       r"with Linux 5\.14\)"):
        _parse(["--kernel", "4.18", "--wwn", "efct=10:00:00:10:9b:1a:2b:3c"])
    with pytest.raises(ValueError, match="--kernel v3.0 has no tcm_qla2xxx driver;"):
        _parse(["--kernel", "v3.0", "--wwn", "qla2xxx=21:00:00:24:ff:00:00:01"])
    assert _parse(["--kernel", "5.14", "--wwn", "efct=10:00:00:10:9b:1a:2b:3c"]).wwns == (
        "efct=10:00:00:10:9b:1a:2b:3c",)
