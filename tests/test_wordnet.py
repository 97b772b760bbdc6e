import os

import pytest

from fastload.errors import FastloadError
from fastload.resources import imagenet_wnids
from fastload.wordnet import LEXNAMES, default_tree, lexnames_text, wnid_of


@pytest.fixture(scope="module")
def tree():
    return default_tree()


def test_lexnames_has_the_45_standard_files():
    lines = lexnames_text().splitlines()
    assert len(LEXNAMES) == 45 and len(lines) == 45
    assert lines[3] == "03\tnoun.Tops\t1" and lines[44] == "44\tadj.ppl\t3"


def test_parent_is_the_hypernym_whose_name_sorts_first(tree):
    checked = 0
    for wnid in imagenet_wnids():
        s = tree.synset(wnid)
        hypers = s.hypernyms()
        if len(hypers) > 1:
            expected = min(h.name() for h in hypers)
            assert tree.name(tree.parent(wnid)) == expected
            checked += 1
    assert checked > 10  # ImageNet has many classes with several hypernyms


def test_every_class_climbs_to_entity_and_depth_counts_steps(tree):
    root = tree.wnid_of_name("entity.n.01")
    for wnid in imagenet_wnids():
        chain = tree.path_to_root(wnid)
        assert chain[-1] == root
        assert tree.depth(wnid) == len(chain) - 1
        assert tree.depth(tree.parent(wnid)) == tree.depth(wnid) - 1
    assert tree.depth(root) == 0 and tree.parent(root) is None


def test_known_chain(tree):
    chihuahua = "n02085620"
    names = [tree.name(w) for w in tree.path_to_root(chihuahua)]
    assert names[:4] == ["chihuahua.n.03", "toy_dog.n.01", "dog.n.01", "canine.n.02"]
    assert tree.ancestor_at_depth(chihuahua, 4) == tree.path_to_root(chihuahua)[-5]


def test_wnid_round_trip(tree):
    assert tree.wnid_of_name("dog.n.01") == "n02084071"
    assert wnid_of(tree.synset("n02084071")) == "n02084071"


@pytest.mark.parametrize("bad", ["n99999999", "dog", "x02084071", "n0208407"])
def test_unknown_wnid_is_a_clear_error(tree, bad):
    with pytest.raises(FastloadError, match=bad):
        tree.synset(bad)


def test_missing_wordnet_names_the_packages(cli, tmp_path):
    env = {"FASTLOAD_WORDNET_DIR": str(tmp_path / "no-wordnet"), "FASTLOAD_CACHE": str(tmp_path / "cache")}
    proc = cli("wordnet", "info", env=env)
    assert proc.returncode == 1
    assert "wordnet-base" in proc.stderr and "Traceback" not in proc.stderr


def test_staging_system_wordnet_into_a_fresh_cache(cli, tmp_path):
    if not os.path.isfile("/usr/share/wordnet/data.noun"):
        pytest.skip("system WordNet (wordnet-base) not installed")
    env = {"FASTLOAD_WORDNET_DIR": "/usr/share/wordnet", "FASTLOAD_CACHE": str(tmp_path / "cache")}
    proc = cli("wordnet", "info", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "system WordNet /usr/share/wordnet" in proc.stdout
    staged = tmp_path / "cache" / "nltk_data" / "corpora" / "wordnet"
    assert (staged / "lexnames").read_text() == lexnames_text()
    assert not any(p.is_symlink() for p in staged.iterdir())
    proc = cli("wordnet", "path", "n02085620", env=env)
    assert proc.returncode == 0 and "entity.n.01" in proc.stdout
