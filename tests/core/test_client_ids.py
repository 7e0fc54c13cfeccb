"""Model ids never leave `/models/`: checked on the wire (the fake's log of the raw request
line), against what a normalising proxy would make of the path."""

from __future__ import annotations

import posixpath
import re
import unicodedata
from urllib.parse import unquote

import pytest

from llm_pinference.core.client import PinferenceClient, check_model_id, model_path
from llm_pinference.core.errors import InvalidModelId, PinferenceError, Reason
from llm_pinference.core.settings import Settings
from pinference_fake import FakePinference

KEY = "pit_ids_secret_321"

#: Ids that must be refused before any request: each has a segment some server resolves.
REFUSED = [
    "..",
    ".",
    "../../admin",
    "../../../admin/users",
    "a/./b",
    "a/../../b",
    "%2e%2e/x",
    "%2E%2e",
    "a/%2e/b",
    "%252e%252e/admin",  # decoded twice by some servers
    "%252e",
    "x/..;y/z",  # Tomcat drops the ;parameter: `..`
    "a\\..\\b",  # some servers take `\` for `/`
    "..%5c..%5cadmin",
    "..%2fadmin",
    "\uff0e\uff0e/admin",  # fullwidth dots: NFKC gives `..`
    "\u2025/admin",  # two dot leader: NFKC gives `..`
    ". ./x",
    "a/.. /b",
    "a/..\t/b",
    "a/...",
    "",
]

#: Ids that are sent, quoted: the server must see exactly the id, under /models/.
SENT = [
    "?x=1",
    "a?x=1",
    "#frag",
    "a//b",
    "/leading",
    "trailing/",
    "a\x00b",
    "a\r\nX-Injected: 1",
    "a\x1b[31mred",
    "é/ü",
    "模型/名字",
    "a b",
    "a%2fb",
    "%41",
    "a.b/c..d",
    ".hidden/..x",
    "a;b",
    "team/model:tag",
    "Qwen/Qwen9-1T-A99B-Instruct-2507",
    "x" * 5000,
]


def normalised(raw_path: str) -> str:
    """What a zealous proxy could make of a request path: decoded (twice), `\\` as `/`,
    path parameters dropped, NFKC, blanks dropped, dot segments resolved, slashes merged."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    for _ in range(3):
        path = unquote(path)
    path = unicodedata.normalize("NFKC", path).replace("\\", "/")
    segments = [re.sub(r"\s", "", s.split(";", 1)[0]) for s in path.split("/")]
    segments = [".." if s and not s.strip(".") else s for s in segments]  # `...` too
    return posixpath.normpath("/".join(segments))


@pytest.fixture
def client(fake: FakePinference) -> PinferenceClient:
    return PinferenceClient(
        Settings(api_key=KEY, base_url=fake.base_url), connect_timeout=2, read_timeout=2
    )


@pytest.mark.parametrize("model_id", REFUSED)
def test_dot_segments_are_refused_before_any_request(
    fake: FakePinference, client: PinferenceClient, model_id: str
) -> None:
    with pytest.raises(InvalidModelId) as info:
        client.get_model(model_id)
    err = info.value
    assert isinstance(err, PinferenceError) and isinstance(err, ValueError)
    assert err.reason is Reason.CLIENT_ERROR and err.status is None
    assert "\n" not in str(err) and "\x1b" not in str(err) and len(str(err)) < 200
    assert fake.requests == []  # nothing was sent, the key included
    with pytest.raises(InvalidModelId):
        check_model_id(model_id)


@pytest.mark.parametrize("model_id", SENT, ids=lambda i: ascii(i)[:40])
def test_other_ids_reach_the_server_quoted_and_under_models(
    fake: FakePinference, client: PinferenceClient, model_id: str
) -> None:
    assert check_model_id(model_id) == model_id
    with pytest.raises(PinferenceError) as info:
        client.get_model(model_id)  # the fake knows none of them
    assert info.value.reason is Reason.NOT_FOUND
    (seen,) = fake.requests
    assert seen.raw_path == "/api/v1/" + model_path(model_id)  # what was built is what went
    assert seen.path == "/api/v1/models/" + model_id  # the server decodes the exact id
    assert re.fullmatch(r"[A-Za-z0-9/:@!$&'()*+,;=._~%-]+", seen.raw_path)
    assert normalised(seen.raw_path).startswith("/api/v1/models")
    assert not re.search(r"(^|/)\.{1,2}(/|$)", seen.raw_path)


def test_the_normalising_proxy_model_resolves_what_was_sent_before() -> None:
    # The check above is meaningful: the escaping the client used to do is resolved.
    assert normalised("/api/v1/models/%2E%2E/%2E%2E/admin") == "/api/admin"
    assert normalised("/api/v1/models/%252e%252e/x") == "/api/v1/x"


def test_an_id_the_api_lists_is_refused_too(fake: FakePinference, client: PinferenceClient) -> None:
    fake.set_models([{"id": "../../admin", "object": "model"}, {"id": "ok/model"}])
    listed = [m.id for m in client.list_models().models]
    assert listed == ["../../admin", "ok/model"]
    fake.clear_requests()
    with pytest.raises(InvalidModelId):
        client.get_model(listed[0])
    assert client.get_model("ok/model").id == "ok/model"
    assert [r.path for r in fake.requests] == ["/api/v1/models/ok/model"]


def test_a_very_long_id_is_a_client_error_from_the_server(
    fake: FakePinference, client: PinferenceClient
) -> None:
    with pytest.raises(PinferenceError) as info:
        client.get_model("x" * 70_000)  # longer than the server's request line limit
    assert info.value.reason is Reason.CLIENT_ERROR and info.value.status == 414
    assert len(str(info.value)) <= 400
