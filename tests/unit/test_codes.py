from switch.iso.codes import RESULT_TO_FIELD39, ResultCode, field39_for, result_for_field39


def test_known_codes():
    assert result_for_field39("00") is ResultCode.APPROVED
    assert result_for_field39("51") is ResultCode.INSUFFICIENT_FUNDS
    assert result_for_field39("N7") is ResultCode.INCORRECT_CVC
    assert result_for_field39("82") is ResultCode.INCORRECT_CVC


def test_unknown_codes_never_approve():
    assert result_for_field39("Z9") is ResultCode.DO_NOT_HONOR
    assert result_for_field39("99") is ResultCode.PROCESSING_ERROR
    assert result_for_field39(None) is ResultCode.PROCESSING_ERROR


def test_inverse_round_trips():
    for result in ResultCode:
        code = field39_for(result)
        if result in RESULT_TO_FIELD39:
            assert result_for_field39(code) is result
        else:
            assert len(code) == 2 and result_for_field39(code) is not ResultCode.APPROVED


def test_every_result_answers_a_field39_that_maps_back_to_it() -> None:
    # The one result table (switch.payments.results) gives each result its field 39 for an ISO 8583 front
    # end; a network decline's code must read back, through the field 39 table, as the same decline (the
    # same one, or for SYSTEM_ERROR, which has no issuer-side code, one that merchants see identically).
    from switch.payments.results import MEANINGS, Result, for_network

    for result, meaning in MEANINGS.items():
        assert len(meaning.field39) == 2, result
        if result.value.startswith("declined_"):
            back = for_network(result_for_field39(meaning.field39))
            assert back is result or MEANINGS[back][:4] + MEANINGS[back][5:6] == meaning[:4] + meaning[5:6], result
    assert MEANINGS[Result.SUCCEEDED].field39 == "00"
