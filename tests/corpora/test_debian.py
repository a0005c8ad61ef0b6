"""Fetching recordings from Debian packages: a tiny real .deb served by a fake apt-get, and one real fetch (slow)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from proxyseg.core.errors import InputError
from proxyseg.corpora import debian
from proxyseg.corpora.debian import fetch_package

VERSION = "1:0.1-1"  # an epoch: apt-get names the file fakepkg_1%3a0.1-1_all.deb, SOURCE.json keeps the colon
COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fakepkg

Files: *
Copyright: 2024, Someone
Comment: the credits say
 License: NOT-A-FIELD
License: CC-BY-SA-3.0

Files: debian/*
Copyright: 2024, Someone Else
License: GPL-2+

License: CC-BY-SA-3.0
 Full text here.
"""
FAILED = "E: Failed to fetch http://deb.debian.org/debian/pool/main/x.deb  Temporary failure resolving 'deb.debian.org'"


def _build_deb(root: Path, name: str, version: str) -> Path:
    """A real .deb of package ``name`` with a copyright file and a 0.1 s WAV at 8 kHz; returns its path."""
    if shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None:
        pytest.skip("dpkg-deb and dpkg are needed to build and extract a test .deb")
    tree = root / "build" / name
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: Nobody <nobody@example.org>\n"
        f"Description: test package\n test package for proxyseg\n")
    doc = tree / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    sounds = tree / "usr" / "share" / "sounds" / name
    sounds.mkdir(parents=True)
    sf.write(sounds / "beep.wav", 0.1 * np.sin(np.arange(800) / 3.0), 8000, subtype="PCM_16")
    deb = root / "debs" / f"{name}_{version.replace(':', '%3a')}_all.deb"
    deb.parent.mkdir(exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True,
                   capture_output=True)
    return deb


@pytest.fixture
def deb(tmp_path) -> Path:
    return _build_deb(tmp_path, "fakepkg", VERSION)


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    """``fake_apt(deb=..., fail=False, only=False)``: an ``apt-get`` first on PATH that appends its arguments to
    the returned log and copies ``deb`` into the current folder (or fails as apt-get does without network);
    ``only``: PATH holds nothing else."""
    bin_dir, log = tmp_path / "bin", tmp_path / "apt-get.log"
    bin_dir.mkdir()

    def _install(deb: Path | None = None, fail: bool = False, only: bool = False) -> Path:
        lines = ["#!/bin/sh", f"printf '%s\\n' \"$*\" >> {shlex.quote(str(log))}"]
        if fail:
            lines += ["echo 'Reading package lists...'", f"echo {shlex.quote(FAILED)} >&2", "exit 100"]
        else:
            lines += [f"{shutil.which('cp')} {shlex.quote(str(deb))} ."]
        script = bin_dir / "apt-get"
        script.write_text("\n".join(lines) + "\n")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", str(bin_dir) if only else f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        return log

    return _install


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _temporaries(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}.tmp-"))


def test_fetch_extracts_the_tree_and_records_the_source(tmp_path, deb, fake_apt, caplog):
    log = fake_apt(deb)
    out = tmp_path / "corpora" / "fakepkg"
    with caplog.at_level(logging.INFO, logger="proxyseg.corpora.debian"):
        record = fetch_package("fakepkg", out)
    assert _calls(log) == ["download fakepkg"]
    assert sf.info(str(out / "usr" / "share" / "sounds" / "fakepkg" / "beep.wav")).samplerate == 8000
    assert (out / "usr" / "share" / "doc" / "fakepkg" / "copyright").read_text() == COPYRIGHT
    assert json.loads((out / "SOURCE.json").read_text()) == record
    assert record == {"package": "fakepkg", "version": VERSION, "deb": deb.name,
                      "sha256": hashlib.sha256(deb.read_bytes()).hexdigest(),
                      "licence": ["CC-BY-SA-3.0", "GPL-2+"], "fetched_with": "apt-get download fakepkg"}
    assert not list(out.rglob("*.deb"))                           # the .deb is not kept
    assert sorted(p.name for p in out.parent.iterdir()) == ["fakepkg"]  # nor any temporary
    assert any("apt-get download fakepkg" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


def test_a_version_is_asked_for_and_checked(tmp_path, deb, fake_apt):
    log = fake_apt(deb)
    out = tmp_path / "fakepkg"
    assert fetch_package("fakepkg", out, version=VERSION)["version"] == VERSION
    assert _calls(log) == [f"download fakepkg={VERSION}"]
    with pytest.raises(InputError, match="is fakepkg 1:0.1-1, not the fakepkg=2.0 asked for"):
        fetch_package("fakepkg", tmp_path / "other", version="2.0")
    assert not (tmp_path / "other").exists() and _temporaries(tmp_path, "other") == []


def test_a_second_fetch_replaces_a_complete_earlier_one(tmp_path, deb, fake_apt):
    fake_apt(deb)
    out = tmp_path / "fakepkg"
    fetch_package("fakepkg", out)
    (out / "usr" / "share" / "sounds" / "fakepkg" / "beep.wav").unlink()
    (out / "stale.txt").write_text("from the earlier fetch")
    fetch_package("fakepkg", out)
    assert not (out / "stale.txt").exists()
    assert (out / "usr" / "share" / "sounds" / "fakepkg" / "beep.wav").is_file()
    assert json.loads((out / "SOURCE.json").read_text())["package"] == "fakepkg"


def test_a_folder_that_is_not_a_fetch_is_left_alone(tmp_path, deb, fake_apt):
    log = fake_apt(deb)
    out = tmp_path / "fakepkg"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="is not an earlier fetch"):
        fetch_package("fakepkg", out)
    assert (out / "mine.txt").read_text() == "keep me"
    assert _calls(log) == []  # refused before downloading


def test_a_killed_fetch_leaves_temporaries_that_the_next_removes(tmp_path, deb, fake_apt):
    fake_apt(deb)
    for name in (".fakepkg.tmp-k1ll3d_a", ".fakepkg.tmp-k1ll3d_b"):  # the tree and the download folder
        (tmp_path / name / "usr" / "share").mkdir(parents=True)
        (tmp_path / name / "half.wav").write_bytes(b"RIFF")
    (tmp_path / ".other.tmp-1").mkdir()  # another output's temporary stays
    fetch_package("fakepkg", tmp_path / "fakepkg")
    assert _temporaries(tmp_path, "fakepkg") == []
    assert (tmp_path / ".other.tmp-1").is_dir()
    assert (tmp_path / "fakepkg" / "SOURCE.json").is_file()


def test_a_failed_fetch_keeps_the_earlier_one(tmp_path, deb, fake_apt):
    fake_apt(deb)
    out = tmp_path / "fakepkg"
    before = fetch_package("fakepkg", out)
    broken = tmp_path / "debs" / "fakepkg_2.0_all.deb"
    broken.write_bytes(b"!<arch>\nnot a deb")
    fake_apt(broken)
    with pytest.raises(InputError, match="not a readable .deb"):
        fetch_package("fakepkg", out)
    assert json.loads((out / "SOURCE.json").read_text()) == before
    assert (out / "usr" / "share" / "sounds" / "fakepkg" / "beep.wav").is_file()
    assert _temporaries(tmp_path, "fakepkg") == []


def test_a_failed_download_names_the_package_and_quotes_apt_get(tmp_path, fake_apt):
    log = fake_apt(fail=True)
    out = tmp_path / "sounds"
    with pytest.raises(InputError) as raised:
        fetch_package("asterisk-core-sounds-en-wav", out)
    message = str(raised.value)
    assert "apt-get download asterisk-core-sounds-en-wav failed (exit 100)" in message
    assert "Temporary failure resolving 'deb.debian.org'" in message
    assert "network" in message and "'asterisk-core-sounds-en-wav'" in message
    assert _calls(log) == ["download asterisk-core-sounds-en-wav"]
    assert not out.exists() and _temporaries(tmp_path, "sounds") == []


@pytest.mark.parametrize("name", ["x; rm -rf", "x", "", "Fakepkg", "-oDebug::pkgAcquire=1", "fake pkg",
                                  "fakepkg=1.0", "../fakepkg", "fakepkg\n", "$(touch x)", None])
def test_a_bad_package_name_is_refused_before_anything_runs(tmp_path, deb, fake_apt, name):
    log = fake_apt(deb)
    with pytest.raises(InputError, match="not a Debian package name"):
        fetch_package(name, tmp_path / "out")
    assert _calls(log) == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("version", ["1.0; rm -rf", "-1", "latest", "1.0 2", ""])
def test_a_bad_version_is_refused_before_anything_runs(tmp_path, deb, fake_apt, version):
    log = fake_apt(deb)
    with pytest.raises(InputError, match="not a Debian version"):
        fetch_package("fakepkg", tmp_path / "out", version=version)
    assert _calls(log) == []


@pytest.mark.parametrize("name", ["fakepkg", "g++", "libstdc++6", "0ad", "colobot-common-sounds", "python3.11"])
def test_good_package_names_pass(tmp_path, monkeypatch, name):
    """The name check is no blanket refusal (it runs first: with no apt-get, the next error is the one raised)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InputError, match="apt-get not found"):
        fetch_package(name, tmp_path / "out", version="1:2.0~rc1+dfsg-3")


def test_no_apt_get_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a folder without apt-get
    out = tmp_path / "sounds"
    with pytest.raises(InputError, match="apt-get not found: this step needs a Debian/Ubuntu machine") as raised:
        fetch_package("fakepkg", out)
    assert f"extract the package fakepkg yourself into {out}" in str(raised.value)


def test_no_dpkg_is_found_before_downloading(tmp_path, deb, fake_apt):
    log = fake_apt(deb, only=True)  # PATH: the fake apt-get and nothing else
    with pytest.raises(InputError, match="dpkg not found"):
        fetch_package("fakepkg", tmp_path / "out")
    assert _calls(log) == []


#: what apt-get says when the registry cannot be reached (or its package lists were never downloaded)
_OFFLINE = ("Temporary failure resolving", "Could not resolve", "Failed to fetch", "Unable to connect",
            "Network is unreachable", "Connection failed", "Connection timed out", "Unable to locate package")


@pytest.mark.slow
def test_a_real_fetch_of_the_asterisk_prompts(tmp_path):
    """The real apt-get: Allison Smith's English prompts, 8 kHz mono WAV, CC BY-SA 3.0, checksum as apt lists it."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get not found: not a Debian/Ubuntu machine")
    if os.geteuid() != 0:
        pytest.skip("apt-get download needs root here")
    package, out = "asterisk-core-sounds-en-wav", tmp_path / "asterisk"
    try:
        record = fetch_package(package, out)
    except InputError as e:
        if any(s in str(e) for s in _OFFLINE):
            pytest.skip(f"no network or no package lists: {e}")
        raise
    prompts = sorted((out / "usr" / "share" / "asterisk" / "sounds" / "en_US_f_Allison").glob("*.wav"))
    assert len(prompts) >= 300 if record["version"] != "1.6.1-1" else len(prompts) == 358
    assert {(sf.info(str(p)).samplerate, sf.info(str(p)).channels) for p in prompts} == {(8000, 1)}
    assert "CC-BY-SA-3.0" in record["licence"]
    listed = subprocess.run(["apt-cache", "show", f"{package}={record['version']}"], capture_output=True, text=True)
    assert f"SHA256: {record['sha256']}" in listed.stdout
    assert json.loads((out / "SOURCE.json").read_text()) == record
    assert debian.SOURCE_FILE == "SOURCE.json" and not list(out.rglob("*.deb"))
