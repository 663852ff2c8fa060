"""Raw text: the tokenizer rules, texts_to_sequences, load_aclimdb, downloads, and classifying
strings with a trained model."""

import hashlib
import io
import os
import tarfile

import numpy as np
import pytest

import imdbfast
from imdbfast.datasets import imdb

from conftest import data_dir

WI = {"the": 1, "movie": 2, "great": 3, "it's": 4, "itÕs": 5, "br": 6, "bad": 7, "é": 8}


def test_tokenizer_rules():
    # ASCII letters lower-cased only; ASCII punctuation except ' and ASCII whitespace separate
    # words; unknown words are dropped; the encoding is load_data's.
    x = imdb.texts_to_sequences(["The MOVIE, great!", "It's itÕs ItÕs\tbr<br />bad", "É é unknown"],
                                WI)
    assert x[0] == [1, 4, 5, 6]
    assert x[1] == [1, 7, 8, 8, 9, 9, 10]  # "ItÕs" -> "itÕs": Õ is not ASCII, kept as is
    assert x[2] == [1, 11]  # "É" is not lower-cased, so it is not "é"
    assert isinstance(x, imdbfast.Sequences) and x.encoding["index_from"] == 3


def test_encoding_arguments():
    texts = ["the movie great bad the"]
    assert imdb.texts_to_sequences(texts, WI, num_words=7)[0] == [1, 4, 5, 6, 2, 4]
    assert imdb.texts_to_sequences(texts, WI, num_words=7, oov_char=None)[0] == [1, 4, 5, 6, 4]
    assert imdb.texts_to_sequences(texts, WI, start_char=None, index_from=0)[0] == [1, 2, 3, 7, 1]
    assert imdb.texts_to_sequences(texts, WI, skip_top=5)[0] == [2, 2, 5, 6, 10, 2]
    assert imdb.texts_to_sequences([""], WI)[0] == [1]
    assert len(imdb.texts_to_sequences([], WI)) == 0
    many = ["great movie " * (i % 7) for i in range(5000)]  # several threads, same answer
    a = imdb.texts_to_sequences(many, WI, threads=1)
    assert a.equals(imdb.texts_to_sequences(many, WI, threads=2))
    with pytest.raises(TypeError, match="single string"):
        imdb.texts_to_sequences("the movie", WI)
    with pytest.raises(TypeError, match="element 1"):
        imdb.texts_to_sequences(["ok", 3], WI)
    with pytest.raises(TypeError, match="word_index"):
        imdb.texts_to_sequences(["ok"], {"a": "b"})
    with pytest.raises(ValueError, match="num_words"):
        imdb.texts_to_sequences(["ok"], WI, num_words=-2)


def make_acl(root, split="train", files=None):
    files = files or {"pos": {"10_9.txt": "great movie", "2_7.txt": "The Great"},
                      "neg": {"1_1.txt": "bad bad movie", "0_3.txt": "the   bad"}}
    for sub, entries in files.items():
        (root / "aclImdb" / split / sub).mkdir(parents=True, exist_ok=True)
        for name, text in entries.items():
            (root / "aclImdb" / split / sub / name).write_text(text, encoding="utf-8")
    return root


def test_load_aclimdb_folder_and_archive(tmp_path):
    make_acl(tmp_path)
    x, labels, ratings = imdb.load_aclimdb(tmp_path, "train", WI)
    # pos first then neg, file names in lexical order ("10_9" < "2_7", "0_3" < "1_1").
    assert list(x) == [[1, 6, 5], [1, 4, 6], [1, 4, 10], [1, 10, 10, 5]]
    assert labels.tolist() == [1, 1, 0, 0] and ratings.tolist() == [9, 7, 3, 1]
    again = imdb.load_aclimdb(tmp_path / "aclImdb", "train", WI)[0]  # the aclImdb folder itself
    assert again.equals(x)
    archive = tmp_path / "acl.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "aclImdb", arcname="aclImdb")
    from_tar = imdb.load_aclimdb(archive, "train", WI, num_words=8)
    assert list(from_tar[0]) == [[1, 6, 5], [1, 4, 6], [1, 4, 2], [1, 2, 2, 5]]


@pytest.mark.parametrize("fmt, mode", [(tarfile.USTAR_FORMAT, "w:gz"), (tarfile.GNU_FORMAT, "w:gz"),
                                       (tarfile.PAX_FORMAT, "w:gz"), (tarfile.PAX_FORMAT, "w:bz2"),
                                       (tarfile.PAX_FORMAT, "w:xz"), (tarfile.GNU_FORMAT, "w")])
def test_archives_of_every_tar_format_read_as_the_folder(tmp_path, fmt, mode):
    # gzip'd ustar/GNU tars take the direct header walk; pax per-file headers (here: a long,
    # non-ASCII folder name) and other compressions fall back to tarfile. All read alike.
    root = make_acl(tmp_path / "src")
    for split in ("train", "test"):
        make_acl(tmp_path / "src", split=split)
    deep = "d" * 120 + "é"
    archive = tmp_path / "acl.tar"
    with tarfile.open(archive, mode, format=fmt) as tar:
        tar.add(root / "aclImdb", arcname=f"{deep}/aclImdb")
    want = imdb.read_aclimdb_splits(root)
    got = imdb.read_aclimdb_splits(archive)
    for w, g in zip(want, got):
        assert w[0] == g[0] and w[1].tolist() == g[1].tolist() and w[2].tolist() == g[2].tolist()
    assert imdb.read_aclimdb(archive, "test")[0] == want[1][0]


def test_the_archive_stream_skips_unsup_and_reads_multi_member_gzip(tmp_path):
    root = make_acl(tmp_path / "src")
    make_acl(tmp_path / "src", split="test")
    make_acl(tmp_path / "src", files={"unsup": {"0_0.txt": "unlabelled " * 1000}})
    import gzip
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(root / "aclImdb", arcname="aclImdb")
    raw = buf.getvalue()
    # two gzip members (as `cat a.gz b.gz` makes), cut mid-tar-block
    (tmp_path / "two.tar.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    train, test = imdb.read_aclimdb_splits(tmp_path / "two.tar.gz")
    want = imdb.read_aclimdb_splits(root)
    assert train[0] == want[0][0] and test[0] == want[1][0]
    assert not any("unlabelled" in t for t in train[0])
    # zero padding after the last member (as some writers leave it): read as tarfile reads it
    (tmp_path / "pad.tar.gz").write_bytes(gzip.compress(raw) + b"\0" * 700)
    assert imdb.read_aclimdb_splits(tmp_path / "pad.tar.gz")[0][0] == want[0][0]


def test_a_truncated_or_corrupt_archive_is_refused(tmp_path):
    root = make_acl(tmp_path / "src")
    archive = tmp_path / "acl.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "aclImdb", arcname="aclImdb")
    data = archive.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable aclImdb archive"):
        imdb.read_aclimdb(tmp_path / "cut.tar.gz")
    import gzip

    raw = gzip.decompress(data)
    # a header whose size runs past the end
    bad = bytearray(raw)
    bad[124:136] = b"77777777777\0"
    (tmp_path / "long.tar.gz").write_bytes(gzip.compress(bytes(bad)))
    with pytest.raises(ValueError, match="not a readable aclImdb archive"):
        imdb.read_aclimdb(tmp_path / "long.tar.gz")


@pytest.mark.parametrize("setup, exc, match", [
    (lambda p: None, FileNotFoundError, "no aclImdb"),
    (lambda p: make_acl(p, files={"pos": {"x.txt": "a"}, "neg": {"1_1.txt": "b"}}), ValueError, "<id>_<rating>"),
    (lambda p: (make_acl(p), (p / "aclImdb" / "train" / "pos" / "3_8.txt").write_bytes(b"\xff\xfe")),
     ValueError, "UTF-8"),
])
def test_load_aclimdb_errors(tmp_path, setup, exc, match):
    setup(tmp_path)
    with pytest.raises(exc, match=match):
        imdb.load_aclimdb(tmp_path, "train", WI)


def test_load_aclimdb_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        imdb.load_aclimdb(tmp_path, "validation", WI)
    with pytest.raises(FileNotFoundError, match="no such"):
        imdb.load_aclimdb(tmp_path / "missing", "train", WI)
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not a readable aclImdb archive"):
        imdb.load_aclimdb(tmp_path / "junk.tar.gz", "train", WI)


def test_download_checks_the_hash_and_is_atomic(tmp_path):
    src = tmp_path / "remote.bin"
    src.write_bytes(b"x" * 3000)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "file.bin"
    log = io.StringIO()
    imdb.download(src.as_uri(), dest, "sha256", good, progress=log)
    assert dest.read_bytes() == src.read_bytes() and "Downloading data from" in log.getvalue()
    bad = tmp_path / "cache" / "bad.bin"
    with pytest.raises(ValueError, match="expected"):
        imdb.download(src.as_uri(), bad, "sha256", "0" * 64, progress=io.StringIO())
    with pytest.raises(OSError):
        imdb.download((tmp_path / "absent").as_uri(), bad, "sha256", good, progress=io.StringIO())
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["file.bin"]  # no half files


def test_load_data_downloads_when_no_file_is_found(tmp_path, monkeypatch, rng):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    a = np.empty(2, dtype=object)
    a[:] = [[1, 2], [3]]
    np.savez(mirror / "imdb.npz", x_train=a, y_train=np.array([1, 0]), x_test=a, y_test=np.array([0, 1]))
    digest = hashlib.sha256((mirror / "imdb.npz").read_bytes()).hexdigest()
    monkeypatch.setitem(imdb.KNOWN_FILES, "imdb.npz", ("sha256", digest))
    monkeypatch.setenv("IMDBFAST_ORIGIN", mirror.as_uri())
    monkeypatch.setenv("IMDBFAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("IMDBFAST_DATA", raising=False)
    monkeypatch.delenv("IMDBFAST_OFFLINE", raising=False)
    (x, y), _ = imdb.load_data()
    assert len(x) == 2 and (tmp_path / "cache" / "imdb.npz").is_file()
    monkeypatch.setitem(imdb.KNOWN_FILES, "imdb.npz", ("sha256", "0" * 64))
    (tmp_path / "cache" / "imdb.npz").unlink()
    with pytest.raises(FileNotFoundError, match="Downloading .* failed"):
        imdb.load_data()
    monkeypatch.setenv("IMDBFAST_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="IMDBFAST_DATA"):
        imdb.load_data()


def test_model_classifies_raw_text(tmp_path, monkeypatch):
    texts = ["great great movie", "bad movie bad", "the great the", "bad the bad"] * 50
    labels = np.array([1, 0, 1, 0] * 50)
    x = imdb.texts_to_sequences(texts, WI, num_words=12)
    m = imdbfast.fit(x, labels, input_dim=12, epochs=60, batch_size=20, seed=0, verbose=0,
                     optimizer=imdbfast.optimizers.RMSprop(learning_rate=0.01))
    assert m.text_encoding["num_words"] == 12
    p = m.predict_texts(["GREAT movie!", "bad, bad."], WI).ravel()
    assert p[0] > 0.8 and p[1] < 0.2
    m.word_index = WI
    m.save(tmp_path / "m.npz")
    r = imdbfast.load_model(tmp_path / "m.npz")  # the word index travelled with the model
    np.testing.assert_array_equal(r.predict_texts(["GREAT movie!", "bad, bad."]).ravel(), p)


@pytest.mark.realdata
def test_raw_corpus_matches_the_npz():
    d = data_dir()
    if d is None or not (d / "aclImdb_v1.tar.gz").is_file():
        pytest.skip("real IMDB data not found: set IMDBFAST_DATA to the folder holding aclImdb_v1.tar.gz")
    wi = imdb.get_word_index(str(d / "imdb_word_index.json"))
    x, labels, ratings = imdb.load_aclimdb(d / "aclImdb_v1.tar.gz", "test", wi, num_words=10000)
    with np.load(d / "imdb.npz", allow_pickle=True) as f:
        raw, y = f["x_test"], f["y_test"]
    assert len(x) == 25000 and np.array_equal(labels, y)
    assert set(ratings[labels == 1]) <= set(range(7, 11)) and set(ratings[labels == 0]) <= set(range(1, 5))
    for i in range(0, 25000, 97):  # every 97th review, against load_data's encoding of the npz
        assert x[i] == [1] + [w + 3 if w + 3 < 10000 else 2 for w in raw[i]]
