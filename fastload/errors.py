"""The two kinds of failure fastload reports without a traceback."""


class FastloadError(Exception):
    """Bad input or a missing dependency: the message names the file, argument or package. Exit status 1."""


class UsageError(FastloadError):
    """A bad command-line argument: one line, exit status 2 (as argparse does)."""


class DataError(FastloadError):
    """Malformed dataset files (a listing, a partition file): one line naming the file and line. Exit status 1."""
