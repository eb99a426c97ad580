import pytest

from imrt_sync.gitrepo import _advertised_refs

SHA_A = "a" * 40
SHA_B = "b" * 40


def pkt(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


def advertisement(*lines: str) -> bytes:
    return pkt("# service=git-upload-pack\n") + b"0000" + b"".join(pkt(line) for line in lines) + b"0000"


def test_refs_are_read_with_capabilities_after_the_first_one():
    body = advertisement(
        f"{SHA_A} HEAD\0multi_ack side-band-64k symref=HEAD:refs/heads/main\n",
        f"{SHA_A} refs/heads/main\n",
        f"{SHA_B} refs/heads/feature\n",
    )
    assert list(_advertised_refs(body)) == [(SHA_A, "HEAD"), (SHA_A, "refs/heads/main"), (SHA_B, "refs/heads/feature")]


def test_an_empty_repository_advertises_no_refs():
    body = advertisement(f"{'0' * 40} capabilities^{{}}\0multi_ack\n")
    assert [ref for _, ref in _advertised_refs(body)] == ["capabilities^{}"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        pkt("# service=git-upload-pack\n")[:-3],
        advertisement("not-a-sha refs/heads/main\n"),
        pkt(f"{SHA_A} refs/heads/main\n"),
    ],
    ids=["empty", "garbage", "truncated", "bad-sha", "no-service-line"],
)
def test_a_malformed_advertisement_is_an_error(body):
    with pytest.raises(ValueError):
        list(_advertised_refs(body))


def test_a_server_error_line_is_reported():
    with pytest.raises(ValueError, match="access denied"):
        list(_advertised_refs(advertisement("ERR access denied\n")))
