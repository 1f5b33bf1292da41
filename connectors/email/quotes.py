"""Body text as a person reads it, and only the new part of a reply.

`html_to_text` and `unflow` turn HTML and format=flowed bodies into plain lines (HTML
blockquotes become "> " quotes); `visible_text` then keeps what the author wrote now.

`visible_text` works line by line, top to bottom, in one pass. Lines starting with ">" are history.
A quote header ("On <date>, <someone> wrote:", "Am <date> schrieb <someone>:", "<date>,
пользователь <someone> написал:" and the other clients' languages, possibly wrapped over
up to three lines) is dropped together with the quoted block that follows it; when no
quoted block follows, the original was pasted unquoted below it, so everything from the
header on is history, but only when the header starts like one and is dated (a clock
time, a year or a numeric date): "Am Montag schrieb ich wegen Rechnung 4711:" is text.
Outlook's separators and "From:/Sent:" header blocks (localised too: "Von:/Gesendet:",
"De :/Envoyé :", "От:/Отправлено:", ...), the "-- " signature delimiter and
mailing-list footers also end the new text. Finally a "Sent from my iPhone" line or a
"-Name" sign-off at the very end is dropped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text", "unflow", "visible_text"]

# at most this many physical lines make up one wrapped quote header
_HEADER_LINES = 3
_HEADER_MAX_CHARS = 400
# how far below a "From:" line the rest of an Outlook header block may sit
_BLOCK_REACH = 6

# the verb that ends a quote header, right before the colon, in common client languages
_INTRO_END = re.compile(
    r"(?:\b(?:wrote|writes|a\s+écrit|escribió|escreveu|ha\s+scritto|scrisse|"
    r"napisał\(a\)|napisała|napisał|pisze|kirjoitti|írta|het\s+volgende\s+geschreven|"
    r"написал\(а\)|написала|написал)\s*:"  # noqa: RUF001
    # German, Dutch and Scandinavian put the sender between the verb and the colon
    r"|\b(?:schrieb|schreef|skrev)\b[^:\n]{0,200}:)\s*$",
    re.IGNORECASE,
)
# Gmail in Russian (and some other languages) has no verb: "<date>, Name <address>:"
_ADDRESS_END = re.compile(r"<[^<>\s@]{1,200}@[^<>\s@]{1,200}>\s*:\s*$")
# headers whose verb comes first: Apple Mail in Polish
_INTRO_WHOLE = re.compile(r"^\s*Wiadomość napisana przez .{1,300}:\s*$", re.IGNORECASE)
# how a header starts: "On", "Le", "Am", "El", "Il giorno", "Op", "Em", "Den", ... or with
# the date itself, perhaps after a short weekday ("3 дек.", "tor. 3. des.", "czw., 3 gru")
_INTRO_START = re.compile(
    r"^\s*(?:(?:On|Le|Am|El|Il|Op|Em|Den|På|W dniu|Dne|Wiadomość)\s"
    r"|\d{1,4}\b|[^\W\d_]{2,4}\.?,?\s+\d{1,2}\b)"
)
# what makes a header dated: a clock time, a year or a numeric date ("4711:" is none of them)
_DATE_OR_TIME = re.compile(
    r"\b\d{1,2}:\d{2}\b|\b(?:19|20)\d{2}\b|\b\d{1,2}[./-]\d{1,2}[./-]\d{2,4}\b"
)
_ORIGINAL_MARKER = re.compile(
    r"^\s*-{3,}\s*(?:original message|ursprüngliche nachricht|message d'origine|"
    r"mensaje original|messaggio originale|oorspronkelijk bericht|mensagem original|"
    r"originalmeddelande|ursprungligt meddelande|oprindelig meddelelse|opprinnelig melding|"
    r"wiadomość oryginalna|исходное сообщение)\s*-{3,}\s*$",
    re.IGNORECASE,
)
_FORWARD_MARKER = re.compile(
    r"^\s*(?:-{3,}\s*(?:forwarded message|weitergeleitete nachricht|message transféré|"
    r"mensaje reenviado|messaggio inoltrato|doorgestuurd bericht|mensagem encaminhada)"
    r"\s*-{3,}|begin forwarded message:)\s*$",
    re.IGNORECASE,
)
_FROM_FIELD = re.compile(
    r"^[\s*]*(?:from|von|de|van|da|från|fra|od|lähettäjä|от)\s*:", re.IGNORECASE
)
_SENT_FIELD = re.compile(
    r"^[\s*]*(?:sent|date|gesendet|datum|envoyé|enviado(?: el| em)?|enviada(?: em)?|inviato|"
    r"data|verzonden|skickat|sendt|wysłano|lähetetty|отправлено|дата)\s*:",
    re.IGNORECASE,
)
_TO_FIELD = re.compile(
    r"^[\s*]*(?:to|cc|subject|an|betreff|à|a|objet|para|asunto|assunto|oggetto|aan|"
    r"onderwerp|till|ämne|til|emne|do|temat|aihe|кому|копия|тема)\s*:",
    re.IGNORECASE,
)
# Outlook's plain-text conversion sometimes puts the whole header block on one line
_INLINE_BLOCK = re.compile(r"^[\s*]*From:.{1,300}?\bSent:", re.IGNORECASE)
_FOOTER_RULE = re.compile(r"^\s*_{5,}\s*$")
_SEPARATOR = re.compile(r"^\s*[-_=*~#]{3,}\s*$")
_MOBILE_SIGNATURE = re.compile(
    r"^\s*(?:sent from my \S+(?: \S+){0,3}"
    r"|sent (?:from|with) (?:mail|outlook|yahoo mail|aol mail|gmail|proton ?mail|bluemail|"
    r"spark|samsung mobile)(?: (?:for|on) \S+(?: \S+)?)?"
    r"|get outlook for \S+"
    r"|envoyé de mon \S+(?: \S+){0,2}|von meinem \S+(?: \S+){0,2} gesendet"
    r"|enviado desde mi \S+(?: \S+){0,2}|enviado do meu \S+(?: \S+){0,2}"
    r"|inviato da(?: il mio)? \S+(?: \S+){0,2}|verzonden (?:vanaf|met) mijn \S+(?: \S+){0,2}"
    r"|skickat från min \S+(?: \S+){0,2})\s*[.!]?\s*$",
    re.IGNORECASE,
)
# a bare "-Name" sign-off: a dash glued to one to three capitalised words
_SIGN_OFF = re.compile(r"^\s*-{1,2}[A-Z][\w.'-]*(?: [A-Z][\w.'-]*){0,2}\s*$")


def visible_text(text: str, *, forwarded: bool = False) -> str:
    """Return the new text of a message body, without quoted history or signatures.

    `forwarded` (the subject says "Fwd:") keeps everything below the forwarder's note,
    because there the history is the content the customer wants us to read.
    """
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    kept = _new_lines(lines, forwarded=forwarded)
    _drop_trailing_sign_offs(kept)
    return "\n".join(_squeeze_blanks(kept))


def _new_lines(lines: list[str], *, forwarded: bool) -> list[str]:
    """Walk the lines once, keeping what the author wrote now."""
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _is_quoted(line):
            i += 1
            continue
        if not forwarded and _ends_new_text(lines, i):
            break
        span = _intro_span(lines, i)
        if span:
            after = _next_non_blank(lines, i + span)
            if after < len(lines) and _is_quoted(lines[after]):
                i = after  # the header introduces a quoted block: drop both, read on
                continue
            if not forwarded and _is_dated_intro(lines, i, span):
                break  # the original follows unquoted
        kept.append(line)
        i += 1
    return kept


def _is_quoted(line: str) -> bool:
    return line.startswith(">")


def _ends_new_text(lines: list[str], i: int) -> bool:
    """Tell whether line `i` is a signature delimiter, list footer or Outlook separator."""
    line = lines[i]
    if line.strip() == "--" or _FOOTER_RULE.match(line) or _ORIGINAL_MARKER.match(line):
        return True
    if ":" not in line:
        return False
    if _INLINE_BLOCK.match(line):
        return True
    return _is_header_block(lines, i) and not _is_forward(lines, i)


def _is_header_block(lines: list[str], i: int) -> bool:
    """A "From:" line followed closely by "Sent:"/"Date:" and "To:"/"Subject:" lines."""
    if not _FROM_FIELD.match(lines[i]):
        return False
    below = lines[i + 1 : i + 1 + _BLOCK_REACH]
    return any(_SENT_FIELD.match(line) for line in below[:4]) and any(
        _TO_FIELD.match(line) for line in below
    )


def _is_forward(lines: list[str], i: int) -> bool:
    """Forwarded mail is the customer's content, not history: keep it visible."""
    above = [line for line in lines[max(0, i - 3) : i] if line.strip()]
    return bool(above) and bool(_FORWARD_MARKER.match(above[-1]))


def _intro_span(lines: list[str], i: int) -> int:
    """How many lines from `i` form a quote header ("... wrote:"), 0 when none do."""
    window = lines[i : i + _HEADER_LINES]
    if not window[0].strip() or not any(line.endswith(":") for line in window):
        return 0
    joined = ""
    for count, line in enumerate(window, start=1):
        if not line.strip() or _is_quoted(line):
            return 0
        joined = f"{joined} {line.strip()}" if joined else line.strip()
        if len(joined) > _HEADER_MAX_CHARS:
            return 0
        # a wrapped header must start like one, or any sentence ending "wrote:" would do
        if count > 1 and not _INTRO_START.match(joined):
            return 0
        if line.endswith(":") and _ends_intro(joined):
            return count
    return 0


def _ends_intro(joined: str) -> bool:
    """Whether a line (or wrapped lines) ending in ":" reads as a quote header."""
    if _INTRO_END.search(joined) or _INTRO_WHOLE.match(joined):
        return True
    # without a verb, only a dated line ending in "<address>:" will do
    return bool(_ADDRESS_END.search(joined) and _INTRO_START.match(joined)
                and _DATE_OR_TIME.search(joined))


def _is_dated_intro(lines: list[str], i: int, span: int) -> bool:
    """An "On <date> ... wrote:" header, strict enough to cut unquoted text after it."""
    joined = " ".join(line.strip() for line in lines[i : i + span])
    return bool(_INTRO_START.match(joined) and _DATE_OR_TIME.search(joined))


def _next_non_blank(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _drop_trailing_sign_offs(kept: list[str]) -> None:
    """Drop a final mobile signature, "-Name" sign-off or separator rule, in place."""
    while True:
        while kept and not kept[-1].strip():
            kept.pop()
        if not kept:
            return
        last = kept[-1]
        sign_off = _SIGN_OFF.match(last) and (len(kept) == 1 or not kept[-2].strip())
        if not (_MOBILE_SIGNATURE.match(last) or _SEPARATOR.match(last) or sign_off):
            return
        kept.pop()


def _squeeze_blanks(lines: list[str]) -> list[str]:
    """Collapse runs of blank lines into one and trim blank lines at both ends."""
    out: list[str] = []
    for line in lines:
        if line.strip() or (out and out[-1]):
            out.append(line if line.strip() else "")
    while out and not out[-1]:
        out.pop()
    return out


# ---- HTML and format=flowed to plain lines -----------------------------------------


def unflow(text: str, *, delsp: bool) -> str:
    """Join RFC 3676 format=flowed soft line breaks (unquoted lines only)."""
    out: list[str] = []
    pending = ""
    for physical in text.split("\n"):
        # undo space-stuffing, except where it keeps a ">" from reading as a quote
        stuffed = physical.startswith(" ") and not physical.startswith(" >")
        line = physical[1:] if stuffed else physical
        if line.endswith(" ") and line.rstrip() != "--" and not line.startswith(">"):
            pending += line[:-1] if delsp else line
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return "\n".join(out)


_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "center", "dd", "div", "dl", "dt", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody",
        "tfoot", "thead", "tr", "ul",
    }
)
_PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"})
_SKIP_TAGS = frozenset({"script", "style", "title", "template"})
_SPACES = re.compile(r"\s+")
_MAX_QUOTE_PREFIX = 8
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_UNCLOSED_LT = re.compile(r"<(?=[^<>]*(?:<|\Z))")


def _defuse(html: str) -> str:
    """Drop comments and escape every "<" not closed before the next one.

    html.parser rescans to the end of the input for each unclosed "<", which makes
    hostile HTML quadratic; after this pass every tag it sees is closed.
    """
    return _UNCLOSED_LT.sub("&lt;", _HTML_COMMENT.sub("", html))


class _HtmlText(HTMLParser):
    """Readable text from HTML: block elements end lines, blockquotes become "> " quotes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._skip = 0
        self._quote = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "br":
            self._end_line(keep_empty=True)
        elif tag == "blockquote":
            self._end_line()
            self._quote += 1
        elif tag in _BLOCK_TAGS:
            self._end_line()
            if tag == "pre":
                self._pre += 1
            if tag == "li":
                self._line.append("- ")
        elif tag in ("td", "th"):
            self._line.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag == "blockquote":
            self._end_line()
            self._quote = max(0, self._quote - 1)
        elif tag in _BLOCK_TAGS:
            self._end_line()
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
            if tag in _PARAGRAPH_TAGS:
                self.lines.append("")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre:
            self._line.append(_SPACES.sub(" ", data))
            return
        first, *rest = data.split("\n")
        self._line.append(first)
        for segment in rest:
            self._end_line(keep_empty=True)
            self._line.append(segment)

    def _end_line(self, *, keep_empty: bool = False) -> None:
        text = "".join(self._line)
        self._line = []
        text = text.rstrip() if self._pre else _SPACES.sub(" ", text).strip()
        if text or keep_empty:
            # quote depth only needs to be seen, not counted: cap the prefix a bomb could grow
            self.lines.append("> " * min(self._quote, _MAX_QUOTE_PREFIX) + text)

    def text(self) -> str:
        """The text collected so far, flushing the open line."""
        self._end_line()
        return "\n".join(self.lines)


def html_to_text(html: str) -> str:
    """Convert an HTML body to readable plain text with the stdlib HTML parser."""
    parser = _HtmlText()
    try:
        parser.feed(_defuse(html))
        parser.close()
    except AssertionError:  # html.parser asserts on bogus marked sections; keep what we have
        pass
    return parser.text()
