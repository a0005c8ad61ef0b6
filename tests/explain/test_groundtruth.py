"""Ground truth of listenable explanations: SI-SDR, the stem's band, rows on a tiny proxy, CLI and errors."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from proxyseg.cli import main
from proxyseg.core.errors import InputError
from proxyseg.core.frames import SAMPLE_RATE
from proxyseg.explain.groundtruth import (KINDS, _bin_energy, band_share, groundtruth_rows, groundtruth_summary,
                                  provenance_path, segment_scores, si_sdr, stem_band)

RNG = np.random.default_rng(0)


def test_si_sdr_self_high_noise_low_and_scale_invariant():
    s = RNG.standard_normal(16000) * 0.1
    noise = RNG.standard_normal(16000) * 0.1
    assert si_sdr(s, s) > 80
    assert si_sdr(3.0 * s, s) > 80  # scale-invariant
    assert si_sdr(noise, s) < -15
    assert si_sdr(s + noise, s) == pytest.approx(0.0, abs=0.5)  # equal energies: about 0 dB
    assert si_sdr(np.zeros_like(s), s) < -60  # silence is no estimate
    with pytest.raises(ValueError):
        si_sdr(s[:10], s)


def test_stem_band_smallest_set():
    e = np.array([0.0, 5.0, 1.0, 3.0, 1.0])  # total 10
    assert stem_band(e, 0.5).tolist() == [False, True, False, False, False]
    assert stem_band(e, 0.8).tolist() == [False, True, False, True, False]
    assert stem_band(e, 0.9).sum() == 3 and stem_band(e, 1.0).sum() == 4  # the empty bin never joins
    assert not stem_band(np.zeros(5), 0.9).any()
    assert band_share(e, stem_band(e, 0.8)) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        stem_band(e, 0.0)


def test_explanation_equal_to_the_stem_scores_best():
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    stem = 0.1 * np.sin(2 * np.pi * 300 * t)
    other = sum(0.1 * np.sin(2 * np.pi * f * t) for f in (1500, 2500, 3500))
    mixture = stem + other
    band = stem_band(_bin_energy(stem, 512, 400), 0.9)
    assert band.sum() <= 6  # a tone: a handful of bins around 300 Hz
    perfect = segment_scores(stem, mixture, stem, band, 512, 400)
    worst = segment_scores(other, mixture, stem, band, 512, 400)
    mix = segment_scores(mixture, mixture, stem, band, 512, 400)
    assert perfect["sisdri"] > 40 and perfect["sisdr"] > 80
    assert mix["sisdri"] == pytest.approx(0.0)
    assert worst["sisdri"] < -20
    assert perfect["share"] >= 0.9 and perfect["share"] > mix["share"] > worst["share"]
    assert mix["share"] == pytest.approx(0.25, abs=0.03)  # the stem holds a quarter of the mixture's energy
    assert perfect["kept"] == pytest.approx(0.25, abs=0.01)


@pytest.fixture
def gt_files(tmp_path, linear_proxy, narrowband_dictionary, one_file_split):
    """3 s: a 300 Hz tone (the speech stem) plus tones at 1.5-5.5 kHz (the noise stem); a spectrogram-input
    proxy with narrow-band atoms whose speech rests on atom 0 and noise on atoms 1-5; music has no weight."""
    centres = [300, 1500, 2500, 3500, 4500, 5500]
    W = narrowband_dictionary(centres)
    linear_proxy(tmp_path / "proxy.pt", W, {0: [(0, 3.0), (slice(1, None), 0.05)], 1: [(slice(1, None), 2.0)]})
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    speech = (0.1 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    noise = sum(0.1 * np.sin(2 * np.pi * f * t) for f in centres[1:]).astype(np.float32)
    stems = tmp_path / "stems" / "a"
    stems.mkdir(parents=True)
    for name, x in (("speech", speech), ("noise", noise), ("music", np.zeros_like(speech))):
        sf.write(stems / f"{name}.wav", x, SAMPLE_RATE, subtype="FLOAT")
    return one_file_split(W, speech + noise, active=[0, 1], subtype="FLOAT")


def _items(d):
    return [("demo", d / "inf.h5", d / "spec.h5", d / "targets.h5", d / "manifest.tsv", d / "stems")]


def test_rows_explanations_find_their_sources(gt_files):
    rows = groundtruth_rows(gt_files / "proxy.pt", _items(gt_files), {"segment_seconds": 1.0, "draws": 3},
                            seed=0, system="p")
    assert set(rows["class"]) == {"speech", "noise"}  # music inactive, overlap has no stem
    assert not rows["no_relevant"].any() and not rows["silent_stem"].any()
    speech, noise = rows[rows["class"] == "speech"], rows[rows["class"] == "noise"]
    assert len(speech) == len(noise) == 2
    assert (speech["n_relevant"] == 1).all() and (noise["n_relevant"] == 5).all()
    # the explanations are their stems, nearly: far better than the mixture and than random atoms
    assert (speech["sisdri_explanation"] > 10).all() and (noise["sisdri_explanation"] > 3).all()
    assert (speech["sisdri_explanation"] > speech["sisdri_random"] + 5).all()
    assert (speech["share_explanation"] > 0.85).all()
    assert (speech["share_explanation"] > speech["share_mixture"] + 0.5).all()
    assert (speech["share_stem"] >= 0.9 - 1e-9).all()
    assert speech["stem_energy"].between(0.15, 0.2).all()  # one tone of six
    # the energy-matched reference keeps at least as much of the audio as the explanation, and still loses
    assert (speech["kept_random_energy"] >= 0.8 * speech["kept_explanation"]).all()
    assert (speech["sisdri_explanation"] > speech["sisdri_random_energy"] + 5).all()
    again = groundtruth_rows(gt_files / "proxy.pt", _items(gt_files), {"segment_seconds": 1.0, "draws": 3},
                             seed=0, system="p")
    pd.testing.assert_frame_equal(rows, again)  # seeded
    s = groundtruth_summary(rows).set_index("class")
    assert list(s.index) == ["speech", "noise"]
    assert s.loc["speech", "segments"] == 2 and s.loc["speech", "corpora"] == "demo"
    assert s.loc["speech", "sisdri_explanation"] == pytest.approx(speech["sisdri_explanation"].mean())
    assert s.loc["speech", "beats_random"] == 1.0
    assert all(f"sisdri_{k}" in s for k in KINDS)


def test_cli_rows_table_figure_and_provenance(gt_files):
    d = gt_files
    items = [str(v) for v in _items(d)[0]]
    out = d / "scores" / "p.tsv"
    settings = json.dumps({"segment_seconds": 1.0, "draws": 2, "energy_share": 0.8})
    assert main(["groundtruth", "--checkpoint", str(d / "proxy.pt"), "--items", *items, "--system", "p",
                 "--out", str(out), "--seed", "3", "--settings", settings]) == 0
    prov = json.loads(provenance_path(out).read_text())
    assert provenance_path(out).name == "p.provenance.json"
    assert prov["settings"]["settings"]["energy_share"] == 0.8 and prov["settings"]["rows"] == 4
    assert main(["groundtruth-table", str(out), "--out-tsv", str(d / "t.tsv"), "--out-md", str(d / "t.md"),
                 "--out-png", str(d / "g.png")]) == 0
    table = pd.read_csv(d / "t.tsv", sep="\t")
    assert list(table["class"]) == ["speech", "noise"] and (table["segments"] == 2).all()
    md = (d / "t.md").read_text()
    assert "holding 0.8 of the stem's energy" in md and "sisdri_explanation" in md
    assert (d / "g.png").stat().st_size > 5000
    assert not list(d.glob("**/.*tmp*"))
    # items not in sextuples, unknown settings: status 2
    assert main(["groundtruth", "--checkpoint", str(d / "proxy.pt"), "--items", *items[:5], "--system", "p",
                 "--out", str(d / "x.tsv")]) == 2
    assert main(["groundtruth", "--checkpoint", str(d / "proxy.pt"), "--items", *items, "--system", "p",
                 "--out", str(d / "x.tsv"), "--settings", '{"energy_share": 1.5}']) == 2
    assert not (d / "x.tsv").exists()


def test_missing_stems_name_the_file(gt_files, capsys):
    d = gt_files
    (d / "stems" / "a" / "speech.wav").unlink()
    with pytest.raises(InputError) as err:
        groundtruth_rows(d / "proxy.pt", _items(d), {"segment_seconds": 1.0, "draws": 1})
    assert err.value.path == str(d / "stems" / "a" / "speech.wav")
    items = [str(v) for v in _items(d)[0]]
    items[-1] = str(d / "no_stems")
    assert main(["groundtruth", "--checkpoint", str(d / "proxy.pt"), "--items", *items, "--system", "p",
                 "--out", str(d / "x.tsv")]) == 2
    assert str(d / "no_stems") in capsys.readouterr().err and not (d / "x.tsv").exists()


def test_stem_of_another_length_is_refused(gt_files):
    d = gt_files
    sf.write(d / "stems" / "a" / "speech.wav", np.zeros(1000, np.float32), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(InputError, match="samples"):
        groundtruth_rows(d / "proxy.pt", _items(d), {"segment_seconds": 1.0, "draws": 1})
