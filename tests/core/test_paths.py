"""Safe relative paths: nothing a client sends can name a file outside its folder."""

from __future__ import annotations

import os
import posixpath
import socket
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modelyard.core.paths import collect_files, safe_join, safe_relpath
from modelyard.errors import InvalidInput

# -- safe_relpath: accepted and normalised -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a", "a"),
        ("a/b/c.txt", "a/b/c.txt"),
        ("./a", "a"),
        ("a/./b", "a/b"),
        ("a//b", "a/b"),
        ("a/b/", "a/b"),
        ("a/b/.", "a/b"),
        (".hidden/.env", ".hidden/.env"),
        ("..a/b..", "..a/b.."),
        ("a..b", "a..b"),
        ("x.tar.gz", "x.tar.gz"),
        ("ünïcødé/データ.csv", "ünïcødé/データ.csv"),
        ("100% done.txt", "100% done.txt"),
        ("a%20b", "a%20b"),
        ("file:name", "file:name"),
        ("ab:c", "ab:c"),
    ],
)
def test_safe_relpath_accepts_and_normalises(name: str, expected: str) -> None:
    assert safe_relpath(name) == expected


# -- safe_relpath: traversal and friends are refused -------------------------------------

TRAVERSALS = [
    "",
    ".",
    "./",
    "./.",
    "/",
    "//",
    "/etc/passwd",
    "//server/share",
    "..",
    "../",
    "../x",
    "a/../../x",
    "a/..",
    "a/b/../c",
    "./../x",
    "...",
    "a/.../b",
    ". .",
    ".. ",
    "a/.. /b",
    " ",
    "a/ /b",
    "C:\\Windows\\system32",
    "C:/Windows",
    "C:x",
    "c:",
    "\\\\server\\share",
    "\\x",
    "a\\b",
    "a\\..\\..\\x",
    "..\\x",
    "a\x00b",
    "a\nb",
    "a\rb",
    "\tx",
    "a\x7fb",
    "a\x85b",
    "a%2fb",
    "a%2Fb",
    "..%2f..%2fetc",
    "%2e%2e/x",
    "%2E%2E/x",
    "a/%2e",
    "a%5cb",
    "a%5C..",
    "%252e%252e/x",
    "a%00b",
    "a%0ab",
    "a%7fb",
    "a\udcffb",
    "x" * 256,
    "a/" + "y" * 300,
    "a/" * 2100,
]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_safe_relpath_refuses(name: str) -> None:
    with pytest.raises(InvalidInput):
        safe_relpath(name)


@pytest.mark.parametrize("name", ["../secret", "a\\b", "/etc/passwd", "a%2fb"])
def test_safe_relpath_error_names_the_value(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        safe_relpath(name)
    assert repr(name) in info.value.message


@pytest.mark.parametrize("value", [None, b"a", 1, Path("a")])
def test_safe_relpath_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidInput):
        safe_relpath(value)  # type: ignore[arg-type]


def test_long_error_values_are_shortened() -> None:
    with pytest.raises(InvalidInput) as info:
        safe_relpath("../" + "x" * 10_000)
    assert len(info.value.message) < 300


# -- safe_relpath: properties ----------------------------------------------------------------

# Path-ish text: heavy on separators, dots, percent signs and a few letters.
pathish = st.text(
    alphabet=st.sampled_from(list("./\\%:abcAC2eEfF5 \x00\n")) | st.characters(),
    max_size=40,
)


def _resolves_inside(rel: str) -> bool:
    """Whether ``rel`` stays inside a root under POSIX *and* Windows rules."""
    for candidate in (rel, rel.replace("\\", "/")):
        joined = posixpath.normpath(posixpath.join("/root", candidate))
        if not (joined.startswith("/root/")):
            return False
    return True


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pathish)
@example("../x")
@example("a/../../b")
@example("%2e%2e/x")
def test_accepted_paths_never_escape_and_are_canonical(name: str) -> None:
    try:
        out = safe_relpath(name)
    except InvalidInput:
        return
    parts = out.split("/")
    assert out and not out.startswith("/") and "\\" not in out
    assert all(part not in ("", ".", "..") for part in parts)
    assert all(ch not in out for ch in "\x00\n\r\t")
    assert "%2e" not in out.lower() and "%2f" not in out.lower() and "%5c" not in out.lower()
    assert _resolves_inside(out)
    # Idempotent: a clean path is its own normal form.
    assert safe_relpath(out) == out


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", ".", "..", "", "c.txt"]), min_size=1, max_size=8))
def test_any_dotdot_component_is_refused(parts: list[str]) -> None:
    name = "/".join(parts)
    kept = [p for p in parts if p not in ("", ".")]
    if ".." in parts or name.startswith("/") or not kept:
        with pytest.raises(InvalidInput):
            safe_relpath(name)
    else:
        assert safe_relpath(name) == "/".join(kept)


safe_component = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1)


@settings(max_examples=300, deadline=None)
@given(st.lists(safe_component, min_size=1, max_size=6))
def test_plain_names_round_trip(parts: list[str]) -> None:
    name = "/".join(parts)
    assert safe_relpath(name) == name


# -- safe_join ---------------------------------------------------------------------------


def test_safe_join_inside(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a/b.txt") == tmp_path.resolve() / "a" / "b.txt"
    assert safe_join(str(tmp_path), "./a//b") == tmp_path.resolve() / "a" / "b"


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "a\\..\\x", ".", ""])
def test_safe_join_refuses_unsafe_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput):
        safe_join(tmp_path, name)


def test_safe_join_refuses_symlink_out_of_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("s")
    (root / "escape").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "secret")
    with pytest.raises(InvalidInput) as info:
        safe_join(root, "escape/secret")
    assert "escape/secret" in info.value.message
    with pytest.raises(InvalidInput):
        safe_join(root, "escape/new-file")
    with pytest.raises(InvalidInput):
        safe_join(root, "file-link")


def test_safe_join_refuses_symlink_to_root_itself(tmp_path: Path) -> None:
    (tmp_path / "self").symlink_to(tmp_path)
    with pytest.raises(InvalidInput):
        safe_join(tmp_path, "self")


def test_safe_join_follows_symlinks_that_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert safe_join(tmp_path, "alias/f") == tmp_path.resolve() / "real" / "f"


def test_safe_join_root_may_itself_be_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert safe_join(tmp_path / "link", "f") == tmp_path.resolve() / "real" / "f"


@settings(max_examples=500, deadline=None)
@given(pathish)
def test_safe_join_result_is_always_inside(name: str) -> None:
    root = Path("/nonexistent-modelyard-root")
    try:
        out = safe_join(root, name)
    except InvalidInput:
        return
    assert out.is_relative_to(root) and out != root


# -- collect_files -------------------------------------------------------------------------


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_collect_files_lists_sorted_relpaths(tmp_path: Path) -> None:
    _tree(tmp_path, {"b.txt": b"b", "a/z.txt": b"z", "a/b/c.bin": b"c", ".hidden": b"h"})
    (tmp_path / "empty-dir").mkdir()
    got = collect_files(tmp_path)
    assert [rel for rel, _ in got] == [".hidden", "a/b/c.bin", "a/z.txt", "b.txt"]
    for rel, path in got:
        assert path == tmp_path / rel
        assert path.is_file()


def test_collect_files_empty_folder(tmp_path: Path) -> None:
    assert collect_files(tmp_path) == []


def test_collect_files_refuses_file_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    root = tmp_path / "root"
    _tree(root, {"ok.txt": b"ok"})
    (root / "link.txt").symlink_to(outside)
    with pytest.raises(InvalidInput) as info:
        collect_files(root)
    assert "link.txt" in info.value.message and "symbolic link" in info.value.message


def test_collect_files_refuses_directory_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _tree(outside, {"secret": b"s"})
    root = tmp_path / "root"
    _tree(root, {"sub/ok.txt": b"ok"})
    (root / "sub" / "dirlink").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidInput) as info:
        collect_files(root)
    assert "dirlink" in info.value.message and "symbolic link" in info.value.message


def test_collect_files_refuses_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InvalidInput, match=r"dangling.*symbolic link"):
        collect_files(tmp_path)


def test_collect_files_refuses_fifo_and_socket(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(InvalidInput, match="pipe"):
        collect_files(tmp_path)
    (tmp_path / "pipe").unlink()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        with pytest.raises(InvalidInput, match="sock"):
            collect_files(tmp_path)


@pytest.mark.parametrize("bad", ["back\\slash", "new\nline", "a%2fb", "..."])
def test_collect_files_refuses_unsafe_names(tmp_path: Path, bad: str) -> None:
    _tree(tmp_path, {"ok": b"1"})
    (tmp_path / bad).write_bytes(b"x")
    with pytest.raises(InvalidInput):
        collect_files(tmp_path)


def test_collect_files_refuses_unsafe_directory_names(tmp_path: Path) -> None:
    _tree(tmp_path, {"a\\b/file": b"x"})
    with pytest.raises(InvalidInput):
        collect_files(tmp_path)


def test_collect_files_requires_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidInput):
        collect_files(tmp_path / "f")
    with pytest.raises(InvalidInput):
        collect_files(tmp_path / "missing")


def test_collect_files_root_symlink_is_followed(tmp_path: Path) -> None:
    _tree(tmp_path / "real", {"x": b"1"})
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert [rel for rel, _ in collect_files(tmp_path / "link")] == ["x"]


def test_collect_files_does_not_skip_unreadable_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.walk would skip it silently; an upload must not quietly miss files."""
    _tree(tmp_path, {"ok": b"1", "locked/f": b"x"})
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(PermissionError):
        collect_files(tmp_path)
