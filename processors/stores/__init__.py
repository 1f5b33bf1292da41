"""Every Redis store the stages use, and the one table of what lives where.

All keys sit under a namespace `<ns>` = `<SB_TOPIC_PREFIX>sb`. The routing chain's carry a
hash tag after it, `<ns>:{p<N>}:history:<customer>`, N the Kafka partition of the key's
last segment (processors.stores.tags, decision 0021); the table leaves it out. `sla-due`
is one set per tag; `<ns>:layout` records the partition count the tags are for. "Writer" is the one
stage that changes a family (decision 0005); anyone may read. TTLs come from settings:
`dedupe` = SB_DEDUPE_TTL_SECONDS (7 days), `conversation` = SB_CONVERSATION_TTL_SECONDS
(90 days), counted from the last write. `{deferred}` is a fixed tag, not a partition's.
The tag's id is the key's last segment, but for `tool-thread` (`<destination>:<ref>`)
and `ledger` (its conversation; `/` stands for the `|` between conversation and source).

| key | holds | writer | TTL |
| --- | --- | --- | --- |
| `claim:<event>` | the record that claimed it, `done:` + it | intake (claims.py) | dedupe |
| `routed:claim:<event>` | the same, for the brain's input | brain (claims.py) | dedupe |
| `identity:<kind>:<value>` | JSON binding: customer, since, how | intake; customers API | none |
| `identities:<customer>` | set of `kind:value` | intake; customers API | none |
| `suggested:<customer>` | hash: identity → what the customer said | intake; customers API | none |
| `profile:<customer>` | hash: tier, name, updated_at/_by | customers API (directory) | none |
| `history:<customer>` | sorted set of history lines, capped | brain (history.py) | none |
| `recent:<customer>` | hash: conversation → summary | brain (history.py) | none |
| `thread:<channel>:<thread key>` | conversation id | brain (conversations.py) | conversation |
| `card:<conversation>` | hash, one writer per field | brain, dispatch, send | conversation |
| `tool-thread:<destination>:<ref>` | conversation of a tool's thread | dispatch (cards.py) | conversation |
| `sla:<customer>` | hash: conversation → SLA clock | brain; SLA watch | none |
| `sla-due` | sorted set: clock → next due time | brain; SLA watch | none |
| `lifecycle-due` | sorted set: follow-ups and closes | brain; lifecycle watch | none |
| `backlog` | hash: queue → open conversations | brain | none |
| `reply:<reply id>` | `queued:`/`sending:<record>`, then outcome + record | send (send/stage.py) | dedupe |
| `{deferred}:due`, `:messages` | deferred replies by due time; their messages | send (deferred.py) | none |
| `ledger:<conversation>/<source>` | hash: `plan`, `d:<destination>` (claim, outcome) | dispatch | dedupe |
| `handoff:…` | the ledgers before the tags: no longer read, left to expire | — | dedupe |
| `cursor:<source>` | a source's checkpoint (IMAP UID, ...) | the edge (cursors.py) | none |
"""
