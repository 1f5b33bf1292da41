from __future__ import annotations

import pytest

from processors.stores.directory import Directory, DirectoryRow, parse_directory_csv
from processors.stores.history import HistoryStore
from processors.stores.identities import IdentityStore
from schemas import ConfigError, Identity

TIERS = frozenset({"standard", "premium", "enterprise"})
ADA = Identity(kind="email", value="ada@example.com")


@pytest.mark.parametrize(("text", "rows"), [
    ("identity,tier,name\nada@example.com,premium,Ada Lovelace\n",
     [DirectoryRow(2, ADA, "premium", "Ada Lovelace")]),
    # any column order, header case and spacing, a BOM, CRLF, blank lines, quoted commas
    ("\ufeffName , IDENTITY,Tier\r\n\r\n\"Lovelace, Ada\",Ada@Example.com,enterprise\r\n",
     [DirectoryRow(3, ADA, "enterprise", "Lovelace, Ada")]),
    ("identity,tier\n+442079460958,standard\n@Ada_X,\nchat:s_81f3,premium\n",
     [DirectoryRow(2, Identity(kind="phone", value="+442079460958"), "standard", None),
      DirectoryRow(3, Identity(kind="x", value="@ada_x"), None, None),
      DirectoryRow(4, Identity(kind="chat", value="s_81f3"), "premium", None)]),
    # a quoted name over two lines: the next row is still named by its own line
    ("identity,name\nada@example.com,\"Ada\nLovelace\"\nbob@example.com,Bob\n",
     [DirectoryRow(2, ADA, None, "Ada\nLovelace"),
      DirectoryRow(4, Identity(kind="email", value="bob@example.com"), None, "Bob")]),
    ("identity,tier,name\n", []),
])
def test_directory_csv_rows(text: str, rows: list[DirectoryRow]) -> None:
    assert parse_directory_csv(text, TIERS) == rows


@pytest.mark.parametrize(("text", "where", "says"), [
    ("", "customers.csv:1", "header line is required"),
    ("ada@example.com,premium,Ada\n", "customers.csv:1 ada@example.com", "unknown column"),
    ("identity,teir\n", "customers.csv:1 teir", "unknown column 'teir'"),
    ("identity,tier,tier\n", "customers.csv:1 tier", "appears twice"),
    ("tier,name\n", "customers.csv:1", "must name 'identity'"),
    ("identity\nada@example.com\n", "customers.csv:1", "at least one of"),
    ("identity,tier\nada@example.com,premium,extra\n", "customers.csv:2", "3 fields, the header has 2"),
    ("identity,tier\nada@example.com,premium\nnot-an-identity,premium\n", "customers.csv:3 identity",
     "is not an email address"),
    ("identity,tier\n,premium\n", "customers.csv:2 identity", "is not an email address"),
    ("identity,tier,name\n" + "\n" * 12 + "ada@example.com,gold,Ada\n",
     "customers.csv:14 tier", "unknown tier 'gold'; known: enterprise, premium, standard"),
    ("identity,name\nada@example.com," + "n" * 201 + "\n", "customers.csv:2 name", "longer than 200"),
    ("identity,tier\nada@example.com,premium\nADA@example.com,standard\n", "customers.csv:3 identity",
     "email:ada@example.com is also on line 2"),
    ("identity,name\nada@example.com,\"unclosed\n", "customers.csv:2", "unexpected end of data"),
])
def test_directory_csv_errors_name_the_line_and_column(text: str, where: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_directory_csv(text, TIERS)
    assert caught.value.where == where
    assert says in caught.value.reason


def test_errors_name_the_file_given() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_directory_csv("identity,tier\nada@example.com,gold\n", TIERS, source="crm-export.csv")
    assert caught.value.where == "crm-export.csv:2 tier"


def test_profiles_are_read_from_the_pipeline_answers() -> None:
    directory = Directory(IdentityStore("t", HistoryStore("t")))
    answers = [[[b"premium", b"Ada"], {b"email:ada@example.com", b"x:@ada_x"}], [[None, None], set()]]
    ada, unknown = directory.parse_profiles(["cus_a", "cus_b"], answers)
    assert (ada.customer_id, ada.tier, ada.name) == ("cus_a", "premium", "Ada")
    assert ada.identities == (ADA, Identity(kind="x", value="@ada_x"))
    assert (unknown.tier, unknown.name, unknown.identities) == (None, None, ())
