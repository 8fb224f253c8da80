"""A model version's file name can never place a file outside the folder meant for it.

Issue 13 item 1: ``artifact_filename``'s pattern was ``^$|<name>$`` (the second
alternative unanchored), so ``../../x`` and ``/tmp/x`` passed; deploying such a version
moved the artifact there, and ``client.models.download`` wrote ``dest / name``. The
boundary refuses them now, and every place a stored name becomes a path checks it again.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import update

from modelyard.client.sdk import Client
from modelyard.client.transport import EmbeddedTransport
from modelyard.core.paths import safe_component, safe_relpath
from modelyard.endpoints.processes import ModelCache
from modelyard.errors import InvalidInput
from modelyard.registry.schemas import RegisterVersion
from modelyard.registry.store import ModelVersionRow
from modelyard.runtime import Runtime
from modelyard.security.service import local_principal
from testkit import LiveServer, make_settings

DIGEST = "0" * 64
TRAVERSALS = [
    "../../../tmp/evil.py",
    "../evil",
    "..",
    ".",
    "/etc/cron.d/evil",
    "/abs",
    "a/../../b",
    "sub/model.onnx",
    "x/",
    "evil\n",
    "C:\\evil",
    "..\\..\\evil",
    "model.onnx/..",
    "a%2f..%2fb",
    " leading-space",
]
_FILENAME_PATTERN = RegisterVersion.model_fields["artifact_filename"].metadata[0].pattern


def _sdk(runtime: Runtime) -> Client:
    return Client(EmbeddedTransport(runtime, local_principal()))


@pytest.mark.parametrize("name", TRAVERSALS)
def test_the_schema_refuses_traversal_file_names(name: str) -> None:
    with pytest.raises(ValidationError, match="artifact_filename"):
        RegisterVersion(name="m", artifact_digest=DIGEST, artifact_filename=name, flavor="onnx")


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[tuple[LiveServer, Runtime, str]]:
    runtime = Runtime(make_settings(tmp_path, auth=True))
    admin = _sdk(runtime)
    admin.users.create("sam", "scientist")
    token = admin.tokens.create("sam").token
    with LiveServer(runtime) as server:
        yield server, runtime, token
    runtime.close()


def test_a_scientist_cannot_register_a_traversal_name_to_deploy_as_a_shadow(
    auth_server: tuple[LiveServer, Runtime, str], tmp_path: Path
) -> None:
    """The attack of the report: an unapproved version with a traversal name, deployed as
    a shadow variant (which needs no approval). It is refused at registration (400), so
    there is nothing to deploy."""
    server, runtime, token = auth_server
    headers = {"authorization": f"Bearer {token}"}
    digest = _sdk(runtime).artifacts.upload(b"print('owned')\n").digest
    with httpx.Client(base_url=server.url + "/api/v1", headers=headers) as http:
        for name in ["../../../../tmp/evil.py", str(tmp_path / "evil.py"), "a/../../evil.py"]:
            response = http.post(
                "/models/m/versions",
                json={
                    "name": "m",
                    "artifact_digest": digest,
                    "artifact_filename": name,
                    "flavor": "onnx",
                },
            )
            assert response.status_code == 400, response.text
            assert "artifact_filename" in response.text
        assert http.get("/models/m").status_code == 404  # nothing was registered
    assert not (tmp_path / "evil.py").exists()


def _store_bad_name(runtime: Runtime, bad: str) -> tuple[str, int]:
    """A registered version whose stored file name is then changed in the database, as an
    older release's boundary let through."""
    sdk = _sdk(runtime)
    digest = sdk.artifacts.upload(b"model bytes").digest
    version = sdk.models.register("m", artifact=digest, filename="model.onnx", flavor="onnx")
    with runtime.db.transaction() as session:
        session.execute(
            update(ModelVersionRow)
            .where(ModelVersionRow.id == version.id)
            .values(artifact_filename=bad)
        )
    return digest, version.version


@pytest.mark.parametrize("bad", ["../../../escaped.onnx", "/ABS/escaped.onnx", "a/b.onnx"])
def test_placement_and_download_refuse_a_bad_name_already_stored(
    runtime: Runtime, tmp_path: Path, bad: str
) -> None:
    bad = bad.replace("/ABS", str(tmp_path))
    digest, number = _store_bad_name(runtime, bad)
    sdk = _sdk(runtime)
    stored = sdk.models.version("m", number)
    assert stored.artifact_filename == bad

    home = tmp_path / "home"
    cache = ModelCache(home, runtime.artifacts)
    with pytest.raises(InvalidInput, match=re.escape(repr(bad))):
        cache.path(stored.artifact_digest, stored.artifact_filename)
    assert not cache.folder.exists() or not any(cache.folder.iterdir())

    dest = tmp_path / "dest" / "inner"
    with pytest.raises(InvalidInput, match=re.escape(repr(bad))):
        sdk.models.download("m", number, dest)
    assert not dest.exists()
    assert not list(tmp_path.rglob("escaped.onnx"))
    assert digest == stored.artifact_digest


def test_placement_refuses_a_digest_that_is_not_one(runtime: Runtime, tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "home", runtime.artifacts)
    for digest in ["../" + "0" * 61, "/" + "0" * 63, "A" * 64]:
        with pytest.raises(InvalidInput, match="64 lower-case hex"):
            cache.path(digest, "model.onnx")


# -- properties --------------------------------------------------------------------------

_accepted_names = st.one_of(
    st.from_regex(re.compile(_FILENAME_PATTERN), fullmatch=True),
    st.text(alphabet=st.sampled_from("./\\abc%2e_-+ \x00\n:"), max_size=12),
    st.text(max_size=20),
)


def _accepted(name: str) -> bool:
    try:
        RegisterVersion(name="m", artifact_digest=DIGEST, artifact_filename=name, flavor="onnx")
    except ValidationError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(_accepted_names)
def test_no_name_the_schema_accepts_leaves_its_folder(name: str) -> None:
    if not _accepted(name):
        return
    root = Path(tempfile.gettempdir()).resolve() / "root"
    if name:
        assert (root / safe_component(name)).resolve().parent == root
    assert "/" not in name and "\\" not in name and name not in (".", "..")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_safe_component_and_safe_relpath_never_leave_their_root(name: str) -> None:
    root = Path(tempfile.gettempdir()).resolve() / "root"
    try:
        one = safe_component(name)
    except InvalidInput:
        pass
    else:
        assert (root / one).resolve().parent == root
    try:
        rel = safe_relpath(name)
    except InvalidInput:
        return
    resolved = (root / rel).resolve()
    assert resolved != root and resolved.is_relative_to(root)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=_accepted_names)
def test_placement_of_any_accepted_name_stays_in_its_digest_folder(
    runtime: Runtime, name: str
) -> None:
    if not _accepted(name):
        return
    digest = runtime.artifacts.put_bytes(b"weights").digest
    with tempfile.TemporaryDirectory() as tmp:
        cache = ModelCache(Path(tmp), runtime.artifacts)
        folder = cache.path(digest, name)
        placed = [p for p in Path(tmp).rglob("*") if p.is_file()]
        assert placed == [folder / (name or "model")]
        assert folder.parent == cache.folder
