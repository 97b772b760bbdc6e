"""`fastload bench loader` end to end on a few tiny JPEGs (seconds), and the benchmarks' keyword functions."""
import pytest

from fastload.cli import main


def test_bench_loader_command_times_both_loaders(tmp_path, capsys):
    work = tmp_path / "work"
    argv = ["bench", "loader", "--images", "16", "--classes", "2", "--width", "48", "--height", "40",
            "--batch-size", "8", "--resolution", "32", "--num-workers", "1", "--epochs", "1", "--workdir", str(work)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "compiled 16 JPEGs" in printed and "ratio:" in printed
    for name in ("fastload (FFCV beton", "torchvision ImageFolder"):
        line = next(line for line in printed.splitlines() if name in line)
        assert float(line.split(":")[1].split()[0]) > 0  # images/s
    assert len(list((work / "jpegs" / "train").rglob("*.JPEG"))) == 16 and (work / "compiled" / "train.beton").is_file()
    assert main(argv) == 0  # the kept workdir is reused: no new JPEGs, no recompile
    assert "compiled" not in capsys.readouterr().out


def test_bench_loader_function_refuses_a_batch_above_the_images():
    from fastload.benchmarks.loader import bench_loader
    from fastload.errors import UsageError
    with pytest.raises(UsageError, match="--images >= --batch-size"):
        bench_loader(images=4, batch_size=8)
