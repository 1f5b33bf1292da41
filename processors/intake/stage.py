"""Intake: the first stage, one stream batch at a time.

decode → dedupe + identify (one Redis round trip for the batch; a second registers first
sightings and reads the cards that continuations and agents' answers name) → IdentifiedMessage on
`sb.identified.v1`, keyed by customer; a bounce becomes a failed DeliveryReceipt; an
identity the customer states in a private message is suggested (an IdentityLink event); an
answer carrying a verified continuation token links the conversation's customer identity
to the sender's customer first (processors.intake.continuation); an agent's answer from a
team mailbox becomes their reply on `sb.outbound.v1`; whatever cannot be decoded becomes
a DeadLetter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import msgspec
from redis.asyncio import Redis

from processors.intake import continuation, dedupe, evidence, identify
from processors.intake.agent_mail import answered_conversation, reply_from_mail
from processors.intake.bounce import receipt_for_bounce
from processors.metrics import BATCH_SIZE, DEADLETTERED, REDIS_ROUNDTRIPS, Tally
from processors.stage import Output, Record, dead_letter, decode_records
from processors.stores.cards import CardStore
from processors.stores.claims import Claim, ClaimStore
from processors.stores.identities import IdentityStore, LinkRefused
from processors.stores.tags import pipeline
from schemas.codec import encode
from schemas.conversation import ConversationCard
from schemas.identified import IdentifiedMessage
from schemas.inbound import InboundMessage
from schemas.probe import ProbeMark, find_mark
from schemas.routed import Decision
from schemas.tokens import Continued, continuation_key
from schemas.topics import DELIVERY, IDENTIFIED, IDENTITY, OUTBOUND

__all__ = ["STAGE", "Intake", "identified_message"]

STAGE = "intake"
log = logging.getLogger(__name__)
T = TypeVar("T")
# an identified message held back until its continuation's link is made
Continuing = tuple[InboundMessage, str, str, Decision, Continued]


def identified_message(message: InboundMessage, customer_id: str, dedupe_reason: str,
                       identified: Decision, *, at: datetime) -> IdentifiedMessage:
    """The message with its customer and the first two stages' reasons, identified `at`: the pure core."""
    return IdentifiedMessage(
        event_id=message.event_id, customer_id=customer_id, message=message,
        identified_at=at,
        decisions=(Decision(stage="dedupe", outcome="new", reasons=(dedupe_reason,)), identified))


def _probe(message: InboundMessage, mark: ProbeMark, dedupe_reason: str, now: datetime) -> Output:
    """A probe goes on to the brain under its channel's probe customer, never identified or linked."""
    customer = f"probe:{mark.channel}"  # no customer id has a colon: it cannot meet a real one
    identified = Decision(stage="identify", outcome="probe",
                          reasons=(f"synthetic probe {mark.probe_id}: signed marker verified",))
    return Output(IDENTIFIED, customer.encode(), encode(msgspec.structs.replace(
        identified_message(message, customer, dedupe_reason, identified, at=now), probe=mark)))


class Intake:
    """Runs the intake stage over a batch; the Faust agent only moves bytes."""

    def __init__(self, redis: Redis, claims: ClaimStore, identities: IdentityStore,
                 token_key: bytes, our_domains: Sequence[str] = (),
                 *, cards: CardStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._redis = redis
        self._clock = clock  # probe marks and continuation tokens expire; messages are stamped
        self._cards = cards
        self._claims = claims
        self._identities = identities
        self._token_key = token_key
        self._continuation_key = continuation_key(token_key)
        self._our_domains = tuple(our_domains)

    async def process(self, records: Sequence[Record]) -> list[Output]:
        """Turn one batch of inbound records into identified messages, receipts and dead letters."""
        BATCH_SIZE.labels(STAGE).observe(len(records))
        outputs: list[Output] = []
        decoded = decode_records(records, InboundMessage, STAGE, outputs)
        if not decoded:
            return outputs
        claims = [Claim(m.event_id, r.owner) for r, m in decoded]
        sightings = [identify.Sighting.of(m) for _, m in decoded]
        pipe = pipeline(self._redis)  # split per hash tag on a Cluster
        self._claims.queue(pipe, claims)
        self._identities.queue_lookup(pipe, sightings)
        claimed, looked_up = await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
        lookups = self._identities.parse_lookup(looked_up)
        tally = Tally(STAGE)
        now = self._clock()
        new: list[tuple[InboundMessage, str]] = []
        passed: list[tuple[InboundMessage, str]] = []
        answers: list[tuple[Record, InboundMessage, str]] = []
        continuing: list[Continuing] = []
        for (record, message), claim, previous, sighting, lookup in zip(
                decoded, claims, claimed, sightings, lookups, strict=True):
            mark = find_mark(message.text, message.channel, self._token_key, now)
            verdict, reason = dedupe.decide(claim, previous)
            if mark is not None:  # a probe of ours: not a customer, never counted as one
                if verdict is not dedupe.Novelty.DUPLICATE:
                    outputs.append(_probe(message, mark, reason, now))
                continue
            tally.seen[message.channel] += 1
            if verdict is dedupe.Novelty.DUPLICATE:
                tally.dropped[message.channel] += 1
                log.info("duplicate dropped", extra={"event_id": message.event_id, "reason": reason})
                continue
            if "bounce" in message.tags:
                outputs.append(self._bounce(record, message))
                continue
            answered = answered_conversation(message, self._token_key, self._our_domains)
            if answered is not None:
                answers.append((record, message, answered))
                continue
            customer, decision = identify.decide(sighting, lookup)
            if decision.outcome == identify.NEW:
                new.append((message, customer))
            passed.append((message, customer))
            tally.passed[message.channel] += 1
            held = self._continuing(message, now, (message, customer, reason, decision), continuing)
            if held is not None:
                outputs.append(Output(IDENTIFIED, customer.encode(), encode(
                    identified_message(message, customer, reason, held, at=now))))
        tally.report()
        cards = await self._second(new, [found.conversation_id for *_, found in continuing],
                                   [conversation for _, _, conversation in answers])
        await self._suggestions(passed, outputs)
        await self._continuations(continuing, cards[:len(continuing)], outputs, now)
        await self._agent_answers(answers, cards[len(continuing):], outputs, now)
        return outputs

    async def _second(self, new: Sequence[tuple[InboundMessage, str]], continued: Sequence[str],
                      answered: Sequence[str]) -> list[ConversationCard | None]:
        """Round trip 2, if any: register first sightings; read the cards continuations and answers name."""
        pipe = pipeline(self._redis)  # split per hash tag on a Cluster
        if new:
            self._identities.queue_register(pipe, [(m.sender, c) for m, c in new])
        wanted = [*continued, *answered]
        if wanted:
            self._cards.queue_read(pipe, wanted)
        if not len(pipe):
            return []
        answers = await pipe.execute()
        REDIS_ROUNDTRIPS.labels(STAGE).inc()
        return self._cards.parse_read(answers[-1]) if wanted else []

    def _continuing(self, message: InboundMessage, now: datetime,
                    identified: tuple[InboundMessage, str, str, Decision],
                    continuing: list[Continuing]) -> Decision | None:
        """The identify decision to pass on now, or None when a verified continuation holds it back."""
        decision = identified[3]
        found = continuation.checked(message, self._continuation_key, now)
        if found is None:
            return decision
        if found.verdict == "verified":
            continuing.append((*identified, found))
            return None
        log.info("continuation refused", extra={"event_id": message.event_id, "reason": found.verdict,
                                                "conversation_id": found.conversation_id})
        return _also(decision, f"continuation of {found.conversation_id} refused: {found.reason}")

    async def _continuations(self, continuing: Sequence[Continuing], cards: Sequence[ConversationCard | None],
                             outputs: list[Output], now: datetime) -> None:
        """Verified continuation answers: link the conversation's customer identity, then pass them on.

        Runs after first sightings are registered, so a sender never seen before is a
        customer the link can join. A replay finds the link made and changes nothing.
        """
        for (message, customer, reason, before, found), card in zip(continuing, cards, strict=True):
            if card is None:
                decision = _also(before, f"continuation of {found.conversation_id}: {found.reason}, "
                                         "but that conversation is no longer known; nothing linked")
            else:
                decision = await self._link((message, customer, before, found), card, outputs)
                copy = continuation.transcript(message, card, customer)
                if copy is not None:
                    outputs.append(Output(OUTBOUND, card.conversation_id.encode(), encode(copy)))
                message = continuation.tagged(message)  # noqa: PLW2901 - the same message, marked
            outputs.append(Output(IDENTIFIED, customer.encode(), encode(
                identified_message(message, customer, reason, decision, at=now))))

    async def _link(self, answer: tuple[InboundMessage, str, Decision, Continued], card: ConversationCard,
                    outputs: list[Output]) -> Decision:
        """Move the conversation's customer identity to the sender's customer; the decision says so."""
        message, customer, decision, found = answer
        context = {"event_id": message.event_id, "conversation_id": card.conversation_id}
        if not continuation.linked_identity(card, message, customer):
            return _also(decision, f"continuation of {card.conversation_id}: {found.reason}; "
                                   "the conversation is already theirs")
        try:
            linked = await self._identities.link(
                self._redis, card.recipient, customer, actor=f"continuation answer {message.event_id}",
                evidence=f"{found.reason} (conversation {card.conversation_id})", at=message.received_at)
        except LinkRefused as e:
            if e.code != "already_linked":  # already linked: a replay of this batch, or an earlier answer
                log.warning("continuation not linked", extra={**context, "reason": e.reason})
                return _also(decision, f"continuation of {card.conversation_id}: {found.reason}, "
                                       f"but not linked: {e.reason}")
        else:
            outputs.append(Output(IDENTITY, linked.customer_id.encode(), encode(linked)))
            log.info("continuation linked", extra={**context, "customer_id": customer})
        return Decision(stage=decision.stage, outcome=identify.LINKED, reasons=(
            *decision.reasons, f"{card.recipient} linked to {customer}: {found.reason} "
            f"(conversation {card.conversation_id}); its history and conversations are theirs now"))

    async def _agent_answers(self, answers: Sequence[tuple[Record, InboundMessage, str]],
                             cards: Sequence[ConversationCard | None], outputs: list[Output],
                             now: datetime) -> None:
        """Agents' answers from team mailboxes become replies, on the cards read in round trip 2."""
        for (record, message, conversation), card in zip(answers, cards, strict=True):
            if card is None:
                outputs.append(dead_letter(record, f"agent's answer to unknown conversation {conversation}",
                                           message.channel))
                continue
            reply = reply_from_mail(message, card, now)
            log.info("agent answered by mail", extra={"event_id": message.event_id,
                                                      "conversation_id": conversation})
            outputs.append(Output(OUTBOUND, conversation.encode(), encode(reply)))

    async def _suggestions(self, passed: Sequence[tuple[InboundMessage, str]], outputs: list[Output]) -> None:
        """Keep identities customers stated as suggestions."""
        for message, customer in passed:
            # evidence is rare and only in private messages: its few round trips are fine
            for candidate in evidence.find(message, our_domains=self._our_domains):
                suggested = await self._identities.suggest(
                    self._redis, candidate.identity, customer, via=message.sender,
                    evidence=candidate.quote, event_id=message.event_id, at=message.received_at)
                outputs.append(Output(IDENTITY, suggested.customer_id.encode(), encode(suggested)))
                log.info("identity suggested", extra={"event_id": message.event_id,
                                                      "customer_id": suggested.customer_id})

    def _bounce(self, record: Record, message: InboundMessage) -> Output:
        receipt = receipt_for_bounce(message, self._token_key)
        if receipt is None:
            DEADLETTERED.labels(STAGE, message.channel).inc()
            return dead_letter(record, "bounce for a message we did not send", message.channel)
        log.info("bounce", extra={"event_id": message.event_id, "reply_id": receipt.reply_id,
                                  "conversation_id": receipt.conversation_id})
        return Output(DELIVERY, receipt.conversation_id.encode(), encode(receipt))


def _also(decision: Decision, reason: str) -> Decision:
    """The decision with one more reason."""
    return Decision(stage=decision.stage, outcome=decision.outcome, reasons=(*decision.reasons, reason))
