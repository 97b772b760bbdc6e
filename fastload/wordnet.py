"""The WordNet engine: WordNet 3.0 through NLTK's reader, and the single-parent tree the label sets climb.

Source of the corpus, in order: the user's nltk_data `wordnet` corpus; else the system's WordNet files
(Debian's `wordnet-base`, in /usr/share/wordnet) staged into fastload's cache as an NLTK corpus folder. The
staging copies the files (NLTK refuses corpus roots outside its data paths and links that leave the root) and
adds the `lexnames` file NLTK's reader needs, which Debian does not ship.

The tree: the parent of a synset is its hypernym whose synset name sorts first. That is the order NLTK returned
when the paper's label sets were made; today's NLTK returns hypernyms in a set's order, which changes with
PYTHONHASHSEED, so `hypernyms()[0]` is never used as is. Depth is the number of steps to the root (`entity`).
"""
import functools
import warnings
import os
import shutil
from pathlib import Path

from .errors import FastloadError
from .files import publish_folder, staged_folder
from .resources import cache_dir

SYSTEM_WORDNET_DIRS = ["/usr/share/wordnet", "/usr/local/WordNet-3.0/dict", "/usr/share/WordNet-3.0/dict"]
SYSTEM_PACKAGES_HINT = "apt-get install wordnet-base wordnet-sense-index (or: python -m nltk.downloader wordnet)"

# The 45 lexicographer files of WordNet 3.0, as listed in lexnames(5WN): number, name, syntactic category.
LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body
noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive
noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation
noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication
verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception
verb.possession verb.social verb.stative verb.weather adj.ppl""".split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
# What NLTK's WordNetCorpusReader opens; index.sense is optional (sense keys).
_CORPUS_FILES = [f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")] + [
    f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")]
_OPTIONAL_FILES = ["index.sense", "cntlist.rev"]


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def stage_system_wordnet(system_dir, nltk_root) -> Path:
    """Copy a system WordNet dict folder into `nltk_root/corpora/wordnet` (atomically) and add `lexnames`."""
    system_dir, nltk_root = Path(system_dir), Path(nltk_root)
    target = nltk_root / "corpora" / "wordnet"
    if (target / "lexnames").is_file():
        return target
    missing = [f for f in _CORPUS_FILES if not (system_dir / f).is_file()]
    if missing:
        raise FastloadError(f"WordNet folder {system_dir} lacks {', '.join(missing)}; install: {SYSTEM_PACKAGES_HINT}")
    with staged_folder(target) as tmp:
        for name in _CORPUS_FILES + _OPTIONAL_FILES:
            if (system_dir / name).is_file():
                shutil.copyfile(system_dir / name, tmp / name)
        (tmp / "lexnames").write_text(lexnames_text())
        try:
            publish_folder(tmp, target)
        except OSError:  # another process staged it first: its copy is kept, ours removed
            pass
    return target


def _system_wordnet_dir():
    forced = os.environ.get("FASTLOAD_WORDNET_DIR")
    for d in [forced] if forced else SYSTEM_WORDNET_DIRS:
        if Path(d, "data.noun").is_file():
            return Path(d)
    return None


@functools.lru_cache(maxsize=None)
def load_wordnet():
    """NLTK's WordNet reader and a line saying where the corpus came from.

    $FASTLOAD_WORDNET_DIR names a system-style dict folder to use instead of the usual places; setting it to a
    folder without WordNet (tests do) gives the missing-WordNet error.
    """
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as e:
        raise FastloadError("NLTK is not installed: run ./setup.sh (or pip install nltk)") from e
    forced = os.environ.get("FASTLOAD_WORDNET_DIR")
    if not forced:
        try:
            root = nltk.data.find("corpora/wordnet")
            return _reader(WordNetCorpusReader, root), f"nltk_data corpus at {root}"
        except LookupError:
            pass
    system_dir = _system_wordnet_dir()
    if system_dir is None:
        where = forced or ", ".join(SYSTEM_WORDNET_DIRS)
        raise FastloadError(f"WordNet 3.0 not found (looked in nltk_data and {where}); install it: {SYSTEM_PACKAGES_HINT}")
    nltk_root = cache_dir() / "nltk_data"
    stage_system_wordnet(system_dir, nltk_root)
    if str(nltk_root) not in nltk.data.path:
        nltk.data.path.insert(0, str(nltk_root))
    root = nltk.data.find("corpora/wordnet", paths=[str(nltk_root)])
    return _reader(WordNetCorpusReader, root), f"system WordNet {system_dir}, staged at {nltk_root / 'corpora' / 'wordnet'}"


def _reader(reader_class, root):
    with warnings.catch_warnings():  # "multilingual functions are not available": we use none
        warnings.simplefilter("ignore")
        return reader_class(root, None)


def wordnet_source() -> str:
    return load_wordnet()[1]


def wnid_of(synset) -> str:
    return f"{synset.pos()}{synset.offset():08d}"


class WordNetTree:
    """The single-parent tree over WordNet noun synsets, addressed by wnid (e.g. 'n02084071').

    Lazily resolves and memoises each synset it meets, so a tree over 1000 or 21k classes costs only the
    synsets on their paths to the root.
    """

    def __init__(self, reader=None):
        self.wn = reader if reader is not None else load_wordnet()[0]
        self._parent = {}
        self._depth = {}
        self._synset = {}

    def synset(self, wnid: str):
        s = self._synset.get(wnid)
        if s is None:
            if not (isinstance(wnid, str) and len(wnid) == 9 and wnid[0] in "nvar" and wnid[1:].isdigit()):
                raise FastloadError(f"'{wnid}' is not a WordNet id (expected a letter and 8 digits, e.g. n02084071)")
            try:
                s = self.wn.synset_from_pos_and_offset(wnid[0], int(wnid[1:]))
            except Exception as e:
                raise FastloadError(f"unknown WordNet id '{wnid}': no synset at that offset in WordNet 3.0") from e
            if s is None:
                raise FastloadError(f"unknown WordNet id '{wnid}': no synset at that offset in WordNet 3.0")
            self._synset[wnid] = s
        return s

    def wnid_of_name(self, name: str) -> str:
        """'dog.n.01' -> 'n02084071'."""
        try:
            s = self.wn.synset(name)
        except Exception as e:
            raise FastloadError(f"unknown WordNet synset name '{name}'") from e
        wnid = wnid_of(s)
        self._synset.setdefault(wnid, s)
        return wnid

    def name(self, wnid: str) -> str:
        """The synset name, e.g. 'dog.n.01'."""
        return self.synset(wnid).name()

    def lemma(self, wnid: str) -> str:
        """A readable name: the first lemma with spaces."""
        return self.synset(wnid).lemma_names()[0].replace("_", " ")

    def parent(self, wnid: str):
        """The hypernym whose synset name sorts first; None at the root."""
        if wnid not in self._parent:
            s = self.synset(wnid)
            hypers = s.hypernyms() or s.instance_hypernyms()
            if hypers:
                p = sorted(hypers, key=lambda h: h.name())[0]
                pid = wnid_of(p)
                self._synset.setdefault(pid, p)
                self._parent[wnid] = pid
            else:
                self._parent[wnid] = None
        return self._parent[wnid]

    def depth(self, wnid: str) -> int:
        """Steps from the root along the tree (the root has depth 0)."""
        d = self._depth.get(wnid)
        if d is None:
            chain = self.path_to_root(wnid)
            for i, node in enumerate(reversed(chain)):
                self._depth[node] = i
            d = self._depth[wnid]
        return d

    def path_to_root(self, wnid: str) -> list:
        """[wnid, parent, grandparent, ..., root]."""
        chain = [wnid]
        while True:
            p = self.parent(chain[-1])
            if p is None:
                return chain
            if p in chain:
                raise FastloadError(f"WordNet tree has a cycle at {p}")  # never in WordNet 3.0; guards bad data
            chain.append(p)

    def ancestor_at_depth(self, wnid: str, depth: int) -> str:
        """The ancestor at `depth` on the tree path (the synset itself when it is not deeper than that)."""
        chain = self.path_to_root(wnid)
        d = len(chain) - 1
        return chain[d - depth] if d >= depth else wnid

    def all_hypernyms(self, wnid: str) -> set:
        """Every ancestor on any hypernym path (instance hypernyms included), as wnids."""
        s = self.synset(wnid)
        seen = set()
        stack = [s]
        while stack:
            cur = stack.pop()
            for h in cur.hypernyms() + cur.instance_hypernyms():
                hid = wnid_of(h)
                if hid not in seen:
                    seen.add(hid)
                    stack.append(h)
        return seen


@functools.lru_cache(maxsize=None)
def default_tree() -> WordNetTree:
    return WordNetTree()
