"""The command line under misuse: each bad call gives one line on stderr naming the file or flag, exit status 1
for a bad or missing file, 2 for a bad argument; and the commands' argument wiring (`fastload demo --help`)."""
import pytest
import torch

from fastload.cli import main


@pytest.fixture(scope="module")
def tiny_compiled(tmp_path_factory):
    """2 synthetic classes x 3 train + 1 val images, compiled; and a random-weight 'full' checkpoint."""
    from fastload.compile import CompileSettings, compile_imagenet
    from fastload.index import load_index
    from fastload.models.build import build_model
    from fastload.synth.imagenet import write_imagenet
    base = tmp_path_factory.mktemp("cli")
    write_imagenet(base / "raw", 2, 3, 1, "32", 0, 1)
    compile_imagenet(base / "raw", base / "data", CompileSettings(max_resolution=32, num_workers=1))
    wnids = [str(w) for w in load_index(base / "data" / "train_index.npz").class_wnids]
    checkpoint = base / "full" / "last.pt"
    checkpoint.parent.mkdir()
    torch.save({"model": build_model("alexnet_caffe", 2).state_dict(), "arch": "alexnet_caffe", "num_classes": 2,
                "label_wnids": wnids, "epoch": 0}, checkpoint)
    (base / "a_file").write_text("not a folder\n")
    (base / "not.beton").write_text("not a beton\n")
    return base


ANALYSIS = {"imagenet-cls": ["--checkpoint", "{ckpt}"], "induction": ["--checkpoint", "{ckpt}", "--labelset", "full"],
            "coarse-fine": ["--checkpoint", "{ckpt}"]}

# (case id, argv with {base}/{data}/{ckpt} placeholders, exit status, text the one-line message must contain)
CASES = [
    ("neighbours-out-under-a-file",
     ["neighbours", "--checkpoints", "{ckpt}", "--beton-dir", "{data}", "--out", "{base}/a_file/grid.png"],
     1, "a_file is a file"),
    ("neighbours-out-is-a-folder", ["neighbours", "--checkpoints", "{ckpt}", "--beton-dir", "{data}", "--out",
                                    "{base}"], 1, "is a folder"),
    ("bench-loader-workdir-is-a-file", ["bench", "loader", "--workdir", "{base}/a_file"], 1, "not a folder"),
    ("bench-train-not-a-beton", ["bench", "train", "--beton", "{base}/not.beton", "--device", "cpu"], 1, "not.beton"),
    ("bench-train-missing-beton", ["bench", "train", "--beton", "{base}/missing.beton", "--device", "cpu"], 1,
     "missing.beton"),
    ("imagenet-cls-batch-above-train-images",
     ["imagenet-cls", "--checkpoint", "{ckpt}", "--beton-dir", "{data}", "--batch-size", "64", "--device", "cpu"],
     2, "--batch-size 64 is more than the 6 train images"),
    ("imagenet-cls-negative-lr", ["imagenet-cls", "--checkpoint", "{ckpt}", "--beton-dir", "{data}", "--lr", "-0.1"],
     2, "--lr"),
    ("imagenet-cls-momentum", ["imagenet-cls", "--checkpoint", "{ckpt}", "--beton-dir", "{data}", "--momentum", "-1"],
     2, "--momentum"),
    ("imagenet-cls-weight-decay", ["imagenet-cls", "--checkpoint", "{ckpt}", "--beton-dir", "{data}",
                                   "--weight-decay", "-1"], 2, "--weight-decay"),
    ("imagenet-cls-max-iters", ["imagenet-cls", "--checkpoint", "{ckpt}", "--beton-dir", "{data}",
                                "--max-iters", "-1"], 2, "--max-iters"),
    *[(f"{cmd}-num-workers-negative", [cmd, *extra, "--beton-dir", "{data}", "--num-workers", "-1"], 2,
       "--num-workers must be >= 1") for cmd, extra in ANALYSIS.items()],
    *[(f"{cmd}-missing-beton-dir", [cmd, *extra, "--beton-dir", "{base}/nowhere", "--device", "cpu"], 1,
       "nowhere/train.beton does not exist" if cmd != "coarse-fine" else "nowhere/val.beton does not exist")
      for cmd, extra in ANALYSIS.items()],
    ("induction-bad-device", ["induction", "--checkpoint", "{ckpt}", "--labelset", "full", "--beton-dir", "{data}",
                              "--device", "tpu"], 2, "--device 'tpu'"),
    ("synth-out-is-a-file", ["synth", "imagenet", "{base}/a_file"], 1, "a_file: exists and is not a folder"),
    ("synth-out-under-a-file", ["synth", "sun", "{base}/a_file/sun"], 1, "a_file is a file"),
]


@pytest.mark.parametrize("argv, status, text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_misuse_is_one_line_with_the_right_status(tiny_compiled, capsys, argv, status, text):
    base = tiny_compiled
    argv = [a.format(base=base, data=base / "data", ckpt=base / "full" / "last.pt") for a in argv]
    assert main(argv) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fastload {argv[0]}: error: "), err
    assert text in err[0]


def test_demo_help_lists_its_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for flag in ("--out", "--data", "--plan", "--launcher"):
        assert flag in printed


def test_demo_arguments_reach_run_demo(monkeypatch, tmp_path):
    import fastload.demo
    calls = []
    monkeypatch.setattr(fastload.demo, "run_demo", lambda out, **kw: calls.append((out, kw)))
    assert main(["demo", "--out", str(tmp_path / "d"), "--plan", "demo", "--launcher", "local"]) == 0
    (out, kw), = calls
    assert out == str(tmp_path / "d") and kw["plan"] == "demo" and kw["launcher"] == "local" and kw["data"] is None
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--launcher", "cloud"])
    assert exit_info.value.code == 2 and not calls[1:]


def test_synth_sun_background_reaches_write_sun(monkeypatch, tmp_path, capsys):
    import fastload.synth.sun
    calls = []

    def fake_write_sun(*args, **kwargs):
        calls.append(kwargs)
        return {"classes": 2, "train": 2, "test": 2, "seconds": 0.0}
    monkeypatch.setattr(fastload.synth.sun, "write_sun", fake_write_sun)
    assert main(["synth", "sun", str(tmp_path / "s"), "--background", "random"]) == 0
    assert main(["synth", "sun", str(tmp_path / "t")]) == 0
    assert [c["background"] for c in calls] == ["random", "scene"]
