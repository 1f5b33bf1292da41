"""X's posts and DMs into InboundMessages: the Activity API envelope and polled answers. Pure.

Both paths meet in `post_message` and `dm_message`, so a mention read by webhook and the
same mention read by polling are one event: its id comes from the post's (or DM event's)
own id, and the intake's dedupe drops the second copy. The Activity API's `event_uuid`
is kept in the extras for the log.

What is never routed (`Ignored`, with its reason): our own posts and DMs, retweets,
event types we did not subscribe to, and an envelope carrying only `errors[]`. A post
referencing something X could not show (protected, deleted) arrives with `errors[]`
beside its data; it is routed and the errors ride along in the extras. An encrypted DM
(XChat `chat.received`, or a `dm.received` with ciphertext and no text) is routed as a
notice that it cannot be read, so an agent asks the customer to write another way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from connectors.twitter.errors import XInputError
from schemas.codec import decode_json
from schemas.identity import Identity
from schemas.ids import inbound_event_id
from schemas.inbound import InboundMessage, ReplyRef, XExtras

__all__ = [
    "CHANNEL",
    "DM_MODE",
    "ENCRYPTED_TEXT",
    "MAX_BODY_BYTES",
    "Dm",
    "Envelope",
    "Ignored",
    "Includes",
    "Post",
    "Problem",
    "User",
    "dm_message",
    "parse",
    "parse_envelope",
    "post_message",
    "timestamp",
]

CHANNEL = "x"
MAX_BODY_BYTES = 256_000
# what a reply must do, carried in the reply reference for the sender
PUBLIC_MODE, UNSUMMONED_MODE, DM_MODE = "x:summoned", "x:unsummoned", "x:dm"
ENCRYPTED_TEXT = ("[An encrypted direct message arrived; Switchboard cannot read it. "
                  "Please ask the customer to write to us another way.]")
_POST_EVENTS = frozenset({"post.mention.create", "post.reply.create"})
_DM_EVENTS = frozenset({"dm.received"})
_ENCRYPTED_EVENTS = frozenset({"chat.received"})


class Mention(msgspec.Struct, frozen=True):
    """An @mention in a post's text."""

    username: str = ""
    id: str | None = None


class Entities(msgspec.Struct, frozen=True):
    """The parts of a post's entities we read."""

    mentions: list[Mention] = []


class Referenced(msgspec.Struct, frozen=True):
    """A post this one replies to, quotes or retweets."""

    type: str
    id: str


class Post(msgspec.Struct, frozen=True):
    """An X post: API v2's `Post` (`referenced_posts`), or its `Tweet` of before (`referenced_tweets`)."""

    id: str
    text: str = ""
    author_id: str | None = None
    conversation_id: str | None = None
    created_at: str | None = None
    lang: str | None = None
    in_reply_to_user_id: str | None = None
    referenced_tweets: list[Referenced] = []
    referenced_posts: list[Referenced] = []
    entities: Entities | None = None

    @property
    def references(self) -> list[Referenced]:
        """The posts this one replies to, quotes or reposts, under either name."""
        return [*self.referenced_posts, *self.referenced_tweets]


class User(msgspec.Struct, frozen=True):
    """An X account as `includes.users` shows it."""

    id: str
    username: str | None = None
    name: str | None = None


class Includes(msgspec.Struct, frozen=True):
    """Expanded objects beside the data; X says `posts` now and `tweets` before."""

    users: list[User] = []
    posts: list[Post] = []
    tweets: list[Post] = []


class Problem(msgspec.Struct, frozen=True):
    """One of X's partial errors (a Problem object)."""

    title: str = ""
    detail: str = ""
    type: str = ""
    resource_id: str | None = None


class Dm(msgspec.Struct, frozen=True):
    """A DM event (`DmEvent`), or an XChat message event carrying only ciphertext."""

    id: str
    event_type: str = "MessageCreate"
    text: str | None = None
    sender_id: str | None = None
    dm_conversation_id: str | None = None
    conversation_id: str | None = None
    created_at: str | None = None
    encoded_event: str | None = None
    encrypted_message: str | None = None


class Filter(msgspec.Struct, frozen=True):
    """The subscription an Activity API event matched: our account's user id."""

    user_id: str | None = None


class ActivityData(msgspec.Struct, frozen=True):
    """The Activity API's `data`: which event, for which subscription, and its payload."""

    event_type: str
    event_uuid: str = ""
    filter: Filter | None = None
    payload: msgspec.Raw = msgspec.Raw(b"null")
    includes: Includes | None = None


class Envelope(msgspec.Struct, frozen=True):
    """One X Activity API webhook delivery."""

    data: ActivityData | None = None
    errors: list[Problem] = []


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event we do not route, and why."""

    reason: str
    native_id: str = ""


_envelope = msgspec.json.Decoder(Envelope)
_post = msgspec.json.Decoder(Post)
_dm = msgspec.json.Decoder(Dm)


def timestamp(value: str | None) -> datetime | None:
    """X's `2026-03-02T10:00:00.000Z` as an aware datetime; None when absent or odd."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _problems(errors: list[Problem]) -> tuple[str, ...]:
    return tuple(f"{p.title}: {p.detail}".strip(": ")[:300] for p in errors[:10])


def _summoned(post: Post, account: str, includes: Includes) -> bool:
    """X lets us reply publicly only to a post that @mentions or quotes our account."""
    if post.entities and any(m.id == account for m in post.entities.mentions):
        return True
    quoted = {r.id for r in post.references if r.type == "quoted"}
    return any(p.id in quoted and p.author_id == account for p in (*includes.posts, *includes.tweets))


def post_message(post: Post, account: str, *, includes: Includes | None = None,
                 errors: tuple[str, ...] = (), event_uuid: str = "",
                 received_at: datetime | None = None) -> InboundMessage | Ignored:
    """A post that mentions or replies to us, or why it is not routed."""
    if not post.author_id:
        raise XInputError(f"post {post.id} has no author_id (ask for expansions=author_id)")
    if post.author_id == account:
        return Ignored("our own post", post.id)
    if any(r.type == "retweeted" for r in post.references):
        return Ignored("a retweet", post.id)
    seen = includes or Includes()
    author = next((u for u in seen.users if u.id == post.author_id), None)
    replied_to = next((r.id for r in post.references if r.type == "replied_to"), None)
    summoned = _summoned(post, account, seen)
    at = timestamp(post.created_at) or received_at or datetime.now(UTC)
    conversation = post.conversation_id or post.id
    return InboundMessage(
        event_id=inbound_event_id(CHANNEL, f"post:{post.id}"),
        channel=CHANNEL,
        native_id=post.id,
        thread_key=f"x:post:{conversation}",
        sender=Identity(kind="xid", value=post.author_id),
        received_at=at,
        text=post.text,
        tags=("public",),
        extras=XExtras(kind="post", account=account, author_id=post.author_id,
                       handle=author.username if author else None, name=author.name if author else None,
                       conversation_id=conversation, replied_to=replied_to, lang=post.lang,
                       summoned=summoned, event_uuid=event_uuid, errors=errors),
        reply_ref=ReplyRef(in_reply_to=post.id,
                           references=(PUBLIC_MODE if summoned else UNSUMMONED_MODE,)),
    )


def dm_message(dm: Dm, account: str, *, includes: Includes | None = None, event_uuid: str = "",
               encrypted: bool = False, received_at: datetime | None = None) -> InboundMessage | Ignored:
    """A DM to us, or why it is not routed; ciphertext becomes a notice that it cannot be read."""
    if dm.event_type != "MessageCreate":
        return Ignored(f"DM event of type {dm.event_type!r}", dm.id)
    if not dm.sender_id:
        raise XInputError(f"DM event {dm.id} has no sender_id")
    if dm.sender_id == account:
        return Ignored("our own DM", dm.id)
    sealed = encrypted or (dm.text is None and bool(dm.encoded_event or dm.encrypted_message))
    if dm.text is None and not sealed:
        raise XInputError(f"DM event {dm.id} has no text")
    sender = next((u for u in (includes or Includes()).users if u.id == dm.sender_id), None)
    conversation = dm.dm_conversation_id or dm.conversation_id or f"{dm.sender_id}-{account}"
    return InboundMessage(
        event_id=inbound_event_id(CHANNEL, f"dm:{dm.id}"),
        channel=CHANNEL,
        native_id=dm.id,
        thread_key=f"x:dm:{conversation}",
        sender=Identity(kind="xid", value=dm.sender_id),
        received_at=timestamp(dm.created_at) or received_at or datetime.now(UTC),
        text=ENCRYPTED_TEXT if sealed else (dm.text or ""),
        tags=("dm", "encrypted") if sealed else ("dm",),
        extras=XExtras(kind="dm", account=account, author_id=dm.sender_id,
                       handle=sender.username if sender else None, name=sender.name if sender else None,
                       conversation_id=conversation, event_uuid=event_uuid, encrypted=sealed),
        reply_ref=ReplyRef(in_reply_to=dm.id, references=(DM_MODE,)),
    )


def parse_envelope(raw: bytes, account: str | None = None) -> InboundMessage | Ignored:
    """One Activity API delivery as a message, or why it is not routed; XInputError when unreadable.

    `account` is our user id; without it the subscription filter's user id is used.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise XInputError(f"body is {len(raw)} bytes, limit is {MAX_BODY_BYTES}")
    try:
        envelope = decode_json(raw, _envelope)
    except msgspec.ValidationError as e:
        raise XInputError(f"not an X Activity API event: {e}") from e
    except msgspec.DecodeError as e:
        raise XInputError(f"body is not JSON: {e}") from e
    errors = _problems(envelope.errors)
    data = envelope.data
    if data is None:
        return Ignored(f"errors only: {'; '.join(errors) or 'no data'}")
    owner = account or (data.filter.user_id if data.filter else None)
    if not owner:
        raise XInputError("event names no subscribed user (data.filter.user_id)")
    includes = data.includes or Includes()
    try:
        if data.event_type in _POST_EVENTS:
            return post_message(_post.decode(data.payload), owner, includes=includes,
                                errors=errors, event_uuid=data.event_uuid)
        if data.event_type in _DM_EVENTS | _ENCRYPTED_EVENTS:
            return dm_message(_dm.decode(data.payload), owner, includes=includes,
                              event_uuid=data.event_uuid, encrypted=data.event_type in _ENCRYPTED_EVENTS)
    except msgspec.ValidationError as e:
        raise XInputError(f"{data.event_type} payload is not readable: {e}") from e
    except msgspec.DecodeError as e:
        raise XInputError(f"{data.event_type} payload is not JSON: {e}") from e
    return Ignored(f"event type {data.event_type!r} is not routed", data.event_uuid)


def parse(raw: bytes) -> InboundMessage:
    """The contract's parser: an Activity API delivery as a message; XInputError when not routed."""
    found = parse_envelope(raw)
    if isinstance(found, Ignored):
        raise XInputError(f"not routed: {found.reason}")
    return found
