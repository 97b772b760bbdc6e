"""What every layout reader needs: a required file (an error naming it and what the layout needs), the numbered
lines of a list file, a one-line error naming file and line, and MATLAB files read with scipy."""
from pathlib import Path

from ..errors import DataError


def need_file(root, relative: str, needs: str) -> Path:
    """ROOT/relative, which must be a file; the error says what the layout's folder must hold."""
    path = Path(root) / relative
    if not path.is_file():
        raise DataError(f"{path} does not exist: the folder must hold {needs}")
    return path


def need_dir(root, relative: str, needs: str) -> Path:
    path = Path(root) / relative
    if not path.is_dir():
        raise DataError(f"{path} is not a folder: the folder must hold {needs}")
    return path


def numbered_lines(path, comment: str = None) -> list:
    """[(line number, stripped text)] of the non-blank lines of `path` (and not starting with `comment`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not (comment and line.startswith(comment)):
            out.append((number, line))
    return out


def line_error(path, number: int, why: str) -> DataError:
    """The one-line error of a bad line of a list file."""
    return DataError(f"{path}:{number}: {why}")


def parse_int(path, number: int, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise line_error(path, number, f"{what} {text!r} is not an integer") from None


def load_mat(path, keys) -> dict:
    """The arrays `keys` of the MATLAB file `path` (scipy.io.loadmat); errors name the file and a missing key."""
    import scipy.io
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError... on a damaged file
        raise DataError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from None
    missing = [k for k in keys if k not in mat]
    if missing:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: no variable {missing[0]!r} (it holds {', '.join(present) or 'nothing'})")
    return {k: mat[k] for k in keys}


def check_images_exist(root, samples, listed_in) -> None:
    """Every sample's image file exists under `root`: the error names the first missing one and its list file."""
    root = Path(root)
    for s in samples:
        if not (root / s.path).is_file():
            raise DataError(f"{root / s.path} does not exist (listed in {listed_in})")


def parse_flag(layout: str, key: str, value) -> bool:
    """A true/false layout option (given as text by `--option key=value`); anything else is a UsageError."""
    from ..errors import UsageError
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise UsageError(f"{layout} option {key}={value}: choose true or false")
    return text == "true"
