"""The native API's query strings: bounds that schemathesis found missing. A timestamp past year 9999 was
a 500 (datetime overflow); a blank value was dropped as if absent, and a cursor that is no payment id was
taken as one."""

from __future__ import annotations

import pytest

from switch.common.errors import ApiError
from switch.frontends.http import schema


@pytest.mark.parametrize("query", ["created[gte]=999999999999", "created[lte]=253402300800", "starting_after=",
                                   "starting_after=" + "0" * 101, "ending_before=pay_x", "limit="])
def test_a_bad_list_query_is_a_400_naming_its_parameter(query: str) -> None:
    with pytest.raises(ApiError) as raised:
        schema.list_query(schema.query_params(query))
    assert (raised.value.status, raised.value.code) == (400, "parameter_invalid")
    assert raised.value.param == query.split("=")[0]


def test_a_good_list_query_is_read() -> None:
    listed = schema.list_query(schema.query_params(
        "limit=5&starting_after=pay_0123456789abcdef&created[lte]=253402300799"))
    assert (listed.limit, listed.starting_after) == (5, "pay_0123456789abcdef")
    assert listed.created_lte is not None and listed.created_lte.year == 9999
