"""`orchestrator verify` holds to RFC 8493 for any bag (issue #17, item 5): bags made by the PyPI `bagit`
library and by hand, in every algorithm and encoding the RFC allows, are valid; each way of breaking one
is refused with its reason; and no bytes in a bag's files ever give an internal error."""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import bagit
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from orchestrator_monitor.archive.verify import verify_bag

ODD_NAMES = {"a.txt": b"hello", "sub/we%ird\nna\rme": b"x" * 1000, "sub/ b c ": b"", "sub/%0A.txt": b"literal"}
# bagit-python writes a `%` as itself (RFC 8493 encodes it as %25), so its bags get no name with one.
BAGIT_NAMES = {"a.txt": b"hello", "sub/we ird\nna\rme": b"x" * 1000, "sub/ b c ": b""}


def bagit_bag(root: Path, algorithms: list[str], files: dict[str, bytes] = BAGIT_NAMES) -> Path:
    """A bag made by bagit-python (not our code) from `files`."""
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    logging.getLogger("bagit").setLevel(logging.ERROR)
    bagit.make_bag(str(root), {"Contact-Name": "Zoë"}, checksums=algorithms)
    return root


def quote(path: str) -> str:
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def hand_bag(
    root: Path,
    files: dict[str, bytes] = ODD_NAMES,
    *,
    algorithms: tuple[str, ...] = ("sha256",),
    encoding: str = "UTF-8",
    prefix: str = "",
    info: bool = True,
) -> Path:
    """A bag written here byte by byte: tag files in `encoding`, manifest paths starting with `prefix`."""
    for name, data in files.items():
        (root / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / name).write_bytes(data)
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "bagit.txt").write_bytes(f"BagIt-Version: 1.0\r\nTag-File-Character-Encoding: {encoding}\r\n".encode())
    tags = ["bagit.txt"]
    for algorithm in algorithms:
        lines = "".join(f"{hashlib.new(algorithm, d).hexdigest()} {prefix}data/{quote(n)}\n" for n, d in files.items())
        (root / f"manifest-{algorithm}.txt").write_bytes(lines.encode(encoding))
        tags.append(f"manifest-{algorithm}.txt")
    if info:
        oxum = f"{sum(map(len, files.values()))}.{len(files)}"
        text = f"Payload-Oxum: {oxum}\nExternal-Description: a long value\n  on two lines\n"
        (root / "bag-info.txt").write_bytes(text.encode(encoding))
        tags.append("bag-info.txt")
    for algorithm in algorithms:
        lines = "".join(f"{hashlib.new(algorithm, (root / t).read_bytes()).hexdigest()}\t{t}\n" for t in tags)
        (root / f"tagmanifest-{algorithm}.txt").write_bytes(lines.encode(encoding))
    return root


def assert_valid(cli, bag: Path, payload_files: int) -> None:
    result = cli("verify", "--path", str(bag))
    assert (result.code, result.err) == (0, "")
    assert f"valid ({payload_files} payload files" in result.out


def assert_refused(cli, bag: Path, reason: str) -> None:
    result = cli("verify", "--path", str(bag))
    assert result.code == 1, result.out
    assert reason in result.err and "internal error" not in result.err


@pytest.mark.parametrize("algorithms", [["md5"], ["sha1"], ["sha512"], ["md5", "sha1", "sha224", "sha256", "sha512"]])
def test_bags_of_the_bagit_library_are_valid_in_every_algorithm(tmp_path: Path, cli, algorithms: list[str]) -> None:
    bag = bagit_bag(tmp_path / "bag", algorithms)
    assert_valid(cli, bag, len(BAGIT_NAMES))
    (bag / "data/a.txt").write_bytes(b"hellO")
    result = cli("verify", "--path", str(bag))
    assert result.code == 1
    for algorithm in algorithms:  # each manifest is checked, not only the first
        assert f"data/a.txt: checksum mismatch (manifest-{algorithm}.txt" in result.err


def test_verify_run_accepts_a_bag_with_only_a_sha512_manifest(workspace: Path, cli) -> None:
    bagit_bag(workspace / ".archive" / "foreign", ["sha512"])
    result = cli("verify", "--run", "foreign", "--workspace", str(workspace))
    assert result.code == 0 and "valid (3 payload files" in result.out


def test_tag_files_in_utf16_as_bagit_txt_declares(tmp_path: Path, cli) -> None:
    bag = hand_bag(tmp_path / "bag", encoding="UTF-16", algorithms=("sha256", "md5"))
    assert (bag / "manifest-sha256.txt").read_bytes().startswith(codecs.BOM_UTF16)
    assert_valid(cli, bag, len(ODD_NAMES))
    (bag / "data/sub/ b c ").write_bytes(b"!")
    assert_refused(cli, bag, "data/sub/ b c : checksum mismatch (manifest-md5.txt")


def test_dot_slash_and_percent_encoded_paths_name_the_files_on_disk(tmp_path: Path, cli) -> None:
    bag = hand_bag(tmp_path / "bag", prefix="./")
    assert "./data/sub/we%25ird%0Ana%0Dme" in (bag / "manifest-sha256.txt").read_text()
    assert_valid(cli, bag, len(ODD_NAMES))


def test_a_bag_without_bag_info_is_valid(tmp_path: Path, cli) -> None:
    assert_valid(cli, hand_bag(tmp_path / "bag", info=False), len(ODD_NAMES))


def test_a_bag_inside_the_payload_is_payload(tmp_path: Path, cli) -> None:
    outer = tmp_path / "outer"
    bagit_bag(outer / "inner", ["md5"])
    bagit_bag(outer, ["sha256"], {"top.txt": b"top"})
    assert (outer / "data/inner/bagit.txt").is_file()
    assert_valid(cli, outer, 1 + len(BAGIT_NAMES) + 4)  # the inner bag's data and its 4 tag files, plus top.txt
    (outer / "data/inner/data/a.txt").write_bytes(b"changed")
    assert_refused(cli, outer, "data/inner/data/a.txt: checksum mismatch")


def _replace(name: str, old: bytes, new: bytes):
    def change(bag: Path) -> None:
        path = bag / name
        assert old in path.read_bytes()
        path.write_bytes(path.read_bytes().replace(old, new, 1))

    return change


def _append(name: str, line: str):
    def change(bag: Path) -> None:
        with (bag / name).open("a", encoding="utf-8") as handle:
            handle.write(line)

    return change


def _swap_for_link(bag: Path) -> None:
    (bag / "outside.txt").write_bytes(b"hello")
    (bag / "data/a.txt").unlink()
    (bag / "data/a.txt").symlink_to(bag / "outside.txt")


A_DIGEST = hashlib.sha256(b"hello").hexdigest()
REFUSALS = {
    "space before the colon": (_replace("bagit.txt", b"BagIt-Version:", b"BagIt-Version :"), "bagit.txt: line 1"),
    "no space after the colon": (_replace("bagit.txt", b"Version: ", b"Version:"), "not 'Label: value'"),
    "byte-order mark": (_replace("bagit.txt", b"BagIt", codecs.BOM_UTF8 + b"BagIt"), "byte-order mark"),
    "version not M.N": (_replace("bagit.txt", b"1.0", b"one"), "BagIt-Version 'one' is not M.N"),
    "unknown version": (_replace("bagit.txt", b"1.0", b"2.0"), "BagIt-Version 2.0 is not one"),
    "no encoding line": (_replace("bagit.txt", b"Tag-File-Character-Encoding: UTF-8\r\n", b""), "1 lines, not the 2"),
    "lines swapped": (
        _replace(
            "bagit.txt",
            b"BagIt-Version: 1.0\r\nTag-File-Character-Encoding: UTF-8",
            b"Tag-File-Character-Encoding: UTF-8\r\nBagIt-Version: 1.0",
        ),
        "'Tag-File-Character-Encoding' where RFC 8493 puts 'BagIt-Version'",
    ),
    "unknown encoding": (_replace("bagit.txt", b"UTF-8", b"rot13"), "'rot13' is not a known character encoding"),
    "no bagit.txt": (lambda bag: (bag / "bagit.txt").unlink(), "bagit.txt: missing"),
    "climbing out": (_append("manifest-sha256.txt", f"{A_DIGEST}  data/../../outside.txt\n"), "climbs out with '..'"),
    "absolute path": (_append("manifest-sha256.txt", f"{A_DIGEST}  /etc/passwd\n"), "an absolute path, outside"),
    "listed twice": (_append("manifest-sha256.txt", f"{'0' * 64} ./data/a.txt\n"), "data/a.txt listed twice"),
    "bad line": (_append("manifest-sha256.txt", "not a digest\n"), "manifest-sha256.txt line 5: not '<sha256"),
    "not a payload path": (_append("manifest-sha256.txt", f"{A_DIGEST}  bagit.txt\n"), "lists bagit.txt, which is not"),
    "missing file": (lambda bag: (bag / "data/a.txt").unlink(), "data/a.txt: missing"),
    "extra file": (lambda bag: (bag / "data/new").write_bytes(b""), "data/new: extra file, not in manifest-sha256.txt"),
    "bad Payload-Oxum": (_replace("bag-info.txt", b"Payload-Oxum: 1", b"Payload-Oxum: 2"), "but the payload is 1"),
    "malformed Payload-Oxum": (_replace("bag-info.txt", b"Oxum: 1", b"Oxum: x1"), "is not '<bytes>.<files>'"),
    "no payload manifest": (lambda bag: (bag / "manifest-sha256.txt").unlink(), "no payload manifest"),
    "unknown algorithm": (lambda bag: (bag / "manifest-blake3.txt").write_text(""), "algorithm 'blake3' is none of"),
    "manifest not in the declared encoding": (
        lambda bag: (bag / "manifest-sha256.txt").write_bytes(b"\xff\xfe\x00"),
        "manifest-sha256.txt: not UTF-8, the encoding bagit.txt declares",
    ),
    "tag file changed": (_append("bag-info.txt", "Contact-Name: someone\n"), "bag-info.txt: checksum mismatch"),
    "no payload directory": (lambda bag: shutil.rmtree(bag / "data"), "data/: missing"),
    "a link for a payload file": (_swap_for_link, "data/a.txt: not a regular file"),
    "a directory listed": (_append("manifest-sha256.txt", f"{A_DIGEST}  data/sub\n"), "data/sub: a directory, which"),
    "a FIFO in the payload": (lambda bag: os.mkfifo(bag / "data/fifo"), "data/fifo: extra file"),  # never opened
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_each_broken_rule_is_refused_naming_it(tmp_path: Path, cli, case: str) -> None:
    change, reason = REFUSALS[case]
    bag = hand_bag(tmp_path / "bag")
    assert_valid(cli, bag, len(ODD_NAMES))
    change(bag)
    assert_refused(cli, bag, reason)


def test_every_payload_file_must_be_in_every_payload_manifest(tmp_path: Path, cli) -> None:
    bag = hand_bag(tmp_path / "bag", algorithms=("sha256", "sha1"))
    kept = [line for line in (bag / "manifest-sha1.txt").read_text().splitlines() if "data/a.txt" not in line]
    (bag / "manifest-sha1.txt").write_text("".join(f"{line}\n" for line in kept))
    assert_refused(cli, bag, "data/a.txt: not in manifest-sha1.txt")


def test_verify_path_of_no_directory_is_bad_input(tmp_path: Path, cli) -> None:
    result = cli("verify", "--path", str(tmp_path / "nothing"))
    assert result.code == 2 and "no such directory" in result.err


def test_verify_remote_goes_with_a_run_not_a_path(tmp_path: Path, cli) -> None:
    result = cli("verify", "--path", str(tmp_path), "--remote")
    assert result.code == 2 and "--remote goes with --run ID" in result.err and result.out == ""


# The bag's files a garbling may hit, and what it does to their bytes.
TARGETS = ["bagit.txt", "manifest-sha256.txt", "manifest-md5.txt", "tagmanifest-sha256.txt", "bag-info.txt"]
garbles = st.one_of(
    st.tuples(st.just("replace"), st.binary(max_size=300)),
    st.tuples(st.just("insert"), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("text"), st.text(max_size=200)),
    st.tuples(st.just("flip"), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 40)),
    st.tuples(st.just("encoding"), st.text(min_size=1, max_size=20).filter(lambda t: "\n" not in t and "\r" not in t)),
)


def _garble(path: Path, kind: str, value: object, where: int) -> None:
    data = path.read_bytes() if path.is_file() else b""
    at = where % (len(data) + 1)
    if kind == "replace":
        data = value  # type: ignore[assignment]
    elif kind == "insert":
        data = data[:at] + value + data[at:]  # type: ignore[operator]
    elif kind == "text":
        data = value.encode("utf-8", "surrogatepass")  # type: ignore[attr-defined]
    elif kind == "flip" and data:
        data = data[: at % len(data)] + bytes([data[at % len(data)] ^ (value or 1)]) + data[at % len(data) + 1 :]  # type: ignore[operator]
    elif kind == "truncate":
        data = data[: at - min(at, value)]  # type: ignore[operator]
    elif kind == "encoding":
        data = f"BagIt-Version: 1.0\nTag-File-Character-Encoding: {value}\n".encode("utf-8", "surrogatepass")
    path.write_bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.lists(st.tuples(st.sampled_from(TARGETS), garbles, st.integers(0, 10_000)), min_size=1, max_size=3),
    utf16=st.booleans(),
)
def test_no_garbling_of_a_bags_files_gives_an_internal_error(cli, changes: list, utf16: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        files = {"a.txt": b"hello", "sub/b%\n": b"bye"}
        bag = hand_bag(
            Path(directory) / "bag", files, algorithms=("sha256", "md5"), encoding="UTF-16" if utf16 else "UTF-8"
        )
        for target, (kind, value), where in changes:
            _garble(bag / ("bagit.txt" if kind == "encoding" else target), kind, value, where)
        verification = verify_bag(bag)  # raises nothing
        result = cli("verify", "--path", str(bag))
        assert result.code == (0 if verification.ok else 1)
        assert "internal error" not in result.err and "Traceback" not in result.err
        assert len(result.err.splitlines()) == len(verification.problems)  # one line per problem
